// The Flight gateway's decisions that need no gRPC: which calls it serves, which headers cross
// it, how a Basic credential reads, and the google.rpc.Status details of a rate-limited call.
// Pure functions, unit-tested (tests/flight/call_policy_test.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace synthorg::flight_gateway {

inline constexpr std::string_view kFlightService = "/arrow.flight.protocol.FlightService/";
inline constexpr std::string_view kHandshake = "/arrow.flight.protocol.FlightService/Handshake";

// "/arrow.flight.protocol.FlightService/DoGet" → "DoGet"; "" for any other service's method.
std::string_view flight_method(std::string_view path) noexcept;

// Whether the client sends exactly one request message on this method ("DoGet" yes; "DoPut",
// "DoExchange" and "Handshake", the client-streaming ones, no): the relay then sends it on with
// the half-close in one write, without waiting for the client's end of stream.
bool single_request(std::string_view method) noexcept;

// Whether the workload answers this method with exactly one message (GetFlightInfo, GetSchema,
// PollFlightInfo): the relay then holds that message until the workload's status is in, and sends
// both to the client in one write.
bool single_response(std::string_view method) noexcept;

struct BasicCredentials {
  std::string username;
  std::string password;
};
// `authorization: Basic base64(username:password)` (RFC 7617; the scheme is case-insensitive).
// nullopt when the value is not Basic or does not decode to "username:password".
std::optional<BasicCredentials> parse_basic(std::string_view authorization);
// The token of `authorization: Bearer <token>`; empty when it is not one.
std::string_view bearer_token(std::string_view authorization) noexcept;

// Whether a client's request header travels on to the workload. The caller's credentials
// (authorization, cookie) never do, nor what gRPC and HTTP/2 set for themselves.
bool forwarded_to_workload(std::string_view name) noexcept;
// Whether a workload's response header or trailer travels back to the client (gRPC's own, which
// the status carries, excepted).
bool forwarded_to_client(std::string_view name) noexcept;

// A serialized google.rpc.Status{code, message, details: [RetryInfo{retry_delay: seconds}]}, for
// grpc-status-details-bin: the retry hint gRPC clients read from a RESOURCE_EXHAUSTED answer.
std::string retry_info_details(int code, std::string_view message, std::int64_t retry_after_seconds);

}  // namespace synthorg::flight_gateway
