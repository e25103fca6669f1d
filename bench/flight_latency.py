#!/usr/bin/python3
"""The latency half of bench/flight.sh: unary GetFlightInfo (CommandStatementQuery `SELECT 1`)
through the flight-gateway and straight to a workload server of the same kind, with the same
client: gRPC's C core (Debian's python3-grpcio), methods called generically with protobuf bytes
built here, so the client adds as little as it can and the same on both sides.

  /usr/bin/python3 bench/flight_latency.py --gateway H:P --direct H:P --token T --kernel PID
      [--calls 6000] [--warmup 1000] [--rounds 6] [--gateway-workload PID --direct-workload PID] [--no-refused]

After the warm-up, ROUNDS rounds of CALLS/ROUNDS sequential calls on each side, alternating
call by call, so that a noisy neighbour hits both sides alike; then CALLS/2 calls the gateway
refuses by itself (no token: its own round trip, nothing relayed), unless --no-refused (a relay
that checks nothing, such as socat or nginx, stands in for the gateway). Prints the table and, last,
one line `RESULT {json}`.
"""
import argparse
import json
import os
import statistics
import sys
import time

import grpc

METHOD = "/arrow.flight.protocol.FlightService/GetFlightInfo"
TCK = os.sysconf("SC_CLK_TCK")


def field(number, payload):
    """A length-delimited protobuf field: key, varint length, bytes."""
    out = bytearray()
    for value in (number << 3 | 2, len(payload)):
        while value >= 0x80:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out) + payload


def descriptor(sql):
    """FlightDescriptor { type: CMD (2), cmd: Any(CommandStatementQuery { query: sql }) }."""
    command = field(1, sql.encode())
    any_ = field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + field(2, command)
    return b"\x08\x02" + field(2, any_)


