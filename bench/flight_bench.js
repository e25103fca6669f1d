#!/usr/bin/env node
'use strict';
// The Node half of bench/flight.sh: Arrow Flight SQL through the flight-gateway against the same
// workload server (packaging/flightsql-duckdb) reached directly. Run by flight.sh, which starts
// the kernel and the direct workload and passes their addresses, pids and tokens:
//
//   flight_bench.js doget   --gateway H:P --direct H:P --token T --kernel PID --direct-pid PID
//                           [--rows 10000000] [--rounds 5]
//   flight_bench.js cold    --gateway H:P --http URL --tokens T1,T2,... --kernel PID --port P
//                           --server server.js --env JSON [--workload-port 8815]
//   flight_bench.js idle    --gateway H:P --token T --kernel PID [--count 1000]
//   flight_bench.js stall   --gateway H:P --token T --kernel PID [--rows 10000000] [--hold-ms 4000]
//   flight_bench.js streams --gateway H:P --token T --kernel PID [--streams 1000]
//                           [--connections 10] [--rows 100000] [--pause-ms 1500]
//
// Each prints a few human lines and, last, one line `RESULT {json}` for flight.sh's summary.
// The client is @grpc/grpc-js from tests/flight (the same one flight_client.js uses), calling
// FlightService methods with raw bytes: a DoGet's FlightData messages are parsed just enough to
// count rows and Arrow body bytes and to sum the int64 column, never decoded into Arrow objects,
// so that the client costs as little CPU as it can on the two shared cores.

const fs = require('fs');
const net = require('net');
const http = require('http');
const path = require('path');
const { spawn } = require('child_process');
const { createRequire } = require('module');

const root = path.resolve(__dirname, '..');
const clientPath = path.join(root, 'tests/flight/flight_client.js');
const flight = require(clientPath);
const fromTests = createRequire(clientPath);
const grpc = fromTests('@grpc/grpc-js');
const arrow = fromTests('apache-arrow');

const SERVICE = '/arrow.flight.protocol.FlightService/';
const identity = (x) => x;
const TCK = 100;  // USER_HZ: /proc's clock ticks per second on Linux

// ---- arguments, /proc --------------------------------------------------------------------------

function options(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
    i++;
  }
  return out;
}

function cpuSeconds(pid) {  // user + system of the whole process, all threads
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TCK;
  } catch {
    return NaN;
  }
}

function status(pid) {  // { rssKiB, threads }
  try {
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return { rssKiB: Number(/VmRSS:\s+(\d+)/.exec(text)[1]), threads: Number(/Threads:\s+(\d+)/.exec(text)[1]) };
  } catch {
    return { rssKiB: NaN, threads: NaN };
  }
}

// The kernel's workload processes (descendants running server.js): [{ pid, host }].
function workloadProcesses(kernelPid) {
  const parent = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* gone */ }
  }
  const mine = new Set([kernelPid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of parent) if (!mine.has(pid) && mine.has(ppid)) { mine.add(pid); grew = true; }
  }
  const out = [];
  for (const pid of mine) {
    if (pid === kernelPid) continue;
    try {
      if (!fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('server.js')) continue;
      const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      out.push({ pid, host: (env.find((v) => v.startsWith('SYNTHORG_LISTEN_HOST=')) || '=').split('=')[1] });
    } catch { /* gone */ }
  }
  return out;
}

// The kernel's child processes, from /proc/PID/task/*/children.
function children(pid) {
  const out = [];
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(...fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
    } catch { /* gone */ }
  }
  return out;
}

// A workload process's SYNTHORG_LISTEN_HOST; null before it has one (just forked, not exec'd).
function listenHost(pid) {
  try {
    const found = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').find((v) => v.startsWith('SYNTHORG_LISTEN_HOST='));
    return found ? found.split('=')[1] : null;
  } catch {
    return null;
  }
}

