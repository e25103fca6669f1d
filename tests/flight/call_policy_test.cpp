// The Flight gateway's pure decisions: which calls it serves, what crosses it, Basic credentials,
// and the RetryInfo it attaches to a rate-limited call (decoded here by hand, field by field).
#include <gtest/gtest.h>

#include "call_policy.hpp"

namespace synthorg::flight_gateway {
namespace {

TEST(FlightCallPolicy, OnlyFlightServiceMethodsAreServed) {
  EXPECT_EQ(flight_method("/arrow.flight.protocol.FlightService/DoGet"), "DoGet");
  EXPECT_EQ(flight_method("/arrow.flight.protocol.FlightService/Handshake"), "Handshake");
  EXPECT_EQ(flight_method("/arrow.flight.protocol.FlightService/"), "");
  EXPECT_EQ(flight_method("/arrow.flight.protocol.FlightService/DoGet/x"), "");
  EXPECT_EQ(flight_method("/grpc.health.v1.Health/Check"), "");
  EXPECT_EQ(flight_method(""), "");
}

TEST(FlightCallPolicy, OnlyTheClientStreamingMethodsSendMoreThanOneRequest) {
  for (const char* method : {"GetFlightInfo", "PollFlightInfo", "GetSchema", "DoGet", "DoAction", "ListFlights",
                             "ListActions"})
    EXPECT_TRUE(single_request(method)) << method;
  for (const char* method : {"DoPut", "DoExchange", "Handshake", ""}) EXPECT_FALSE(single_request(method)) << method;
  for (const char* method : {"GetFlightInfo", "GetSchema", "PollFlightInfo"}) EXPECT_TRUE(single_response(method));
  for (const char* method : {"DoGet", "DoAction", "DoExchange", "DoPut", "ListFlights", "Handshake", ""})
    EXPECT_FALSE(single_response(method)) << method << ": a stream, or a bidi where holding a message back could deadlock";
}

TEST(FlightCallPolicy, BasicCredentialsAndBearerTokens) {
  auto good = parse_basic("Basic YWxpY2U6cyNjcjN0OndpdGg6Y29sb25z");  // alice:s#cr3t:with:colons
  ASSERT_TRUE(good);
  EXPECT_EQ(good->username, "alice");
  EXPECT_EQ(good->password, "s#cr3t:with:colons") << "only the first colon separates";
  EXPECT_TRUE(parse_basic("basic YWxpY2U6eA==")) << "the scheme is case-insensitive";
  EXPECT_TRUE(parse_basic("Basic YWxpY2U6eA")) << "padding is optional";
  EXPECT_FALSE(parse_basic("Basic !!!")) << "not base64";
  EXPECT_FALSE(parse_basic("Basic YWxpY2U=")) << "no colon";
  EXPECT_FALSE(parse_basic("Basic OnBhc3M=")) << "no username";
  EXPECT_FALSE(parse_basic("Bearer abc"));
  EXPECT_FALSE(parse_basic("Basic"));
  EXPECT_FALSE(parse_basic("BasicYWxpY2U6eA=="));
  EXPECT_EQ(bearer_token("Bearer abc.def.ghi"), "abc.def.ghi");
  EXPECT_EQ(bearer_token("bearer  abc "), "abc");
  EXPECT_EQ(bearer_token("Basic abc"), "");
  EXPECT_EQ(bearer_token(""), "");
}

TEST(FlightCallPolicy, CredentialsAndTransportHeadersNeverReachTheWorkload) {
  for (auto name : {"authorization", "Authorization", "cookie", "proxy-authorization", "grpc-timeout", "grpc-encoding",
                    ":authority", ":path", "te", "content-type", "user-agent", "host"})
    EXPECT_FALSE(forwarded_to_workload(name)) << name;
  for (auto name : {"x-request-id", "traceparent", "tracestate", "x-flight-sql-session", "custom-bin"})
    EXPECT_TRUE(forwarded_to_workload(name)) << name;
  for (auto name : {"grpc-status", "grpc-message", "grpc-status-details-bin", "content-type", ":status"})
    EXPECT_FALSE(forwarded_to_client(name)) << name;
  for (auto name : {"x-query-id", "authorization", "x-custom-bin"}) EXPECT_TRUE(forwarded_to_client(name)) << name;
}

// A protobuf field's key and, for length-delimited ones, its bytes; enough for these messages.
struct Field {
  int number = 0, wire = 0;
  std::uint64_t value = 0;
  std::string bytes;
};
std::uint64_t varint(const std::string& in, std::size_t& at) {
  std::uint64_t value = 0;
  for (int shift = 0; at < in.size(); shift += 7) {
    auto byte = static_cast<unsigned char>(in[at++]);
    value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) break;
  }
  return value;
}
std::vector<Field> fields(const std::string& in) {
  std::vector<Field> out;
  for (std::size_t at = 0; at < in.size();) {
    Field field;
    auto key = varint(in, at);
    field.number = static_cast<int>(key >> 3);
    field.wire = static_cast<int>(key & 7);
    if (field.wire == 0) {
      field.value = varint(in, at);
    } else {
      auto length = varint(in, at);
      field.bytes = in.substr(at, length);
      at += length;
    }
    out.push_back(field);
  }
  return out;
}

TEST(FlightCallPolicy, RetryInfoIsAGoogleRpcStatus) {
  auto status = fields(retry_info_details(8, "slow down", 7));
  ASSERT_EQ(status.size(), 3u);
  EXPECT_EQ(status[0].number, 1);
  EXPECT_EQ(status[0].value, 8u) << "code RESOURCE_EXHAUSTED";
  EXPECT_EQ(status[1].bytes, "slow down");
  auto any = fields(status[2].bytes);
  ASSERT_EQ(any.size(), 2u);
  EXPECT_EQ(any[0].bytes, "type.googleapis.com/google.rpc.RetryInfo");
  auto retry_info = fields(any[1].bytes);
  ASSERT_EQ(retry_info.size(), 1u);
  auto duration = fields(retry_info[0].bytes);
  ASSERT_EQ(duration.size(), 1u);
  EXPECT_EQ(duration[0].number, 1) << "Duration.seconds";
  EXPECT_EQ(duration[0].value, 7u);
}

}  // namespace
}  // namespace synthorg::flight_gateway
