'use strict';
// The Flight SQL gateway end to end, from a client's side: a real `synthorg serve` (http-api,
// auth, store-sqlite, workloads on orchestrator-process, flight-gateway) relaying to real DuckDB
// Flight SQL workloads (packaging/flightsql-duckdb), one per user, driven by a Flight SQL client
// written against the official protos (flight_client.js).
//
// Run by ctest as flight.gateway; needs SYNTHORG_BIN and SYNTHORG_PLUGIN_BUILD_DIR.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const http2 = require('node:http2');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const arrow = require('apache-arrow');
const grpc = require('@grpc/grpc-js');
const { FlightSqlClient, FlightError, findProtoDir } = require('./flight_client');

// Without the official protos there is no Flight client to test with: say so, and what to set.
let missing = null;
try {
  findProtoDir();
} catch (error) {
  missing = `${error.message} (they ship in ../shared/contracts/arrow-flight beside a checkout)`;
}
if (missing) {
  test('the Flight SQL gateway suite', { skip: missing }, () => {});
  return;
}

const BIN = process.env.SYNTHORG_BIN;
const PLUGINS = process.env.SYNTHORG_PLUGIN_BUILD_DIR;
const SERVER = path.resolve(__dirname, '../../packaging/flightsql-duckdb/server.js');
const SECRET = crypto.randomBytes(48).toString('base64url');
const PASSWORD = 'a long pass phrase 1';

