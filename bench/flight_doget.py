#!/usr/bin/python3
"""DoGet throughput with gRPC's C core as the client (Debian's python3-grpcio), for
bench/flight.sh: the same query through the flight-gateway and straight to a workload server of
the same kind, ROUNDS rounds alternating, the median of each round's ratio. flight_bench.js
measures the same with @grpc/grpc-js; this one shows what a client with C-core's HTTP/2 flow
control (BDP-sized windows, as the gateway's own upstream channel has) gets.

  /usr/bin/python3 bench/flight_doget.py --gateway H:P --direct H:P --token T --kernel PID
      --gateway-workload PID --direct-workload PID [--rows 10000000] [--rounds 5]

Each result is checked after its timing: the Arrow bodies hold the single non-null int64
column of `SELECT range FROM range(ROWS)` (8 bytes a row, no validity buffer, no padding at
65,536-row batches), so the rows are the body bytes / 8 and their sum must be ROWS(ROWS-1)/2.
Prints the table and, last, one line `RESULT {json}`.
"""
import argparse
import array
import json
import os
import statistics
import sys
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flight_latency import descriptor  # noqa: E402  (one copy of the protobuf helpers)

SERVICE = "/arrow.flight.protocol.FlightService/"
TCK = os.sysconf("SC_CLK_TCK")


def varint(buf, pos):
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def fields(buf):
    """Top-level protobuf fields -> {number: [bytes of each length-delimited occurrence]}."""
    out, pos, view = {}, 0, memoryview(buf)
    while pos < len(buf):
        key, pos = varint(buf, pos)
        wire, number = key & 7, key >> 3
        if wire == 2:
            length, pos = varint(buf, pos)
            out.setdefault(number, []).append(view[pos:pos + length])
            pos += length
        elif wire == 0:
            _, pos = varint(buf, pos)
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def main():
    parser = argparse.ArgumentParser()
    for name in ("--gateway", "--direct", "--token"):
        parser.add_argument(name, required=True)
    for name in ("--kernel", "--gateway-workload", "--direct-workload"):
        parser.add_argument(name, type=int, required=True)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sql = f"SELECT range FROM range({args.rows})"
    metadata = (("authorization", f"Bearer {args.token}"),)
    options = [("grpc.max_receive_message_length", -1), ("grpc.use_local_subchannel_pool", 1)]
    sides = {}
    for name, address, workload in (("gateway", args.gateway, args.gateway_workload),
                                    ("direct", args.direct, args.direct_workload)):
        channel = grpc.insecure_channel(address, options=options)
        sides[name] = {
            "channel": channel, "workload": workload, "runs": [],
            "info": channel.unary_unary(SERVICE + "GetFlightInfo", request_serializer=None, response_deserializer=None),
            "get": channel.unary_stream(SERVICE + "DoGet", request_serializer=None, response_deserializer=None),
        }

    def measure(name):
        side = sides[name]
        info = fields(side["info"](descriptor(sql), metadata=metadata, timeout=60))
        endpoint = fields(bytes(info[3][0]))  # FlightInfo.endpoint (3) -> FlightEndpoint.ticket (1)
        ticket = bytes(endpoint[1][0])        # the Ticket message itself, sent as the DoGet request
        cpu0 = {"client": time.process_time(), "kernel": ticks(args.kernel), "workload": ticks(side["workload"])}
        started = time.perf_counter()
        total, bodies = 0, []
        for message in side["get"](ticket, metadata=metadata, timeout=600):
            total += len(message)
            bodies.append(message)
        seconds = time.perf_counter() - started
        cpu = {"client": time.process_time() - cpu0["client"],
               "kernel": (ticks(args.kernel) - cpu0["kernel"]) / TCK if name == "gateway" else 0.0,
               "workload": (ticks(side["workload"]) - cpu0["workload"]) / TCK}
        # The check, after the clock stopped.
        body_bytes = rows = checksum = 0
        for message in bodies:
            body = fields(message).get(1000)
            if not body:
                continue
            if len(body[0]) % 8:
                raise SystemExit(f"{name}: a body of {len(body[0])} bytes is not whole int64 values")
            values = array.array("q")
            values.frombytes(body[0])
            body_bytes += len(body[0])
            rows += len(values)
            checksum += sum(values)
        if rows != args.rows or checksum != args.rows * (args.rows - 1) // 2:
            raise SystemExit(f"{name}: {rows} rows summing to {checksum}, expected {args.rows}")
        return {"seconds": seconds, "bytes": total, "body_bytes": body_bytes, "mbps": total / seconds / 1e6, "cpu": cpu}

    measure("direct")
    measure("gateway")
    print("| round | gateway MB/s | direct MB/s | gateway / direct | CPU s gateway run: kernel / workload / client "
          "| CPU s direct run: workload / client |")
    print("|---|---:|---:|---:|---|---|")
    ratios = []
    for round_ in range(1, args.rounds + 1):
        order = ("gateway", "direct") if round_ % 2 else ("direct", "gateway")
        result = {name: measure(name) for name in order}
        for name in order:
            sides[name]["runs"].append(result[name])
        g, d = result["gateway"], result["direct"]
        ratios.append(g["mbps"] / d["mbps"])
        print(f"| {round_} | {g['mbps']:.1f} | {d['mbps']:.1f} | {ratios[-1]:.3f} | {g['cpu']['kernel']:.2f} / "
              f"{g['cpu']['workload']:.2f} / {g['cpu']['client']:.2f} | {d['cpu']['workload']:.2f} / {d['cpu']['client']:.2f} |")

    def per_gb(name, key):
        return statistics.median(r["cpu"][key] / (r["bytes"] / 1e9) for r in sides[name]["runs"])

    first = sides["direct"]["runs"][0]
    result = {"rows": args.rows, "rounds": args.rounds, "bytes": first["bytes"], "bodyBytes": first["body_bytes"],
              "gatewayMBps": statistics.median(r["mbps"] for r in sides["gateway"]["runs"]),
              "directMBps": statistics.median(r["mbps"] for r in sides["direct"]["runs"]),
              "ratio": statistics.median(ratios), "ratios": ratios,
              "cpuPerGB": {"gatewayKernel": per_gb("gateway", "kernel"), "gatewayWorkload": per_gb("gateway", "workload"),
                           "gatewayClient": per_gb("gateway", "client"), "directWorkload": per_gb("direct", "workload"),
                           "directClient": per_gb("direct", "client")}}
    print(f"{args.rows} rows, {result['bytes']} bytes of FlightData ({result['bodyBytes']} Arrow body bytes) a run, "
          "checked by count and sum")
    for side in sides.values():
        side["channel"].close()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