// Established TCP connections whose remote port is `port` (this machine's clients of it), from
// /proc/net/tcp: to check that N channels really are N connections.
function connectionsTo(port) {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
    .filter((line) => { const f = line.trim().split(/\s+/); return f[3] === '01' && f[2] && f[2].endsWith(`:${hex}`); }).length;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[(s.length - 1) >> 1]; };
const mib = (kib) => (kib / 1024).toFixed(1);

// ---- raw Flight calls ----------------------------------------------------------------------------

function channel(address, extra = {}) {
  return new grpc.Client(address, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1, ...extra,
  });
}

function metadataOf(token) {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}

// FlightDescriptor { type: CMD, cmd: Any(CommandStatementQuery { query }) }, as bytes.
function statementDescriptor(sql) {
  return flight.encode('arrow.flight.protocol.FlightDescriptor', {
    type: 'CMD', cmd: flight.pack('CommandStatementQuery', { query: sql }), path: [],
  });
}

function getFlightInfo(client, token, sql) {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(`${SERVICE}GetFlightInfo`, identity, identity, statementDescriptor(sql), metadataOf(token), {},
      (error, bytes) => (error ? reject(error) : resolve(bytes)));
  });
}

async function ticketFor(client, token, sql) {
  const info = flight.decode('arrow.flight.protocol.FlightInfo', await getFlightInfo(client, token, sql));
  if (info.endpoint.length !== 1) throw new Error(`expected one endpoint, got ${info.endpoint.length}`);
  return flight.encode('arrow.flight.protocol.Ticket', { ticket: info.endpoint[0].ticket.ticket });
}

