'use strict';
// The Flight SQL gateway end to end, from a client's side: a real `synthorg serve` (http-api,
// auth, store-sqlite, workloads, flight-gateway) relaying to real DuckDB Flight SQL workloads
// (packaging/flightsql-duckdb), one per user, driven by a Flight SQL client written against the
// official protos (flight_client.js). The kernel comes from kernel_fixture.js.
//
// FLIGHT_ORCHESTRATOR selects where the workloads run: `process` (default; orchestrator-process
// runs server.js) or `docker` (orchestrator-docker runs synthorg/flightsql-duckdb:latest, hardened
// as the workloads plugin does by default; skipped, saying how to build it, when it is absent).
//
// Run by ctest as flight.gateway and flight.gateway_docker; needs SYNTHORG_BIN and
// SYNTHORG_PLUGIN_BUILD_DIR.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const http2 = require('node:http2');
const net = require('node:net');
const arrow = require('apache-arrow');
const grpc = require('@grpc/grpc-js');
const { FlightSqlClient, FlightError } = require('./flight_client');
const { expectCode, skipReason, startKernel, ORCHESTRATOR, IMAGE, MEMORY_LIMIT, DUCKDB_MEMORY_LIMIT, PASSWORD } = require('./kernel_fixture');

// Without the official protos there is no Flight client to test with; in docker mode, without
// the engine or the image there is no workload: say so, and what to do.
const missing = skipReason();
if (missing) {
  test('the Flight SQL gateway suite', { skip: missing }, () => {});
  return;
}

let kernel, httpPort, grpcPort;
let tokens = {};
const request = (...args) => kernel.request(...args);
const waitFor = (...args) => kernel.waitFor(...args);

const client = (token, extra = {}) =>
  new FlightSqlClient(`127.0.0.1:${grpcPort}`, { metadata: token ? { authorization: `Bearer ${token}` } : {}, ...extra });


// The HS256 JWT the auth plugin would issue, with our claims: for expired and forged tokens.
function jwt(claims, secret = kernel.secret) {
  const part = (object) => Buffer.from(JSON.stringify(object)).toString('base64url');
  const input = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

before(async () => {
  kernel = await startKernel({ users: ['admin', 'alice', 'bob', 'carol'], noToken: ['alice'],
                               gateway: { max_streams_per_user: 40 } });
  ({ httpPort, grpcPort, tokens } = kernel);
  if (ORCHESTRATOR === 'docker') console.log(`workloads on orchestrator-docker: ${IMAGE}, memory_limit ${MEMORY_LIMIT}, DUCKDB_MEMORY_LIMIT ${DUCKDB_MEMORY_LIMIT}, instance ${kernel.instance}`);
});

after(async () => {
  if (kernel) await kernel.stop();
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
  let result;
  try {
    result = await alice.query('SELECT 42 AS answer');
  } catch (error) {
    // The cold call failed, and that is this test's failure. Wait for the workload to serve
    // before failing, so that the tests after this one do not fail for the same reason.
    await waitFor(() => alice.query('SELECT 1').then(() => true, () => false), 30000, 'alice\'s workload to serve')
      .catch(() => {});
    throw error;
  }
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
  const workload = await kernel.workload('alice');
  const controller = new AbortController();
  let batches = 0;
  const streaming = alice.queryStats('SELECT sum(a.range * b.range) OVER (ORDER BY a.range) AS s FROM range(3000) a, range(3000) b',
                                     's', { signal: controller.signal, onBatch: async () => { if (++batches === 1) controller.abort(); } });
  await expectCode(streaming, 'CANCELLED');
  await new Promise((r) => setTimeout(r, 500));
  const before = await workload.cpuSeconds();
  await new Promise((r) => setTimeout(r, 1500));
  const spent = (await workload.cpuSeconds()) - before;
  assert.ok(spent < 0.3, `the workload went idle after the cancel (${spent.toFixed(2)} s CPU in 1.5 s)`);
  assert.equal(Number((await alice.query('SELECT 2 AS two')).rows[0].two), 2, 'and serves the next call');
  alice.close();
});

test('a workload killed mid-stream: that client gets UNAVAILABLE, the gateway serves others', async () => {
  const bob = client(tokens.bob);
  await bob.query('SELECT 1');
  const workload = await kernel.workload('bob');
  let killed = false;
  const streaming = bob.queryStats('SELECT range AS n FROM range(10000000)', 'n', {
    onBatch: async () => {
      if (!killed) {
        killed = true;
        await workload.kill();
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
  assert.match(kernel.output, /msg="grpc call" method=DoGet status=OK/);
});

if (ORCHESTRATOR === 'docker') {
  test('no workload container was killed for memory (docker)', () => {
    assert.deepEqual(kernel.oomKills(), [], `the engine OOM-killed these containers at memory_limit ${MEMORY_LIMIT} (DUCKDB_MEMORY_LIMIT ${DUCKDB_MEMORY_LIMIT})`);
  });
}
