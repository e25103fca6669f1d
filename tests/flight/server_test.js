'use strict';
// The flightsql-duckdb server (packaging/flightsql-duckdb/server.js) against the Flight SQL
// test client, over gRPC on loopback.
//
//   (cd packaging/flightsql-duckdb && npm ci) && (cd tests/flight && npm ci)
//   node --test tests/flight/server_test.js
//
// The server is started on 127.0.0.1 with port 0 and the test reads the port from its startup
// line. Memory and CPU are read from /proc for the server process: a 10-million-row result must
// stream with bounded memory, and a cancelled query must stop using CPU.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const arrow = require('apache-arrow');
const grpc = require('@grpc/grpc-js');
const { FlightSqlClient, FlightError, packAny, schemaFromBytes, findProtoDir } = require('./flight_client');

const SERVER_DIR = path.resolve(__dirname, '../../packaging/flightsql-duckdb');
const SERVER = path.join(SERVER_DIR, 'server.js');
const RSS_LIMIT_MB = 400;
const { status } = grpc;

let server;
let serverOutput = () => '';
let address;
let client;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function rssMB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

// CPU seconds the process has used (user + system), from /proc/PID/stat.
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

// Samples the server's RSS every 50 ms until stopped. -> { stop(): peak MB }
function watchRss(pid) {
  let peak = rssMB(pid);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssMB(pid));
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, rssMB(pid));
    },
  };
}

// The server must go quiet after a cancellation: over `ms`, it uses little CPU (a query still
// running would keep DuckDB's threads busy, ~1 CPU second per second per thread).
async function assertIdle(ms = 1000, pid = server.pid) {
  await sleep(300); // let the interrupt land
  const before = cpuSeconds(pid);
  await sleep(ms);
  const used = cpuSeconds(pid) - before;
  assert.ok(used < 0.3 * (ms / 1000), `server used ${used.toFixed(2)} CPU s in ${ms} ms after the cancellation`);
}

async function rejectsWith(promise, code, pattern) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof FlightError, `expected a FlightError, got ${e && e.stack}`);
    assert.equal(e.codeName, Object.keys(status).find((k) => status[k] === code), e.message);
    assert.equal(e.code, code);
    if (pattern) assert.match(e.details, pattern);
    return true;
  });
}