// Reads a protobuf varint at `pos` -> [value, next position].
function varint(buf, pos) {
  let value = 0, shift = 0, byte;
  do {
    byte = buf[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, pos];
}

// FlightData bytes -> { header, body } (fields 2 and 1000), without copying.
function flightDataParts(buf) {
  let header = null, body = null, pos = 0;
  while (pos < buf.length) {
    let key, length;
    [key, pos] = varint(buf, pos);
    const wire = key & 7, field = Math.floor(key / 8);
    if (wire === 2) {
      [length, pos] = varint(buf, pos);
      if (field === 2) header = buf.subarray(pos, pos + length);
      else if (field === 1000) body = buf.subarray(pos, pos + length);
      pos += length;
    } else if (wire === 0) {
      [, pos] = varint(buf, pos);
    } else {
      throw new Error(`unexpected wire type ${wire} in FlightData`);
    }
  }
  return { header, body };
}

// Counts one FlightData into `stats`: messages, bytes (whole FlightData), body bytes, rows, and
// the sum of the single int64 column (non-negative values below 2^32: their low words, summed as
// doubles, exact below 2^53; their high words must be zero).
function account(stats, buf) {
  stats.messages++;
  stats.bytes += buf.length;
  const { header, body } = flightDataParts(buf);
  if (!header) return;
  const message = arrow.Message.decode(header);
  if (!message.isRecordBatch()) return;
  const batch = message.header();
  stats.rows += Number(batch.length);
  if (!body) return;
  stats.bodyBytes += body.length;
  const values = batch.buffers[1];
  let words = body.subarray(Number(values.offset), Number(values.offset) + Number(values.length));
  if (words.byteOffset % 4) words = Buffer.from(words);  // a Uint32Array view needs alignment
  const u32 = new Uint32Array(words.buffer, words.byteOffset, words.length >> 2);
  let sum = 0, high = 0;
  for (let i = 0; i < u32.length; i += 2) {
    sum += u32[i];
    high |= u32[i + 1];
  }
  if (high) stats.bad = 'a value at or above 2^32 (the bench expects range(N), N < 2^32)';
  stats.sum += sum;
}

// A DoGet, raw. hooks.onMessage(stats, call) may pause the call (a slow reader). -> stats
function doGet(client, token, ticket, hooks = {}) {
  return new Promise((resolve, reject) => {
    const stats = { messages: 0, bytes: 0, bodyBytes: 0, rows: 0, sum: 0, bad: null };
    const call = client.makeServerStreamRequest(`${SERVICE}DoGet`, identity, identity, ticket, metadataOf(token), {});
    call.on('data', (buf) => {
      try {
        account(stats, buf);
      } catch (error) {
        stats.bad = String(error);
      }
      if (hooks.onMessage) hooks.onMessage(stats, call);
    });
    call.on('error', reject);
    call.on('end', () => resolve(stats));
  });
}

const expectedSum = (rows) => (rows * (rows - 1)) / 2;

function check(stats, rows, what) {
  if (stats.bad) throw new Error(`${what}: ${stats.bad}`);
  if (stats.rows !== rows || stats.sum !== expectedSum(rows))
    throw new Error(`${what}: ${stats.rows} rows summing to ${stats.sum}, expected ${rows} summing to ${expectedSum(rows)}`);
}

// ---- DoGet throughput ----------------------------------------------------------------------------

async function dogetBench(o) {
  const rows = Number(o.rows || 10_000_000);
  const rounds = Number(o.rounds || 5);
  const kernel = Number(o.kernel);
  const sql = `SELECT range FROM range(${rows})`;
  const sides = {
    gateway: { client: channel(o.gateway), token: o.token, runs: [] },
    direct: { client: channel(o.direct), token: o.token, pid: Number(o['direct-pid']), runs: [] },
  };
  const measure = async (name) => {
    const side = sides[name];
    const ticket = await ticketFor(side.client, side.token, sql);
    const before = { client: process.cpuUsage(), kernel: cpuSeconds(kernel), workload: cpuSeconds(side.pid) };
    const started = process.hrtime.bigint();
    const stats = await doGet(side.client, side.token, ticket);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const client = process.cpuUsage(before.client);
    check(stats, rows, `DoGet ${name}`);
    return {
      seconds, bytes: stats.bytes, bodyBytes: stats.bodyBytes, messages: stats.messages,
      mbps: stats.bytes / seconds / 1e6,
      cpu: {
        client: (client.user + client.system) / 1e6,
        kernel: name === 'gateway' ? cpuSeconds(kernel) - before.kernel : 0,
        workload: cpuSeconds(side.pid) - before.workload,
      },
    };
  };
  // Warm both (and learn which process is the gateway's workload).
  await measure('direct');
  await ticketFor(sides.gateway.client, sides.gateway.token, 'SELECT 1');
  const workloads = workloadProcesses(kernel);
  if (workloads.length !== 1) throw new Error(`expected one workload behind the gateway, found ${workloads.length}`);
  sides.gateway.pid = workloads[0].pid;
  await measure('gateway');

  console.log(`| round | gateway MB/s | direct MB/s | gateway / direct | CPU s gateway run: kernel / workload / client | CPU s direct run: workload / client |`);
  console.log('|---|---:|---:|---:|---|---|');
  const ratios = [];
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 ? ['gateway', 'direct'] : ['direct', 'gateway'];
    const result = {};
    for (const name of order) result[name] = await measure(name);
    sides.gateway.runs.push(result.gateway);
    sides.direct.runs.push(result.direct);
    const ratio = result.gateway.mbps / result.direct.mbps;
    ratios.push(ratio);
    const g = result.gateway.cpu, d = result.direct.cpu;
    console.log(`| ${round} | ${result.gateway.mbps.toFixed(1)} | ${result.direct.mbps.toFixed(1)} | ${ratio.toFixed(3)} | ` +
      `${g.kernel.toFixed(2)} / ${g.workload.toFixed(2)} / ${g.client.toFixed(2)} | ${d.workload.toFixed(2)} / ${d.client.toFixed(2)} |`);
  }
  const first = sides.direct.runs[0];
  const perGB = (runs, key) => median(runs.map((r) => r.cpu[key] / (r.bytes / 1e9)));
  const result = {
    rows, rounds, bytes: first.bytes, bodyBytes: first.bodyBytes, messages: first.messages,
    gatewayMBps: median(sides.gateway.runs.map((r) => r.mbps)),
    directMBps: median(sides.direct.runs.map((r) => r.mbps)),
    ratio: median(ratios), ratios,
    // CPU seconds per GB relayed, medians: what each process spends for the same bytes.
    cpuPerGB: {
      gatewayKernel: perGB(sides.gateway.runs, 'kernel'), gatewayWorkload: perGB(sides.gateway.runs, 'workload'),
      gatewayClient: perGB(sides.gateway.runs, 'client'),
      directWorkload: perGB(sides.direct.runs, 'workload'), directClient: perGB(sides.direct.runs, 'client'),
    },
  };
  console.log(`${rows} rows: ${result.messages} FlightData messages, ${result.bytes} bytes (${result.bodyBytes} Arrow body bytes) each run`);
  sides.gateway.client.close();
  sides.direct.client.close();
  return result;
}