let kernel, output = '', httpPort, grpcPort, dir;
const tokens = {};

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function request(method, target, body, token) {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const req = http.request({ host: '127.0.0.1', port: httpPort, method, path: target, headers }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function waitFor(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}\n${output.slice(-4000)}`);
}

const client = (token, extra = {}) =>
  new FlightSqlClient(`127.0.0.1:${grpcPort}`, { metadata: token ? { authorization: `Bearer ${token}` } : {}, ...extra });

async function expectCode(promise, codeName, pattern) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof FlightError, `a gRPC error, not ${error}`);
    assert.equal(error.codeName, codeName, `${error.codeName}: ${error.details}`);
    if (pattern) assert.match(error.details, pattern);
    return error;
  }
  assert.fail(`expected ${codeName}, the call succeeded`);
}

// The HS256 JWT the auth plugin would issue, with our claims: for expired and forged tokens.
function jwt(claims, secret = SECRET) {
  const part = (object) => Buffer.from(JSON.stringify(object)).toString('base64url');
  const input = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

// CPU seconds (user + system) of the kernel's workload processes (its descendants running
// server.js), from /proc.
function workloadProcesses() {
  const children = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      children.set(Number(entry), { ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / 100 });
    } catch { /* gone */ }
  }
  const mine = new Set([kernel.pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, info] of children)
      if (!mine.has(pid) && mine.has(info.ppid)) { mine.add(pid); grew = true; }
  }
  const result = [];
  for (const pid of mine) {
    if (pid === kernel.pid) continue;
    let cmdline = '', environ = '';
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
    } catch { continue; }
    if (!cmdline.includes('server.js')) continue;
    const host = (environ.split('\0').find((v) => v.startsWith('SYNTHORG_LISTEN_HOST=')) || '').split('=')[1];
    result.push({ pid, host, cpu: children.get(pid).cpu });
  }
  return result;
}

async function workloadOf(user) {
  const list = await request('GET', '/api/v1/workloads', undefined, tokens[user]);
  const running = list.body.workloads.find((w) => w.state === 'running');
  assert.ok(running, `${user} has a running workload: ${JSON.stringify(list.body)}`);
  const host = running.endpoints.grpc.host;
  const proc = workloadProcesses().find((p) => p.host === host);
  assert.ok(proc, `${user}'s workload process (${host})`);
  return proc;
}

before(async () => {
  assert.ok(BIN && PLUGINS, 'SYNTHORG_BIN and SYNTHORG_PLUGIN_BUILD_DIR are set by ctest');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthorg-flight-'));
  const plugins = path.join(dir, 'plugins');
  fs.mkdirSync(plugins);
  for (const name of ['http-api', 'auth', 'store-sqlite', 'workloads', 'orchestrator-process', 'flight-gateway', 'telemetry'])
    fs.symlinkSync(path.join(PLUGINS, `${name}.so`), path.join(plugins, `${name}.so`));
  httpPort = await freePort();
  grpcPort = await freePort();
  fs.writeFileSync(path.join(dir, 'company.yaml'), `company_name: FlightTest
kernel:
  plugin_dirs: [${plugins}]
select: {store: store-sqlite, orchestrator: orchestrator-process}
plugins:
  http-api: {config: {address: 127.0.0.1, port: ${httpPort}}}
  store-sqlite: {config: {path: ${path.join(dir, 's.db')}}}
  orchestrator-process: {config: {}}
  workloads:
    config:
      image: flightsql-duckdb
      command: [${process.execPath}, ${SERVER}]
      port: 0
      grpc_port: 8815
      env: {DUCKDB_THREADS: "1", DUCKDB_MEMORY_LIMIT: 256MB}
      memory_limit: "0"
      pids_limit: 0
      user: ""
      ready_timeout: 30s
      failure_cooldown: 2s
  telemetry: {config: {data_dir: ${dir}}}
  flight-gateway:
    config: {address: 127.0.0.1, port: ${grpcPort}, max_message_bytes: 4194304, max_streams_per_user: 40}
`);
  kernel = spawn(BIN, ['-c', path.join(dir, 'company.yaml'), 'serve'], {
    env: { ...process.env, SYNTHORG_JWT_SECRET: SECRET, SYNTHORG_HTTP_ACCESS_LOG: 'false',
           SYNTHORG_WORKLOADS_REQUESTS_PER_MINUTE: '100000', SYNTHORG_WORKLOADS_BURST_SIZE: '100000' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  kernel.stdout.on('data', (d) => (output += d));
  kernel.stderr.on('data', (d) => (output += d));
  await waitFor(() => output.includes('All plugins started') || kernel.exitCode !== null, 30000, 'the kernel to start');
  assert.equal(kernel.exitCode, null, `the kernel exited:\n${output}`);
  assert.match(output, new RegExp(`msg="gRPC server started".*port=${grpcPort}`), 'PondPilot\'s log line, with the port');

  assert.equal((await request('POST', '/api/v1/auth/setup', { username: 'admin', password: PASSWORD })).status, 201);
  tokens.admin = (await request('POST', '/api/v1/auth/login', { username: 'admin', password: PASSWORD })).body.token;
  for (const user of ['alice', 'bob', 'carol'])
    assert.equal((await request('POST', '/api/v1/users', { username: user, password: PASSWORD, role: 'viewer' },
                                tokens.admin)).status, 201);
  for (const user of ['bob', 'carol'])
    tokens[user] = (await request('POST', '/api/v1/auth/login', { username: user, password: PASSWORD })).body.token;
});

after(async () => {
  if (kernel && kernel.exitCode === null) {
    kernel.kill('SIGTERM');
    await waitFor(() => kernel.exitCode !== null, 20000, 'the kernel to stop').catch(() => kernel.kill('SIGKILL'));
  }
  for (const proc of kernel ? workloadProcesses() : []) process.kill(proc.pid, 'SIGKILL');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('the Handshake trades Basic credentials for a bearer token; the first query starts the workload', async () => {
  const anonymous = client(null);
  const answer = await anonymous.handshakeBasic('alice', PASSWORD);
  assert.match(answer.authorization || '', /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/, 'the token in the authorization header');
  tokens.alice = answer.authorization.slice('Bearer '.length);
  await expectCode(anonymous.handshakeBasic('alice', 'not the password'), 'UNAUTHENTICATED', /invalid username or password/);
  await expectCode(anonymous.handshake({}), 'UNAUTHENTICATED', /Basic/);
  anonymous.close();

  const alice = client(tokens.alice);
  const started = Date.now();
  const result = await alice.query('SELECT 42 AS answer');
  assert.deepEqual(result.rows.map((r) => Number(r.answer)), [42]);
  console.log(`cold first query (workload started): ${Date.now() - started} ms`);
  const bearer = await alice.handshake({});  // a bearer Handshake is checked, and echoed
  assert.equal(bearer.authorization, `Bearer ${tokens.alice}`);
  alice.close();
});

test('no token, a forged one, an expired one, a deleted user\'s: UNAUTHENTICATED, nothing forwarded', async () => {
  await expectCode(client(null).query('SELECT 1'), 'UNAUTHENTICATED', /Bearer/);
  const claims = JSON.parse(Buffer.from(tokens.alice.split('.')[1], 'base64url'));
  await expectCode(client(jwt(claims, 'another secret of the right length, 1234567890')).query('SELECT 1'),
                   'UNAUTHENTICATED');
  const past = Math.floor(Date.now() / 1000) - 3600;
  await expectCode(client(jwt({ ...claims, iat: past - 60, exp: past })).query('SELECT 1'), 'UNAUTHENTICATED');
  await expectCode(client('not.a.token').query('SELECT 1'), 'UNAUTHENTICATED');
  const revoked = (await request('POST', '/api/v1/auth/login', { username: 'carol', password: PASSWORD })).body.token;
  assert.equal((await request('POST', '/api/v1/auth/logout', undefined, revoked)).status, 204);
  await expectCode(client(revoked).query('SELECT 1'), 'UNAUTHENTICATED', /revoked|not valid/);
});

test('ten million rows stream through DoGet, checked by count and sum', async () => {
  const alice = client(tokens.alice);
  const started = Date.now();
  const stats = await alice.queryStats('SELECT range AS n FROM range(10000000)', 'n');
  const seconds = (Date.now() - started) / 1000;
  assert.equal(Number(stats.rows), 10_000_000);
  assert.equal(BigInt(stats.sum), 49_999_995_000_000n);
  console.log(`DoGet 10M rows through the gateway: ${seconds.toFixed(2)} s, ${stats.batches} batches`);
  alice.close();
});

test('DoPut updates, ingest and prepared statements; two users never see each other\'s tables', async () => {
  const alice = client(tokens.alice);
  await alice.update('CREATE TABLE secrets (id INTEGER, note VARCHAR)');
  assert.equal(Number(await alice.update("INSERT INTO secrets VALUES (1, 'a'), (2, 'b')")), 2);
  const table = arrow.tableFromArrays({ id: Int32Array.from([3, 4, 5]), note: ['c', 'd', 'e'] });
  assert.equal(Number(await alice.ingest('secrets', table, { ifNotExist: 'fail', ifExists: 'append' })), 3);
  const prepared = await alice.prepare('SELECT note FROM secrets WHERE id = ?');
  const picked = await alice.executePrepared(prepared, [4]);
  assert.deepEqual(picked.rows.map((r) => r.note), ['d']);
  await alice.closePrepared(prepared);
  const count = await alice.query('SELECT count(*) AS n FROM secrets');
  assert.equal(Number(count.rows[0].n), 5);

  const bob = client(tokens.bob);
  const tables = await bob.getTables({});
  assert.ok(!tables.rows.some((r) => r.table_name === 'secrets'), 'bob lists no table of alice\'s');
  await expectCode(bob.query('SELECT * FROM secrets'), 'INVALID_ARGUMENT', /secrets/);
  const mine = (await alice.getTables({})).rows.map((r) => r.table_name);
  assert.ok(mine.includes('secrets'));
  alice.close();
  bob.close();
});

test('a message over max_message_bytes is refused with RESOURCE_EXHAUSTED and the gateway serves on', async () => {
  const alice = client(tokens.alice);
  const big = arrow.tableFromArrays({ blob: [Buffer.alloc(6 * 1024 * 1024, 7).toString('latin1')] });
  await expectCode(alice.ingest('blobs', big, { ifNotExist: 'create' }), 'RESOURCE_EXHAUSTED');
  assert.equal(Number((await alice.query('SELECT 1 AS one')).rows[0].one), 1);
  alice.close();
});

test('cancelling a DoGet reaches the workload: its query stops', async () => {
  const alice = client(tokens.alice);
  await alice.query('SELECT 1');
  const workload = await workloadOf('alice');
  const controller = new AbortController();
  let batches = 0;
  const streaming = alice.queryStats('SELECT sum(a.range * b.range) OVER (ORDER BY a.range) AS s FROM range(3000) a, range(3000) b',
                                     's', { signal: controller.signal, onBatch: async () => { if (++batches === 1) controller.abort(); } });
  await expectCode(streaming, 'CANCELLED');
  await new Promise((r) => setTimeout(r, 500));
  const before = workloadProcesses().find((p) => p.pid === workload.pid).cpu;
  await new Promise((r) => setTimeout(r, 1500));
  const spent = workloadProcesses().find((p) => p.pid === workload.pid).cpu - before;
  assert.ok(spent < 0.3, `the workload went idle after the cancel (${spent.toFixed(2)} s CPU in 1.5 s)`);
  assert.equal(Number((await alice.query('SELECT 2 AS two')).rows[0].two), 2, 'and serves the next call');
  alice.close();
});

test('a workload killed mid-stream: that client gets UNAVAILABLE, the gateway serves others', async () => {
  const bob = client(tokens.bob);
  await bob.query('SELECT 1');
  const workload = await workloadOf('bob');
  let killed = false;
  const streaming = bob.queryStats('SELECT range AS n FROM range(10000000)', 'n', {
    onBatch: async () => {
      if (!killed) {
        killed = true;
        process.kill(workload.pid, 'SIGKILL');
      }
      await new Promise((r) => setTimeout(r, 20));
    },
  });
  await expectCode(streaming, 'UNAVAILABLE');
  const alice = client(tokens.alice);
  assert.equal(Number((await alice.query('SELECT 3 AS three')).rows[0].three), 3, 'alice is served meanwhile');
  // bob's next calls start him a new workload.
  await waitFor(async () => {
    try {
      return Number((await bob.query('SELECT 4 AS four')).rows[0].four) === 4;
    } catch (error) {
      return false;
    }
  }, 40000, 'bob to get a new workload');
  alice.close();
  bob.close();
});

test('garbage and floods get clean errors and leave the gateway serving', async () => {
  // HTTP/1.1 on the gRPC port.
  await new Promise((resolve) => {
    const socket = net.connect(grpcPort, '127.0.0.1', () => socket.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    socket.on('data', () => {});
    socket.on('close', resolve);
    socket.on('error', resolve);
  });
  // HTTP/2 that is not gRPC.
  const session = http2.connect(`http://127.0.0.1:${grpcPort}`);
  const status = await new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'GET', ':path': '/' });
    stream.on('response', (headers) => resolve(headers[':status']));
    stream.on('error', reject);
    stream.end();
  });
  assert.ok(status >= 200, `an HTTP/2 answer (${status})`);
  session.close();
  // A method of another service.
  const raw = new grpc.Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  const other = await new Promise((resolve) =>
    raw.makeUnaryRequest('/grpc.health.v1.Health/Check', (x) => x, (x) => x, Buffer.alloc(0), (error) => resolve(error)));
  raw.close();
  assert.equal(other && other.code, grpc.status.UNIMPLEMENTED);
  assert.match(other.details, /arrow\.flight\.protocol\.FlightService/);
  const alice = client(tokens.alice);
  // A flood of streams: max_streams_per_user is 40.
  const flood = await Promise.allSettled(Array.from({ length: 120 }, () =>
    alice.queryStats('SELECT range AS n FROM range(200000)', 'n')));
  const refused = flood.filter((r) => r.status === 'rejected');
  assert.ok(refused.every((r) => r.reason.codeName === 'RESOURCE_EXHAUSTED'),
            refused.map((r) => `${r.reason.codeName}: ${r.reason.details}`).join('\n'));
  assert.ok(flood.some((r) => r.status === 'fulfilled' && Number(r.value.rows) === 200000), 'the admitted ones complete');
  assert.equal(Number((await alice.query('SELECT 5 AS five')).rows[0].five), 5, 'and the gateway still serves');
  alice.close();
});

test('metrics count calls per method and status', async () => {
  const metrics = await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: httpPort, path: '/metrics' }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
  assert.match(metrics, /synthorg_grpc_calls_total\{[^}]*method="DoGet"[^}]*code="OK"[^}]*\} \d+/);
  assert.match(metrics, /synthorg_grpc_calls_total\{[^}]*code="UNAUTHENTICATED"[^}]*\} \d+/);
  assert.match(metrics, /synthorg_grpc_call_duration_seconds_bucket/);
  assert.match(output, /msg="grpc call" method=DoGet status=OK/);
});