// Starts server.js on 127.0.0.1 with a free port. -> { proc, address, output() }
async function startServer(extraEnv = {}) {
  const proc = spawn(process.execPath, [SERVER], {
    cwd: SERVER_DIR,
    // The server's own defaults, whatever this environment sets.
    env: {
      ...process.env, SYNTHORG_LISTEN_HOST: '127.0.0.1', FLIGHT_PORT: '0', PORT: '', DUCKDB_PATH: '', FLIGHTSQL_LOG_LEVEL: 'info',
      UV_THREADPOOL_SIZE: '', DUCKDB_THREADS: '', DUCKDB_MEMORY_LIMIT: '', DUCKDB_READ_ONLY: '',
      FLIGHT_PROTO_DIR: findProtoDir(), ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout.on('data', (d) => { output += d; });
  proc.stderr.on('data', (d) => { output += d; });
  const listening = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 15000);
    proc.stdout.on('data', () => {
      const m = /^flightsql-duckdb listening on (127\.0\.0\.1:\d+)$/m.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${output}`)));
  });
  return { proc, address: listening, output: () => output };
}

before(async () => {
  if (!fs.existsSync(path.join(SERVER_DIR, 'node_modules', '@duckdb', 'node-api'))) {
    throw new Error(`${SERVER_DIR}/node_modules is missing: run "npm ci" there first`);
  }
  const started = await startServer();
  server = started.proc;
  address = started.address;
  serverOutput = started.output;
  client = new FlightSqlClient(address);
});

after(async () => {
  if (client) client.close();
  if (server && server.exitCode === null) {
    server.kill('SIGKILL');
  }
});

test('SELECT 42', async () => {
  const r = await client.query('SELECT 42 AS answer');
  assert.deepEqual(r.rows, [{ answer: 42 }]);
  assert.equal(r.schema.fields[0].name, 'answer');
  assert.equal(String(r.schema.fields[0].type), 'Int32');
});

test('GetSchema and FlightInfo carry the statement schema', async () => {
  const schema = await client.getSchema('CommandStatementQuery', { query: "SELECT 1::BIGINT AS a, 'x' AS b" });
  assert.deepEqual(schema.fields.map((f) => `${f.name}:${f.type}`), ['a:Int64', 'b:Utf8']);
  const info = await client.getFlightInfo('CommandStatementQuery', { query: 'SELECT 1.5::DOUBLE AS d' });
  assert.equal(info.endpoint.length, 1);
  assert.deepEqual(schemaFromBytes(info.schema).fields.map((f) => `${f.name}:${f.type}`), ['d:Float64']);
  assert.equal(info.total_records, -1);
});

test('aggregate over range(10000000)', async () => {
  const r = await client.query('SELECT count(*) AS n, sum(range)::BIGINT AS s FROM range(10000000)');
  assert.deepEqual(r.rows, [{ n: 10000000n, s: 49999995000000n }]);
});

test('10 million rows stream with bounded server memory', { timeout: 120000 }, async (t) => {
  const watch = watchRss(server.pid);
  const stats = await client.queryStats('SELECT range FROM range(10000000)', 'range');
  const peak = watch.stop();
  assert.equal(stats.rows, 10000000);
  assert.equal(stats.sum, 49999995000000n);
  assert.ok(stats.batches > 1, 'the result came in several batches');
  t.diagnostic(`${stats.batches} batches; server RSS peak ${peak.toFixed(0)} MB`);
  assert.ok(peak < RSS_LIMIT_MB, `server RSS peaked at ${peak.toFixed(0)} MB`);
});

test('a slow reader holds the server back (backpressure)', { timeout: 120000 }, async (t) => {
  // 400 MB of results, and a reader that stops after the first batch until the server has gone
  // quiet. A server that respects flow control stops producing after a few batches; one that
  // ignored it would produce (and buffer) the whole result before going quiet.
  const base = rssMB(server.pid);
  const watch = watchRss(server.pid);
  let batches = 0;
  let quiet = null;
  const stats = await client.queryStats(
    'SELECT range AS a, range * 2 AS b, range * 3 AS c, range * 4 AS d, range * 5 AS e FROM range(10000000)', 'a', {
      onBatch: async () => {
        if (batches++ > 0) return;
        const deadline = Date.now() + 15000;
        while (Date.now() < deadline) {
          const before = cpuSeconds(server.pid);
          await sleep(500);
          if (cpuSeconds(server.pid) - before < 0.1) {
            quiet = rssMB(server.pid);
            break;
          }
        }
      },
    });
  const peak = watch.stop();
  assert.equal(stats.rows, 10000000);
  assert.equal(stats.sum, 49999995000000n);
  assert.ok(quiet !== null, 'the server kept working while nobody read its results');
  t.diagnostic(`server RSS: ${base.toFixed(0)} MB before, ${quiet.toFixed(0)} MB while the reader waited, peak ${peak.toFixed(0)} MB`);
  assert.ok(quiet - base < 200, `server RSS grew by ${(quiet - base).toFixed(0)} MB while the reader waited`);
  assert.ok(peak < RSS_LIMIT_MB, `server RSS peaked at ${peak.toFixed(0)} MB`);
});

test('DoPut CommandStatementUpdate creates a table and inserts', async () => {
  assert.equal(await client.update('CREATE TABLE people (id INTEGER, name VARCHAR)'), 0);
  assert.equal(await client.update("INSERT INTO people VALUES (1, 'ada'), (2, 'bob'), (3, 'cy')"), 3);
  assert.equal(await client.update("UPDATE people SET name = upper(name) WHERE id >= 2"), 2);
  const r = await client.query('SELECT id, name FROM people ORDER BY id');
  assert.deepEqual(r.rows, [{ id: 1, name: 'ada' }, { id: 2, name: 'BOB' }, { id: 3, name: 'CY' }]);
});

function sampleTable(n, offset = 0) {
  const ids = [];
  const names = [];
  const scores = [];
  const flags = [];
  const when = [];
  for (let i = 0; i < n; i++) {
    ids.push(BigInt(offset + i));
    names.push(i % 10 === 0 ? null : `name-${offset + i}`);
    scores.push((offset + i) / 4);
    flags.push(i % 3 === 0);
    when.push(BigInt(1700000000000000 + (offset + i) * 1000001)); // microseconds
  }
  return new arrow.Table({
    id: arrow.vectorFromArray(ids, new arrow.Int64()),
    name: arrow.vectorFromArray(names, new arrow.Utf8()),
    score: arrow.vectorFromArray(scores, new arrow.Float64()),
    flag: arrow.vectorFromArray(flags, new arrow.Bool()),
    at: arrow.makeVector(arrow.makeData({
      type: new arrow.TimestampMicrosecond(), length: n, data: BigInt64Array.from(when),
    })),
  });
}

test('CommandStatementIngest loads an Arrow stream into a table', async () => {
  const table = sampleTable(5000);
  assert.equal(await client.ingest('ingested', table, { ifNotExist: 'create', ifExists: 'fail' }), 5000);
  let r = await client.query(`SELECT count(*) AS n, count(name) AS named, sum(id)::BIGINT AS ids, sum(score) AS scores,
    count(*) FILTER (WHERE flag) AS flagged, epoch_us(max("at")) = ${1700000000000000 + 4999 * 1000001} AS last_ok,
    typeof(any_value("at")) AS at_type FROM ingested`);
  assert.deepEqual(r.rows, [{ n: 5000n, named: 4500n, ids: 12497500n, scores: 3124375, flagged: 1667n, last_ok: true, at_type: 'TIMESTAMP' }]);

  assert.equal(await client.ingest('ingested', sampleTable(100, 5000), { ifExists: 'append' }), 100);
  r = await client.query('SELECT count(*) AS n, max(id) AS top FROM ingested');
  assert.deepEqual(r.rows, [{ n: 5100n, top: 5099n }]);

  assert.equal(await client.ingest('ingested', sampleTable(10), { ifExists: 'replace' }), 10);
  r = await client.query('SELECT count(*) AS n FROM ingested');
  assert.deepEqual(r.rows, [{ n: 10n }]);

  await rejectsWith(client.ingest('ingested', sampleTable(1), { ifExists: 'fail' }), status.ALREADY_EXISTS, /already exists/);
  await rejectsWith(client.ingest('missing_table', sampleTable(1), { ifNotExist: 'fail' }), status.NOT_FOUND, /does not exist/);

  // Appending to a table whose column types differ: DuckDB casts.
  await client.update('CREATE TABLE narrow (id INTEGER, name VARCHAR, score DOUBLE, flag BOOLEAN, "at" TIMESTAMP)');
  assert.equal(await client.ingest('narrow', sampleTable(3), { ifExists: 'append' }), 3);
  r = await client.query('SELECT sum(id)::INTEGER AS s FROM narrow');
  assert.deepEqual(r.rows, [{ s: 3 }]);
});

test('prepared statement with a parameter', async () => {
  const p = await client.prepare('SELECT name FROM people WHERE id = ?');
  assert.equal(p.isUpdate, false);
  assert.deepEqual(p.datasetSchema.fields.map((f) => f.name), ['name']);
  assert.equal(p.parameterSchema.fields.length, 1);
  assert.equal(String(p.parameterSchema.fields[0].type), 'Int32');
  assert.deepEqual((await client.executePrepared(p, [2])).rows, [{ name: 'BOB' }]);
  assert.deepEqual((await client.executePrepared(p, [3])).rows, [{ name: 'CY' }]);
  await client.closePrepared(p);
  await rejectsWith(client.executePrepared(p, null), status.NOT_FOUND, /prepared statement/);

  // A parameter DuckDB cannot type in advance, and a prepared update.
  const any = await client.prepare('SELECT ? || \'!\' AS shout');
  assert.deepEqual((await client.executePrepared(any, ['hey'])).rows, [{ shout: 'hey!' }]);
  await client.closePrepared(any);
  const insert = await client.prepare('INSERT INTO people VALUES (?, ?)');
  assert.equal(await client.executePreparedUpdate(insert, [4, 'dee']), 1);
  await client.closePrepared(insert);
  assert.deepEqual((await client.query('SELECT name FROM people WHERE id = 4')).rows, [{ name: 'dee' }]);
});

test('catalogs, schemas, tables and table types list what was created', async () => {
  assert.deepEqual((await client.getCatalogs()).rows, [{ catalog_name: 'memory' }]);
  await client.update('CREATE SCHEMA extra; CREATE VIEW extra.adults AS SELECT * FROM main.people WHERE id > 1');
  const schemas = (await client.getDbSchemas()).rows;
  assert.deepEqual(schemas, [{ catalog_name: 'memory', db_schema_name: 'extra' }, { catalog_name: 'memory', db_schema_name: 'main' }]);
  assert.deepEqual((await client.getDbSchemas({ dbSchemaFilterPattern: 'ex%' })).rows, [schemas[0]]);

  const tables = await client.getTables();
  assert.deepEqual(tables.schema.fields.map((f) => `${f.name}:${f.type}:${f.nullable}`), [
    'catalog_name:Utf8:true', 'db_schema_name:Utf8:true', 'table_name:Utf8:false', 'table_type:Utf8:false']);
  const names = tables.rows.map((t) => `${t.db_schema_name}.${t.table_name}:${t.table_type}`);
  for (const want of ['main.people:TABLE', 'main.ingested:TABLE', 'extra.adults:VIEW']) assert.ok(names.includes(want), `${want} in ${names}`);

  const people = await client.getTables({ tableNameFilterPattern: 'peop_e', includeSchema: true, tableTypes: ['TABLE'] });
  assert.equal(people.rows.length, 1);
  const schema = schemaFromBytes(people.rows[0].table_schema);
  assert.deepEqual(schema.fields.map((f) => `${f.name}:${f.type}`), ['id:Int32', 'name:Utf8']);
  assert.equal(schema.fields[0].metadata.get('ARROW:FLIGHT:SQL:TABLE_NAME'), 'people');
  assert.deepEqual((await client.getTables({ tableTypes: ['VIEW'] })).rows.map((t) => t.table_name), ['adults']);

  assert.deepEqual((await client.getTableTypes()).rows, [{ table_type: 'TABLE' }, { table_type: 'VIEW' }]);
});

test('SqlInfo answers in the dense union schema of FlightSql.proto', async () => {
  const r = await client.getSqlInfo([0, 1, 2, 3]);
  const [infoName, value] = r.schema.fields;
  assert.equal(`${infoName.name}:${infoName.type}:${infoName.nullable}`, 'info_name:Uint32:false');
  assert.equal(value.name, 'value');
  assert.equal(value.type.typeId, arrow.Type.Union);
  assert.equal(value.type.mode, arrow.UnionMode.Dense);
  assert.deepEqual(Array.from(value.type.typeIds), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(value.type.children.map((f) => `${f.name}:${f.type}`), [
    'string_value:Utf8', 'bool_value:Bool', 'bigint_value:Int64', 'int32_bitmask:Int32',
    'string_list:List<Utf8>', 'int32_to_int32_list_map:Map<{key:Int32, value:List<Int32>}>']);
  const byId = Object.fromEntries(r.rows.map((row) => [row.info_name, row.value]));
  assert.match(byId[0], /flightsql-duckdb/);
  assert.match(byId[1], /DuckDB v\d/);
  assert.match(byId[2], /^\d+\.\d+\.\d+/);
  assert.equal(byId[3], false);
  const all = await client.getSqlInfo();
  assert.ok(all.rows.length > 10);
});

test('a SQL error is INVALID_ARGUMENT with DuckDB\'s message', async () => {
  await rejectsWith(client.query('SELECT * FROM no_such_table'), status.INVALID_ARGUMENT, /no_such_table does not exist/);
  await rejectsWith(client.query('SELEC 1'), status.INVALID_ARGUMENT, /syntax error/);
  await rejectsWith(client.update('INSERT INTO no_such_table VALUES (1)'), status.INVALID_ARGUMENT, /no_such_table/);
  await rejectsWith(client.prepare('SELECT * FROM no_such_table'), status.INVALID_ARGUMENT, /no_such_table/);
});

test('unknown and unsupported commands are UNIMPLEMENTED; bad ones INVALID_ARGUMENT', async () => {
  await rejectsWith(client.getFlightInfo('CommandGetXdbcTypeInfo', {}), status.UNIMPLEMENTED, /CommandGetXdbcTypeInfo/);
  // An Any whose type is not a Flight SQL message.
  const bogus = packAny('type.googleapis.com/example.Nope', Buffer.alloc(0));
  await rejectsWith(client.unary('GetFlightInfo', { type: 'CMD', cmd: bogus, path: [] }), status.UNIMPLEMENTED, /example\.Nope/);
  await rejectsWith(client.unary('GetFlightInfo', { type: 'CMD', cmd: Buffer.from([0xff, 0xff, 0xff]), path: [] }), status.INVALID_ARGUMENT);
  await rejectsWith(client.unary('GetFlightInfo', { type: 'PATH', cmd: Buffer.alloc(0), path: ['x'] }), status.INVALID_ARGUMENT);
  await rejectsWith(client.doGet(Buffer.from('not a ticket')), status.INVALID_ARGUMENT);
  await rejectsWith(client.doAction('NoSuchAction', Buffer.alloc(0)), status.UNIMPLEMENTED, /NoSuchAction/);
  const actions = (await client.listActions()).map((a) => a.type);
  assert.deepEqual(actions.sort(), ['CancelFlightInfo', 'CancelQuery', 'ClosePreparedStatement', 'CreatePreparedStatement']);
});

test('cancelling a DoGet stops the query', { timeout: 120000 }, async () => {
  // A query that would compute for minutes before its first row.
  const controller = new AbortController();
  const started = Date.now();
  const running = client.queryStats('SELECT sum(a.range * b.range) AS s FROM range(100000000) a, range(1000) b', 's',
    { signal: controller.signal });
  await sleep(700);
  controller.abort();
  await rejectsWith(running, status.CANCELLED);
  assert.ok(Date.now() - started < 10000, 'the cancellation reached the client');
  await assertIdle();

  // A streaming result the client stops reading halfway.
  const streaming = new AbortController();
  let seen = 0;
  const partial = client.queryStats('SELECT range FROM range(10000000000)', 'range', {
    signal: streaming.signal,
    onBatch: async () => {
      if (++seen === 3) streaming.abort();
    },
  });
  await rejectsWith(partial, status.CANCELLED);
  await assertIdle();
  assert.deepEqual((await client.query('SELECT 7 AS after')).rows, [{ after: 7 }]);
});

test('a query cancelled before DuckDB starts it does not run later', { timeout: 60000 }, async () => {
  // With one libuv thread, the second DoGet cannot start its query until the first gives the
  // thread up. Both are cancelled meanwhile: the second query then starts after its interrupt,
  // which DuckDB would forget, and must be stopped all the same.
  const other = await startServer({ UV_THREADPOOL_SIZE: '1' });
  const c = new FlightSqlClient(other.address);
  try {
    const sql = 'SELECT sum(a.range * b.range) AS s FROM range(100000000) a, range(1000) b';
    const infos = [await c.getFlightInfo('CommandStatementQuery', { query: sql }),
      await c.getFlightInfo('CommandStatementQuery', { query: sql })];
    const controller = new AbortController();
    const first = c.doGet(infos[0].endpoint[0].ticket.ticket, { signal: controller.signal }).catch((e) => e);
    await sleep(500);
    const second = c.doGet(infos[1].endpoint[0].ticket.ticket, { signal: controller.signal }).catch((e) => e);
    await sleep(500);
    controller.abort();
    assert.equal((await first).code, status.CANCELLED);
    assert.equal((await second).code, status.CANCELLED);
    await assertIdle(1000, other.proc.pid);
  } finally {
    c.close();
    const exited = new Promise((resolve) => other.proc.on('exit', (code) => resolve(code)));
    other.proc.kill('SIGTERM');
    const killer = setTimeout(() => other.proc.kill('SIGKILL'), 10000);
    const code = await exited;
    clearTimeout(killer);
    assert.equal(code, 0, 'the server did not shut down within 10 s');
  }
});

test('CancelFlightInfo interrupts the running query', { timeout: 120000 }, async () => {
  const info = await client.getFlightInfo('CommandStatementQuery', {
    query: 'SELECT sum(a.range * b.range) AS s FROM range(100000000) a, range(1000) b',
  });
  const running = client.doGet(info.endpoint[0].ticket.ticket);
  await sleep(700);
  assert.equal(await client.cancelFlightInfo(info), 'CANCEL_STATUS_CANCELLED');
  await rejectsWith(running, status.CANCELLED);
  await assertIdle();
  // The ticket is used up: a second cancel finds nothing.
  await rejectsWith(client.cancelFlightInfo(info), status.NOT_FOUND);
  assert.deepEqual((await client.query('SELECT 8 AS after')).rows, [{ after: 8 }]);
});

test('Handshake echoes, and call metadata passes through', async () => {
  const h = await client.handshakeBasic('alice', 'secret');
  assert.equal(h.authorization, null); // authentication is the gateway's, not this server's
  assert.equal(h.responses.length, 1);
  const bearer = new FlightSqlClient(address, { metadata: { authorization: 'Bearer test-token' } });
  try {
    assert.deepEqual((await bearer.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
  } finally {
    bearer.close();
  }
});

test('concurrent queries do not wait for long ones', { timeout: 120000 }, async (t) => {
  // Five long queries at once: more than libuv's default four threads, on which DuckDB's node
  // API runs its calls.
  const controller = new AbortController();
  const long = [];
  for (let i = 0; i < 5; i++) {
    long.push(client.queryStats('SELECT sum(a.range * b.range) AS s FROM range(100000000) a, range(1000) b', 's',
      { signal: controller.signal }).catch((e) => e));
  }
  await sleep(500);
  const t0 = Date.now();
  assert.deepEqual((await client.query('SELECT 9 AS quick', { deadlineMs: 10000 })).rows, [{ quick: 9 }]);
  const quick = Date.now() - t0;
  t.diagnostic(`a short query took ${quick} ms next to 5 long ones`);
  controller.abort();
  for (const e of await Promise.all(long)) assert.equal(e.code, status.CANCELLED, String(e));
  assert.ok(quick < 5000, `a short query took ${quick} ms next to long ones`);
  await assertIdle();
});

test('SIGTERM shuts the server down cleanly', { timeout: 120000 }, async () => {
  const exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve({ code, signal })));
  server.kill('SIGTERM');
  const { code, signal } = await exited;
  assert.equal(signal, null);
  assert.equal(code, 0);
  assert.equal(serverOutput().match(/flightsql-duckdb listening on/g).length, 1);
  assert.doesNotMatch(serverOutput(), /people|no_such_table|range\(/, 'statement text must not be logged at info level');
});