def ticks(pid):
    """CPU clock ticks (user + system) of process pid, all its threads."""
    if not pid:
        return 0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def thread_ticks(pid):
    """{thread name: CPU ticks} of process pid, threads of the same name added up."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
    return out


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--direct", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--kernel", type=int, required=True)
    parser.add_argument("--gateway-workload", type=int, default=0)
    parser.add_argument("--direct-workload", type=int, default=0)
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--no-refused", action="store_true",
                        help="the relay authenticates nothing (socat, nginx): skip the refused calls")
    args = parser.parse_args()

    request = descriptor("SELECT 1")
    metadata = (("authorization", f"Bearer {args.token}"),)
    sides = {}
    for name, address, workload in (("gateway", args.gateway, args.gateway_workload),
                                    ("direct", args.direct, args.direct_workload)):
        channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        sides[name] = {"channel": channel, "call": call, "workload": workload, "samples": [], "rounds": [],
                       "kernel_ticks": 0, "workload_ticks": 0, "calls": 0}

    def run(name, n):
        side = sides[name]
        call = side["call"]
        samples = []
        clock = time.perf_counter_ns
        for _ in range(n):
            started = clock()
            answer = call(request, metadata=metadata, timeout=10)
            samples.append(clock() - started)
            if len(answer) < 16:
                raise SystemExit(f"{name}: an answer of {len(answer)} bytes is no FlightInfo")
        return samples

    for name in sides:
        run(name, args.warmup)
    # Calls alternate one by one between the sides (the pair's order flipping every round), so
    # that both sample the same moments of a machine shared with other work: their percentiles
    # are then comparable, tails included.
    per_round = max(1, args.calls // args.rounds)
    gw, di = sides["gateway"], sides["direct"]
    clock = time.perf_counter_ns

    def one(side):
        started = clock()
        answer = side["call"](request, metadata=metadata, timeout=10)
        side["samples"].append(clock() - started)
        if len(answer) < 16:
            raise SystemExit(f"an answer of {len(answer)} bytes is no FlightInfo")

    threads_before = thread_ticks(args.kernel)
    k0, gw0, di0 = ticks(args.kernel), ticks(gw["workload"]), ticks(di["workload"])
    print("| round | gateway p50 / p99 µs | direct p50 / p99 µs | added p50 / p99 µs |")
    print("|---|---:|---:|---:|")
    added_p50, added_p99 = [], []
    for round_ in range(1, args.rounds + 1):
        first, second = (gw, di) if round_ % 2 else (di, gw)
        marks = {id(gw): len(gw["samples"]), id(di): len(di["samples"])}
        for _ in range(per_round):
            one(first)
            one(second)
        g = sorted(gw["samples"][marks[id(gw)]:])
        d = sorted(di["samples"][marks[id(di)]:])
        g50, g99, d50, d99 = (percentile(g, 50) / 1000, percentile(g, 99) / 1000,
                              percentile(d, 50) / 1000, percentile(d, 99) / 1000)
        added_p50.append(g50 - d50)
        added_p99.append(g99 - d99)
        print(f"| {round_} | {g50:.0f} / {g99:.0f} | {d50:.0f} / {d99:.0f} | {g50 - d50:.0f} / {g99 - d99:.0f} |")
    gw["kernel_ticks"] = ticks(args.kernel) - k0
    gw["workload_ticks"] = ticks(gw["workload"]) - gw0
    di["workload_ticks"] = ticks(di["workload"]) - di0
    for side in sides.values():
        side["calls"] = len(side["samples"])
    threads_after = thread_ticks(args.kernel)

    # A call the gateway answers itself, nothing relayed: no authorization, UNAUTHENTICATED.
    refused = []
    for _ in range(0 if args.no_refused else args.calls // 2):
        started = clock()
        try:
            gw["call"](request, timeout=10)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
        refused.append(clock() - started)
    refused.sort()

    result = {"calls_per_side": gw["calls"], "rounds": args.rounds}
    if refused:
        result["refused"] = {"calls": len(refused), "p50_us": percentile(refused, 50) / 1000,
                             "p99_us": percentile(refused, 99) / 1000}
    for name, side in sides.items():
        s = sorted(side["samples"])
        result[name] = {"p50_us": percentile(s, 50) / 1000, "p90_us": percentile(s, 90) / 1000,
                        "p99_us": percentile(s, 99) / 1000, "p999_us": percentile(s, 99.9) / 1000,
                        "mean_us": statistics.fmean(s) / 1000,
                        # CPU per call (µs): the kernel's (all its threads, over all the rounds: only
                        # the gateway's calls go through it) and this side's workload's.
                        "kernel_cpu_us": side["kernel_ticks"] * 1e6 / TCK / side["calls"],
                        "workload_cpu_us": side["workload_ticks"] * 1e6 / TCK / side["calls"]}
        side["channel"].close()
    result["added_p50_us"] = result["gateway"]["p50_us"] - result["direct"]["p50_us"]
    result["added_p99_us"] = result["gateway"]["p99_us"] - result["direct"]["p99_us"]
    result["added_p50_us_rounds_median"] = statistics.median(added_p50)
    result["added_p99_us_rounds_median"] = statistics.median(added_p99)
    # The kernel's threads that worked during the rounds (the direct side's calls do not touch
    # the kernel), CPU µs per gateway call.
    busy = {name: (threads_after.get(name, 0) - t) * 1e6 / TCK / result["calls_per_side"]
            for name, t in threads_before.items() if threads_after.get(name, 0) - t > 0}
    result["kernel_threads_cpu_us"] = dict(sorted(busy.items(), key=lambda kv: -kv[1]))
    for name in ("gateway", "direct"):
        r = result[name]
        print(f"{name}: p50 {r['p50_us']:.0f} µs, p90 {r['p90_us']:.0f}, p99 {r['p99_us']:.0f}, p99.9 {r['p999_us']:.0f}, "
              f"mean {r['mean_us']:.0f}; CPU per call: kernel {r['kernel_cpu_us']:.0f} µs, workload {r['workload_cpu_us']:.0f} µs")
    if refused:
        print(f"a call the gateway refuses itself (no token, nothing relayed): p50 {result['refused']['p50_us']:.0f} µs, "
              f"p99 {result['refused']['p99_us']:.0f} µs")
    print(f"kernel threads, CPU µs per gateway call: "
          + ", ".join(f"{k} {v:.1f}" for k, v in result["kernel_threads_cpu_us"].items()))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
