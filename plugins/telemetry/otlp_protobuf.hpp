// OTLP/HTTP binary protobuf encoding (`http/protobuf`, the OTel default): the same requests as
// otlp_json.hpp, from the same inputs, in protobuf's wire format. Written by hand rather than
// through libprotobuf: the exporter needs two messages, and encoding them directly into one
// reused buffer costs a fraction of the JSON text (and of gzipping it) at no new dependency.
//
// Field numbers are opentelemetry-proto's (collector/{trace,logs}/v1, trace/v1, logs/v1,
// common/v1, resource/v1). Output is canonical: fields in field-number order, proto3 defaults
// (zero, empty) left out except a set oneof member, minimal varints; so a decoder that
// re-encodes what it read gets the same bytes back (the test receiver checks that).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "otlp_json.hpp"
#include "span_data.hpp"

namespace synthorg::telemetry::protobuf {

// One ExportTraceServiceRequest: one resource, one scope ("synthorg", the version), the spans.
// `out` is cleared first and keeps its capacity; nothing else is allocated.
void encode_traces(std::string& out, const Resource& resource, std::string_view scope_version,
                   std::span<const SpanData> spans);

// One ExportLogsServiceRequest (severity INFO): each event's name is the body and the first
// attribute, event.name, as the JSON encoder sends it.
void encode_logs(std::string& out, const Resource& resource, std::string_view scope_name,
                 std::string_view scope_version, const std::vector<LogEvent>& events);

}  // namespace synthorg::telemetry::protobuf