// ---- cold first query ------------------------------------------------------------------------------

function httpRequest(base, method, target, token) {
  const url = new URL(target, base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path: url.pathname,
      headers: { authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function firstQuery(address, token) {
  const client = channel(address);
  try {
    const ticket = await ticketFor(client, token, 'SELECT 42 AS answer');
    const stats = await doGet(client, token, ticket);
    if (stats.rows !== 1 || stats.sum !== 42) throw new Error(`SELECT 42 answered ${stats.rows} rows, sum ${stats.sum}`);
  } finally {
    client.close();
  }
}

async function waitUntil(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

// One connection attempt: resolves true once something accepts on host:port.
const accepts = (host, port) => new Promise((resolve) => {
  const socket = net.connect(port, host);
  socket.once('connect', () => { socket.destroy(); resolve(true); });
  socket.once('error', () => resolve(false));
});

async function coldBench(o) {
  const kernel = Number(o.kernel);
  const tokens = o.tokens.split(',');
  const port = Number(o.port);
  const env = JSON.parse(o.env);
  const pollMs = 2;
  flight.encode('arrow.flight.protocol.Ticket', { ticket: Buffer.alloc(0) });  // protos loaded before any timing

  const workloadPort = Number(o['workload-port'] || 8815);
  const viaGateway = async (token) => {
    const started = process.hrtime.bigint();
    const elapsed = () => Number(process.hrtime.bigint() - started) / 1e6;
    // Beside the query, a probe: when the kernel forks the workload (a new child in
    // /proc/PID/task/*/children) and when that workload first accepts a connection (an attempt
    // every 2 ms, as on the direct side). So the time splits into: before the fork (sign-in check,
    // the workload record, the orchestrator), the server's own start, and after it accepts (the
    // workloads plugin noticing, the gateway connecting, the query).
    const probe = { spawnMs: NaN, acceptMs: NaN };
    const known = new Set(children(kernel));
    let probing = true, host = null;
    const probeLoop = (async () => {
      while (probing && Number.isNaN(probe.acceptMs)) {
        if (!host) {
          for (const pid of children(kernel)) {
            if (known.has(pid)) continue;
            if (Number.isNaN(probe.spawnMs)) probe.spawnMs = elapsed();
            host = listenHost(pid);  // null until the child has exec'd into the workload
          }
        } else if (await accepts(host, workloadPort)) {
          probe.acceptMs = elapsed();
        }
        await sleep(2);
      }
    })();
    await firstQuery(o.gateway, token);
    const ms = elapsed();
    probing = false;
    await probeLoop;
    // Stop that workload, and wait for its process to be gone, before the next measurement.
    const list = await httpRequest(o.http, 'GET', '/api/v1/workloads', token);
    const running = list.body.workloads.find((w) => w.state === 'running');
    if (!running) throw new Error(`no running workload after the first query: ${JSON.stringify(list.body)}`);
    const stopped = await httpRequest(o.http, 'DELETE', `/api/v1/workloads/${running.id}`, token);
    if (stopped.status >= 300) throw new Error(`DELETE /api/v1/workloads/${running.id}: ${stopped.status}`);
    await waitUntil(() => !workloadProcesses(kernel).some((w) => w.host === running.endpoints.grpc.host), 15000,
                    'the workload process to exit');
    return { ms, ...probe };
  };
  const direct = async (token) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, [o.server], { env, stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      // As fast as a client can notice: a connection attempt every 2 ms.
      while (!(await accepts('127.0.0.1', port))) {
        if (child.exitCode !== null) throw new Error(`the direct server exited (${child.exitCode})`);
        await sleep(pollMs);
      }
      const acceptMs = Number(process.hrtime.bigint() - started) / 1e6;
      await firstQuery(`127.0.0.1:${port}`, token);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      return { ms, acceptMs };
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  };

  console.log('| round | gateway: first call to answer, ms | of which: to fork / fork to accept / accept to answer | ' +
              'direct: spawn to answer, ms | of which: spawn to accept / accept to answer | ratio |');
  console.log('|---|---:|---|---:|---|---:|');
  const ratios = [], gatewayMs = [], directMs = [], acceptMs = [], split = { fork: [], start: [], after: [], directAfter: [] };
  for (let round = 1; round <= tokens.length; round++) {
    const token = tokens[round - 1];
    let g, d;
    if (round % 2) { g = await viaGateway(token); d = await direct(token); } else { d = await direct(token); g = await viaGateway(token); }
    ratios.push(g.ms / d.ms);
    gatewayMs.push(g.ms);
    directMs.push(d.ms);
    acceptMs.push(d.acceptMs);
    split.fork.push(g.spawnMs);
    split.start.push(g.acceptMs - g.spawnMs);
    split.after.push(g.ms - g.acceptMs);
    split.directAfter.push(d.ms - d.acceptMs);
    console.log(`| ${round} | ${g.ms.toFixed(0)} | ${g.spawnMs.toFixed(0)} / ${(g.acceptMs - g.spawnMs).toFixed(0)} / ` +
      `${(g.ms - g.acceptMs).toFixed(0)} | ${d.ms.toFixed(0)} | ${d.acceptMs.toFixed(0)} / ${(d.ms - d.acceptMs).toFixed(0)} | ` +
      `${(g.ms / d.ms).toFixed(2)} |`);
  }
  const medians = Object.fromEntries(Object.entries(split).map(([k, v]) => [k, median(v)]));
  console.log(`medians: gateway ${median(gatewayMs).toFixed(0)} ms = ${medians.fork.toFixed(0)} to the fork + ` +
    `${medians.start.toFixed(0)} for the server to accept + ${medians.after.toFixed(0)} from accept to answer; direct ` +
    `${median(directMs).toFixed(0)} ms = ${median(acceptMs).toFixed(0)} to accept + ${medians.directAfter.toFixed(0)} to answer`);
  return { rounds: tokens.length, gatewayMs: median(gatewayMs), directMs: median(directMs), acceptMs: median(acceptMs),
           ratio: median(ratios), ratios, split: medians };
}

// ---- idle connections -----------------------------------------------------------------------------

async function idleBench(o) {
  const kernel = Number(o.kernel);
  const count = Number(o.count || 1000);
  const gatewayPort = Number(o.gateway.split(':').pop());
  // Each channel its own HTTP/2 connection: no subchannel shared between channels of this process.
  const own = { 'grpc.use_local_subchannel_pool': 1 };
  const warm = channel(o.gateway, own);
  await getFlightInfo(warm, o.token, 'SELECT 1');
  warm.close();
  await sleep(1500);
  const baseline = connectionsTo(gatewayPort);
  const before = status(kernel);
  const clients = [];
  for (let i = 0; i < count; i += 50) {
    const batch = Array.from({ length: Math.min(50, count - i) }, () => channel(o.gateway, own));
    await Promise.all(batch.map((c) => getFlightInfo(c, o.token, 'SELECT 1')));
    clients.push(...batch);
  }
  await sleep(3000);
  const open = connectionsTo(gatewayPort) - baseline;
  const after = status(kernel);
  const perConnection = (after.rssKiB - before.rssKiB) / count;
  console.log(`${count} idle gRPC connections (${open} established), each after one GetFlightInfo: kernel VmRSS ` +
    `${mib(before.rssKiB)} -> ${mib(after.rssKiB)} MiB, ${perConnection.toFixed(1)} KiB per connection; ` +
    `threads ${before.threads} -> ${after.threads}`);
  for (const c of clients) c.close();
  await sleep(3000);
  const closed = status(kernel);
  console.log(`all closed, 3 s later: VmRSS ${mib(closed.rssKiB)} MiB, threads ${closed.threads}`);
  if (open < count) throw new Error(`only ${open} of ${count} connections were established`);
  return { count, established: open, rssBeforeKiB: before.rssKiB, rssAfterKiB: after.rssKiB, rssClosedKiB: closed.rssKiB,
           perConnectionKiB: perConnection, threadsBefore: before.threads, threadsAfter: after.threads };
}

// ---- concurrent slow streams ------------------------------------------------------------------------

async function streamsBench(o) {
  const kernel = Number(o.kernel);
  const streams = Number(o.streams || 1000);
  const connections = Number(o.connections || 10);
  const rows = Number(o.rows || 100000);
  const pauseMs = Number(o['pause-ms'] || 1500);
  const sql = `SELECT range FROM range(${rows})`;
  const own = { 'grpc.use_local_subchannel_pool': 1 };
  const clients = Array.from({ length: connections }, () => channel(o.gateway, own));
  // Tickets first (GetFlightInfo), 50 at a time; then every DoGet at once.
  const tickets = [];
  for (let i = 0; i < streams; i += 50)
    tickets.push(...(await Promise.all(Array.from({ length: Math.min(50, streams - i) },
      (_, j) => ticketFor(clients[(i + j) % connections], o.token, sql)))));
  await sleep(1000);
  const before = status(kernel);
  const workload = workloadProcesses(kernel)[0];
  const workloadBefore = status(workload.pid);
  let open = 0, peakOpen = 0, peak = { ...before }, workloadPeak = 0;
  const sample = () => {
    const s = status(kernel);
    if (s.rssKiB > peak.rssKiB) peak.rssKiB = s.rssKiB;
    if (s.threads > peak.threads) peak.threads = s.threads;
    workloadPeak = Math.max(workloadPeak, status(workload.pid).rssKiB);
  };
  const sampler = setInterval(sample, 200);
  const started = Date.now();
  const cpu0 = cpuSeconds(kernel), workloadCpu0 = cpuSeconds(workload.pid);
  // A slow reader: after each message, the call is paused for pauseMs (gRPC flow control then
  // holds the rest upstream).
  const results = await Promise.allSettled(tickets.map((ticket, i) => {
    let counted = false;
    const onMessage = (stats, call) => {
      if (!counted) {
        counted = true;
        peakOpen = Math.max(peakOpen, ++open);
      }
      call.pause();
      setTimeout(() => call.resume(), pauseMs);
    };
    return doGet(clients[i % connections], o.token, ticket, { onMessage }).finally(() => { if (counted) open--; });
  }));
  clearInterval(sampler);
  sample();
  const seconds = (Date.now() - started) / 1000;
  const cpu = cpuSeconds(kernel) - cpu0, workloadCpu = cpuSeconds(workload.pid) - workloadCpu0;
  await sleep(2000);
  const settled = status(kernel);
  let ok = 0;
  const failures = new Map();
  for (const r of results) {
    if (r.status === 'fulfilled') {
      try {
        check(r.value, rows, 'stream');
        ok++;
      } catch (error) {
        failures.set(error.message, (failures.get(error.message) || 0) + 1);
      }
    } else {
      const key = `${r.reason.code} ${r.reason.details || r.reason.message}`;
      failures.set(key, (failures.get(key) || 0) + 1);
    }
  }
  console.log(`${streams} DoGet streams of ${rows} rows on ${connections} connections, the client pausing ${pauseMs} ms after ` +
    `each message: ${ok} complete and correct, at most ${peakOpen} open at once, ${seconds.toFixed(1)} s`);
  console.log(`kernel VmRSS ${mib(before.rssKiB)} MiB before, ${mib(peak.rssKiB)} MiB at the peak ` +
    `(+${((peak.rssKiB - before.rssKiB) / streams).toFixed(1)} KiB per stream), ${mib(settled.rssKiB)} MiB 2 s after; ` +
    `threads ${before.threads} before, ${peak.threads} at the peak; CPU: kernel ${cpu.toFixed(2)} s, workload ${workloadCpu.toFixed(2)} s; ` +
    `workload VmRSS ${mib(workloadBefore.rssKiB)} -> ${mib(workloadPeak)} MiB at its peak`);
  for (const [what, n] of failures) console.log(`FAILED ${n}: ${what}`);
  for (const c of clients) c.close();
  return { streams, connections, rows, pauseMs, ok, peakOpen, seconds, cpu, workloadCpu, rssBeforeKiB: before.rssKiB, rssPeakKiB: peak.rssKiB,
           rssAfterKiB: settled.rssKiB, threadsBefore: before.threads, threadsPeak: peak.threads,
           workloadRssBeforeKiB: workloadBefore.rssKiB, workloadRssPeakKiB: workloadPeak, failures: Object.fromEntries(failures) };
}

// ---- one stalled reader ------------------------------------------------------------------------------

// One DoGet whose client stops reading after the first record batch, for `hold` ms: how much of
// the result the kernel (the gateway) and the workload take in meanwhile. A relay that keeps one
// message in flight each way holds about one message plus the HTTP/2 windows; more means the
// reader's flow control does not reach the workload.
async function stallBench(o) {
  const kernel = Number(o.kernel);
  const rows = Number(o.rows || 10_000_000);
  const holdMs = Number(o['hold-ms'] || 4000);
  const client = channel(o.gateway, { 'grpc.use_local_subchannel_pool': 1 });
  const ticket = await ticketFor(client, o.token, `SELECT range FROM range(${rows})`);
  const workload = workloadProcesses(kernel)[0];
  await sleep(500);
  const before = status(kernel), workloadBefore = status(workload.pid);
  let held = null;
  const stats = await doGet(client, o.token, ticket, {
    onMessage: (s, call) => {
      if (s.rows === 0 || held) return;
      call.pause();
      held = new Promise((resolve) => setTimeout(() => {
        const during = { kernel: status(kernel), workload: status(workload.pid), bytesRead: s.bytes };
        call.resume();
        resolve(during);
      }, holdMs));
    },
  });
  const during = await held;
  check(stats, rows, 'stalled DoGet');
  client.close();
  const result = { rows, holdMs, resultBytes: stats.bytes, clientHadBytes: during.bytesRead,
                   kernelGrowthKiB: during.kernel.rssKiB - before.rssKiB,
                   workloadGrowthKiB: during.workload.rssKiB - workloadBefore.rssKiB };
  console.log(`one DoGet of ${rows} rows (${(stats.bytes / 1e6).toFixed(1)} MB), the client stalled ${holdMs} ms after ` +
    `the first batch (${(during.bytesRead / 1e6).toFixed(2)} MB read): meanwhile the kernel's VmRSS grew ` +
    `${mib(result.kernelGrowthKiB)} MiB, the workload's ${mib(result.workloadGrowthKiB)} MiB`);
  return result;
}

// ---- main ---------------------------------------------------------------------------------------

const commands = { doget: dogetBench, cold: coldBench, idle: idleBench, streams: streamsBench, stall: stallBench };
const [command, ...rest] = process.argv.slice(2);
if (!commands[command]) {
  process.stderr.write(`usage: flight_bench.js ${Object.keys(commands).join('|')} --option value...\n`);
  process.exit(2);
}
commands[command](options(rest)).then((result) => {
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(0);
}, (error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
