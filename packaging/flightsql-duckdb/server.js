#!/usr/bin/env node
'use strict';

// flightsql-duckdb: one user's Arrow Flight SQL server, backed by an embedded DuckDB.
//
// The SynthOrg Flight SQL gateway authenticates users and forwards each user's calls to that
// user's own instance of this server, so one process serves one user: one DuckDB database per
// process, and no authentication here (Handshake only echoes). Every statement runs on a DuckDB
// connection of its own, so a long query never holds up another call.
//
// Environment (defaults in brackets):
//   SYNTHORG_LISTEN_HOST  address to listen on [0.0.0.0]
//   FLIGHT_PORT, PORT     port to listen on, FLIGHT_PORT first [8815]; 0 picks a free port
//   DUCKDB_PATH           database file [unset: an in-memory database]
//   DUCKDB_READ_ONLY      1 opens DUCKDB_PATH read-only [0]
//   DUCKDB_THREADS        DuckDB worker threads [DuckDB's default: one per core]
//   DUCKDB_MEMORY_LIMIT   DuckDB memory limit, e.g. 1GB [half the container's cgroup limit, else DuckDB's 80% of RAM]
//   DUCKDB_TEMP_DIRECTORY where DuckDB spills [<os.tmpdir()>/flightsql-duckdb-<pid>]
//   FLIGHT_PROTO_DIR      directory holding Flight.proto and FlightSql.proto
//                         [/usr/share/synthorg/arrow-flight]
//   FLIGHT_MAX_MESSAGE_BYTES  largest gRPC message accepted [67108864]
//   FLIGHTSQL_LOG_LEVEL   error, warn, info or debug [info]; only debug logs statement text
//   UV_THREADPOOL_SIZE    libuv threads, i.e. DuckDB calls running at once [32]
//
// Protocol: Arrow Flight with Flight SQL commands (google.protobuf.Any in FlightDescriptor.cmd,
// Ticket.ticket and Action.body). See README.md beside this file.

// DuckDB's node API runs each call (a query's execution, each chunk fetch) on libuv's thread
// pool, which has 4 threads unless told otherwise: 4 long queries would then hold up every
// other call. libuv reads this when the pool first starts, which has not happened yet here.
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '32';

const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const duck = require('@duckdb/node-api');
const arrow = require('apache-arrow');

const protos = require('./lib/protos');
const ipc = require('./lib/arrow_ipc');
const { BatchBuilder, schemaFor, planFor } = require('./lib/duck_to_arrow');
const a2d = require('./lib/arrow_to_duck');
const metadata = require('./lib/metadata');

const PACKAGE = require('./package.json');
const ARROW_VERSION = packageVersion('apache-arrow');

// An installed package's version (apache-arrow does not export its package.json).
function packageVersion(name) {
  let dir = path.dirname(require.resolve(name));
  while (dir !== path.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
      if (pkg.name === name) return pkg.version;
    } catch { /* not here: go up */ }
    dir = path.dirname(dir);
  }
  return 'unknown';
}

const DEFAULT_PORT = 8815;
const TICKET_TTL_MS = 10 * 60 * 1000; // an unredeemed statement ticket is forgotten after this
const PREPARED_TTL_MS = 60 * 60 * 1000; // an unused prepared statement is closed after this
const SHUTDOWN_GRACE_MS = 5000;
const APPEND_CHUNK_ROWS = 2048; // DuckDB's vector size: the most rows one data chunk holds

// ---- configuration and logging ---------------------------------------------------------------

function readConfig(env = process.env) {
  const portText = env.FLIGHT_PORT || env.PORT || String(DEFAULT_PORT);
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port '${portText}' (FLIGHT_PORT/PORT)`);
  const maxMessage = Number(env.FLIGHT_MAX_MESSAGE_BYTES || 64 * 1024 * 1024);
  if (!Number.isInteger(maxMessage) || maxMessage <= 0) throw new Error('invalid FLIGHT_MAX_MESSAGE_BYTES');
  const level = (env.FLIGHTSQL_LOG_LEVEL || 'info').toLowerCase();
  if (!(level in LEVELS)) throw new Error(`invalid FLIGHTSQL_LOG_LEVEL '${level}' (error, warn, info, debug)`);
  const readOnly = env.DUCKDB_READ_ONLY === '1' || env.DUCKDB_READ_ONLY === 'true';
  if (readOnly && !env.DUCKDB_PATH) throw new Error('DUCKDB_READ_ONLY needs DUCKDB_PATH (an in-memory database cannot be read-only)');
  return {
    host: env.SYNTHORG_LISTEN_HOST || '0.0.0.0',
    port,
    dbPath: env.DUCKDB_PATH || ':memory:',
    readOnly,
    threads: env.DUCKDB_THREADS || null,
    memoryLimit: env.DUCKDB_MEMORY_LIMIT || halfOfContainerMemory(),
    tempDirectory: env.DUCKDB_TEMP_DIRECTORY || path.join(os.tmpdir(), `flightsql-duckdb-${process.pid}`),
    maxMessageBytes: maxMessage,
    logLevel: level,
  };
}

// DuckDB sizes itself at 80% of the machine's memory, not the container's: under a container
// limit (cgroup v2 memory.max, or v1) that is an OOM kill waiting for a big sort. Half the
// container's limit leaves room for Node, gRPC buffers and the page cache. null: no limit found.
function halfOfContainerMemory() {
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const limit = Number(fs.readFileSync(file, 'utf8').trim());
      // "max", or v1's "no limit" (a huge page-rounded number), is no limit.
      if (Number.isFinite(limit) && limit > 0 && limit < os.totalmem()) return `${Math.floor(limit / 2 / 1048576)}MB`;
    } catch { /* not there: try the next */ }
  }
  return null;
}

const LEVELS = { error: 0, warn: 1, info: 2, debug: 3 };

function makeLogger(level) {
  const at = LEVELS[level];
  const line = (name, stream) => (...parts) => {
    if (LEVELS[name] <= at) stream.write(`${new Date().toISOString()} ${name} ${parts.join(' ')}\n`);
  };
  return {
    error: line('error', process.stderr),
    warn: line('warn', process.stderr),
    info: line('info', process.stdout),
    debug: line('debug', process.stdout),
    enabled: (name) => LEVELS[name] <= at,
  };
}

// ---- errors ----------------------------------------------------------------------------------

// An error with the gRPC status to answer.
class FlightError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const S = grpc.status;
const invalid = (m) => new FlightError(S.INVALID_ARGUMENT, m);
const unimplemented = (m) => new FlightError(S.UNIMPLEMENTED, m);
const notFound = (m) => new FlightError(S.NOT_FOUND, m);

// An error DuckDB raised -> its status: an interrupted statement was cancelled, memory is a
// resource; the rest (parser, binder, catalog, conversion, constraint errors, ...) are the
// statement's fault. DuckDB's message is passed on as it is.
function duckError(e) {
  if (e instanceof FlightError) return e;
  // DuckDB's errors (and the node API's checks of the values it is given) are plain Errors;
  // a TypeError and its kind is a bug here, and stays as it is to be answered INTERNAL.
  if (e instanceof Error && e.constructor !== Error) return e;
  // The node API prefixes parse errors from splitting a script into statements.
  const message = (e && e.message ? e.message : String(e)).replace(/^Failed to extract statements: /, '');
  if (/^INTERRUPT Error/.test(message) || /Interrupted/.test(message)) return new FlightError(S.CANCELLED, 'query cancelled');
  if (/^Out of Memory Error/.test(message)) return new FlightError(S.RESOURCE_EXHAUSTED, message);
  return invalid(message);
}

// Runs a DuckDB call, turning what it throws into a FlightError.
async function duckCall(fn) {
  try {
    return await fn();
  } catch (e) {
    throw duckError(e);
  }
}

// ---- the server ------------------------------------------------------------------------------

const STATEMENT_TYPE = duck.StatementType;
// Statement kinds that produce no result set: CreatePreparedStatement reports them with
// is_update = true. SELECT-like kinds get false; INSERT, UPDATE, DELETE and COPY are left unset
// because with RETURNING they do produce rows.
const UPDATE_KINDS = new Set(['CREATE', 'DROP', 'ALTER', 'TRANSACTION', 'SET', 'VARIABLE_SET', 'ATTACH', 'DETACH',
  'CREATE_FUNC', 'LOAD', 'VACUUM', 'EXPORT', 'ANALYZE', 'PREPARE', 'EXTENSION']
  .map((k) => STATEMENT_TYPE[k]).filter((v) => v !== undefined));
const QUERY_KINDS = new Set(['SELECT', 'EXPLAIN', 'PRAGMA', 'CALL', 'RELATION']
  .map((k) => STATEMENT_TYPE[k]).filter((v) => v !== undefined));

class FlightSqlServer {
  constructor(config, log) {
    this.config = config;
    this.log = log;
    this.proto = protos.load();
    this.codec = this.proto.codec;
    this.tickets = new Map(); // statement id -> { sql, params, createdAt }: issued, not yet redeemed
    this.running = new Map(); // statement id -> job (see withJob)
    this.jobs = new Set(); // every job, for shutdown
    this.prepared = new Map(); // handle -> prepared statement state
    this.info = {
      name: 'SynthOrg flightsql-duckdb',
      version: `${PACKAGE.version} (DuckDB ${duck.version()})`,
      arrowVersion: ARROW_VERSION,
      readOnly: config.readOnly,
      statementTimeoutMs: PREPARED_TTL_MS,
    };
  }

  async open() {
    const options = { temp_directory: this.config.tempDirectory };
    if (this.config.readOnly) options.access_mode = 'READ_ONLY';
    if (this.config.threads) options.threads = String(this.config.threads);
    if (this.config.memoryLimit) options.memory_limit = String(this.config.memoryLimit);
    this.db = await duck.DuckDBInstance.create(this.config.dbPath, options);
    this.sweeper = setInterval(() => this.sweep(), 60 * 1000);
    this.sweeper.unref();
  }

  // Cancels every job and waits (at most `ms`) for them to end: the process cannot exit while
  // a DuckDB call runs on a libuv thread, since exiting waits for those threads.
  async cancelAll(ms) {
    for (const job of this.jobs) job.cancel();
    const deadline = Date.now() + ms;
    while (this.jobs.size && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  }

  close() {
    clearInterval(this.sweeper);
    for (const job of this.jobs) job.cancel();
    if (this.db) this.db.closeSync();
    this.db = null;
  }

  // Forgets tickets nobody redeemed and prepared statements nobody used for a long time.
  sweep(now = Date.now()) {
    for (const [id, t] of this.tickets) if (now - t.createdAt > TICKET_TTL_MS) this.tickets.delete(id);
    for (const [h, p] of this.prepared) if (now - p.usedAt > PREPARED_TTL_MS) this.prepared.delete(h);
  }

  async connect() {
    if (!this.db) throw new FlightError(S.UNAVAILABLE, 'the server is shutting down');
    return this.db.connect();
  }

  // A connection for one call, interrupted if the call is cancelled (by its client or through
  // CancelFlightInfo under `id`), and closed when `fn` is done.
  async withJob(call, id, fn) {
    const conn = await this.connect();
    const interrupt = () => {
      try {
        conn.interrupt();
      } catch { /* the connection is already closed */ }
    };
    const job = {
      conn,
      cancelled: false,
      wake: null, // resolves a pending wait for 'drain'
      repeat: null,
      cancel() {
        if (this.cancelled) return;
        this.cancelled = true;
        interrupt();
        // DuckDB forgets an interrupt when its next statement starts, and the node API may be
        // about to start one: a call still queued for a libuv thread, or the next statement of
        // a script. So the interrupt is repeated until the job is over.
        this.repeat = setInterval(interrupt, 100);
        if (this.wake) this.wake();
      },
    };
    this.jobs.add(job);
    const onCancelled = () => job.cancel();
    let watch = null;
    if (call) {
      call.on('cancelled', onCancelled);
      if (call.cancelled || callGone(call)) job.cancel(); // the client gave up while the connection was opened
      // Also watched, because grpc-js can miss a cancellation (see callGone).
      else watch = setInterval(() => callGone(call) && job.cancel(), 250);
    }
    if (id) this.running.set(id, job);
    try {
      return await fn(job);
    } catch (e) {
      throw job.cancelled ? new FlightError(S.CANCELLED, 'query cancelled') : duckError(e);
    } finally {
      clearInterval(watch);
      clearInterval(job.repeat);
      this.jobs.delete(job);
      if (id) this.running.delete(id);
      if (call) call.removeListener('cancelled', onCancelled);
      conn.closeSync();
    }
  }

  // ---- commands in Any ----

  unpackCommand(bytes, where) {
    if (!bytes || bytes.length === 0) throw invalid(`empty ${where}: expected a Flight SQL command in google.protobuf.Any`);
    let any;
    try {
      any = this.codec.unpack(bytes);
    } catch (e) {
      throw invalid(`${where} is not a google.protobuf.Any: ${e.message}`);
    }
    if (!any.name) throw unimplemented(`unsupported command type ${any.typeUrl}: this server speaks Flight SQL`);
    let message;
    try {
      message = this.codec.decode(`${protos.SQL_PACKAGE}.${any.name}`, any.value);
    } catch (e) {
      if (/no such type/i.test(e.message)) throw unimplemented(`unknown Flight SQL command ${any.name}`);
      throw invalid(`cannot decode ${any.name}: ${e.message}`);
    }
    return { name: any.name, message };
  }

  decodeMessage(name, bytes) {
    try {
      return this.codec.decode(name, bytes);
    } catch (e) {
      throw invalid(`cannot decode ${name.slice(name.lastIndexOf('.') + 1)}: ${e.message}`);
    }
  }

  noTransactions(cmd, name) {
    if (cmd.transaction_id != null && cmd.transaction_id.length) {
      throw invalid(`${name}: transactions are not supported by this server (no transaction_id)`);
    }
  }

  preparedFor(handle) {
    const p = this.prepared.get(Buffer.from(handle || []).toString('utf8'));
    if (!p) throw notFound('unknown prepared statement handle (closed, expired, or from another server)');
    p.usedAt = Date.now();
    return p;
  }

  logStatement(what, sql) {
    if (this.log.enabled('debug')) this.log.debug(`${what}: ${sql}`);
  }

  // ---- schemas ----

  // The result schema of `sql`: from the prepared statement when DuckDB knows its column types,
  // else (parameters of unknown type) by starting it with `params` bound; an empty schema if
  // neither says (the DoGet stream carries the real one).
  async describe(call, sql, params) {
    return this.withJob(call, null, async ({ conn }) => {
      const statements = await conn.extractStatements(sql);
      if (statements.count !== 1) return new arrow.Schema([]);
      const prepared = await conn.prepare(sql);
      try {
        const names = [];
        const types = [];
        let known = true;
        for (let i = 0; i < prepared.columnCount; i++) {
          if (prepared.columnTypeId(i) === duck.DuckDBTypeId.INVALID) {
            known = false;
            break;
          }
          names.push(prepared.columnName(i));
          types.push(prepared.columnType(i));
        }
        if (known) return schemaFor(names, types);
        if (!params || !params.length) return new arrow.Schema([]);
        // Started, not read: closing the connection ends it.
        bindRow(prepared, params[0]);
        const result = await prepared.stream();
        return schemaFor(result.columnNames(), result.columnTypes());
      } finally {
        prepared.destroySync();
      }
    });
  }

  async schemaForCommand(call, cmd) {
    switch (cmd.name) {
      case 'CommandStatementQuery':
        this.noTransactions(cmd.message, cmd.name);
        this.logStatement('describe', cmd.message.query);
        return this.describe(call, cmd.message.query);
      case 'CommandPreparedStatementQuery': {
        const p = this.preparedFor(cmd.message.prepared_statement_handle);
        return p.params ? this.describe(call, p.sql, p.params) : p.datasetSchema;
      }
      default: {
        const schema = metadata.schemaFor(cmd.name, cmd.message);
        if (schema) return schema;
        throw this.unsupported(cmd.name);
      }
    }
  }

  unsupported(name) {
    return unimplemented(`${name} is not supported by this server`);
  }

  // ---- FlightService methods ----

  async getFlightInfo(call) {
    const descriptor = call.request;
    if (descriptor.type !== 'CMD') throw invalid('only CMD flight descriptors are supported (Flight SQL commands)');
    const cmd = this.unpackCommand(descriptor.cmd, 'FlightDescriptor.cmd');
    const schema = await this.schemaForCommand(call, cmd);
    let ticket;
    if (cmd.name === 'CommandStatementQuery' || cmd.name === 'CommandPreparedStatementQuery') {
      // A statement ticket names a server-side entry: the SQL, and the parameters bound now.
      let entry = { sql: cmd.message.query, params: null };
      if (cmd.name === 'CommandPreparedStatementQuery') {
        const p = this.preparedFor(cmd.message.prepared_statement_handle);
        entry = { sql: p.sql, params: p.params };
      }
      const id = crypto.randomUUID();
      this.tickets.set(id, { ...entry, createdAt: Date.now() });
      ticket = this.codec.packSql('TicketStatementQuery', { statement_handle: Buffer.from(id) });
    } else {
      // Metadata commands are their own tickets.
      ticket = descriptor.cmd;
    }
    return {
      schema: ipc.schemaBytes(schema),
      flight_descriptor: descriptor,
      endpoint: [{ ticket: { ticket }, location: [] }],
      total_records: -1,
      total_bytes: -1,
      ordered: false,
    };
  }

  async getSchema(call) {
    const descriptor = call.request;
    if (descriptor.type !== 'CMD') throw invalid('only CMD flight descriptors are supported (Flight SQL commands)');
    const cmd = this.unpackCommand(descriptor.cmd, 'FlightDescriptor.cmd');
    return { schema: ipc.schemaBytes(await this.schemaForCommand(call, cmd)) };
  }

  async doGet(call) {
    const cmd = this.unpackCommand(call.request.ticket, 'Ticket.ticket');
    switch (cmd.name) {
      case 'TicketStatementQuery': {
        const id = Buffer.from(cmd.message.statement_handle || []).toString('utf8');
        const entry = this.tickets.get(id);
        if (!entry) throw notFound('unknown ticket (already redeemed, expired, cancelled, or from another server)');
        this.tickets.delete(id); // tickets are single-use
        return this.streamQuery(call, id, entry.sql, entry.params);
      }
      case 'CommandPreparedStatementQuery': {
        const p = this.preparedFor(cmd.message.prepared_statement_handle);
        return this.streamQuery(call, crypto.randomUUID(), p.sql, p.params);
      }
      default: {
        const build = metadata.COMMANDS[cmd.name];
        if (!build) throw this.unsupported(cmd.name);
        const batch = await this.withJob(call, null, ({ conn }) => build(conn, cmd.message, this.info));
        call.write({ data_header: ipc.schemaHeader(batch.schema) });
        for (const fd of ipc.batchToFlightData(batch)) call.write(fd);
        return null;
      }
    }
  }

  // Streams a query's result: the schema message, then record batches as DuckDB produces them.
  // When gRPC's send buffer is full (call.write returns false, which HTTP/2 flow control causes
  // for a client that reads slowly) no more chunks are fetched until 'drain', so memory stays
  // bounded whatever the result's size. With several parameter sets, their results follow one
  // another in one stream.
  async streamQuery(call, id, sql, params) {
    this.logStatement('query', sql);
    const started = Date.now();
    let rows = 0;
    await this.withJob(call, id, async (job) => {
      const write = async (message) => {
        if (job.cancelled) throw new FlightError(S.CANCELLED, 'query cancelled');
        if (call.write(message)) return;
        await new Promise((resolve) => {
          const done = () => {
            call.removeListener('drain', done);
            job.wake = null;
            resolve();
          };
          job.wake = done;
          call.on('drain', done);
        });
        if (job.cancelled) throw new FlightError(S.CANCELLED, 'query cancelled');
      };
      let builder = null;
      let schemaText = null;
      const results = runResults(job, sql, params);
      try {
        for await (const result of results) {
          const names = result.columnNames();
          const types = result.columnTypes();
          const text = JSON.stringify([names, types.map(String)]);
          if (!builder) {
            builder = new BatchBuilder(names, types);
            schemaText = text;
            await write({ data_header: ipc.schemaHeader(builder.schema) });
          } else if (text !== schemaText) {
            throw invalid('the parameter sets give results of different schemas');
          }
          for (;;) {
            if (job.cancelled) throw new FlightError(S.CANCELLED, 'query cancelled');
            const chunk = await result.fetchChunk();
            if (!chunk || chunk.rowCount === 0) break;
            builder.append(chunk);
            rows += chunk.rowCount;
            if (builder.full) for (const fd of ipc.batchToFlightData(builder.finish())) await write(fd);
          }
        }
      } finally {
        await results.return();
      }
      if (builder && !builder.empty) for (const fd of ipc.batchToFlightData(builder.finish())) await write(fd);
    });
    this.log.debug(`query done: ${rows} rows in ${Date.now() - started} ms`);
    return null;
  }

  async doPut(call) {
    // Not the stream's default iterator: that one destroys the call when the client's side
    // ends, and the answer still has to be written.
    const iterator = call.iterator({ destroyOnReturn: false });
    const first = await iterator.next();
    if (first.done) throw invalid('DoPut stream ended before its first FlightData');
    const descriptor = first.value.flight_descriptor;
    if (!descriptor || descriptor.type !== 'CMD') throw invalid('the first FlightData of a DoPut must carry a CMD flight descriptor');
    const cmd = this.unpackCommand(descriptor.cmd, 'FlightDescriptor.cmd');
    // The whole stream, first message included, for the Arrow reader.
    const stream = (async function* rest() {
      yield first.value;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    })();
    const updateResult = (count) => ({ app_metadata: this.codec.encode(`${protos.SQL_PACKAGE}.DoPutUpdateResult`, { record_count: count }) });

    switch (cmd.name) {
      case 'CommandStatementUpdate': {
        this.noTransactions(cmd.message, cmd.name);
        for await (const _ of stream) { /* an update carries no data: drain the stream */ }
        this.logStatement('update', cmd.message.query);
        const count = await this.withJob(call, null, ({ conn }) => runUpdate(conn, cmd.message.query, null));
        return [updateResult(count)];
      }
      case 'CommandStatementIngest':
        return [updateResult(await this.ingest(call, cmd.message, stream))];
      case 'CommandPreparedStatementQuery': {
        const p = this.preparedFor(cmd.message.prepared_statement_handle);
        p.params = await this.readParameters(p, stream);
        const result = this.codec.encode(`${protos.SQL_PACKAGE}.DoPutPreparedStatementResult`, {
          prepared_statement_handle: Buffer.from(p.handle),
        });
        return [{ app_metadata: result }];
      }
      case 'CommandPreparedStatementUpdate': {
        const p = this.preparedFor(cmd.message.prepared_statement_handle);
        const params = (await this.readParameters(p, stream)) || p.params;
        this.logStatement('prepared update', p.sql);
        const count = await this.withJob(call, null, ({ conn }) => runUpdate(conn, p.sql, params));
        return [updateResult(count)];
      }
      default:
        throw this.unsupported(cmd.name);
    }
  }

  // A DoPut's Arrow data as parameter sets for prepared statement `p`: one set per row, each
  // { values, types }, by position, or by name when the statement uses named parameters. Null
  // when the stream carries no Arrow schema or no rows.
  async readParameters(p, stream) {
    const reader = await ipc.readFlightData(stream).catch((e) => {
      throw invalid(`cannot read the parameter batch: ${e.message}`);
    });
    if (!reader) return null;
    let readers;
    try {
      readers = a2d.readersFor(reader.schema);
    } catch (e) {
      throw invalid(`parameter ${e.message}`);
    }
    if (readers.length !== p.parameterCount) {
      throw invalid(`the statement takes ${p.parameterCount} parameter(s), the batch has ${readers.length} column(s)`);
    }
    const rows = [];
    for await (const batch of reader) {
      for (let i = 0; i < batch.numRows; i++) {
        const values = a2d.rowValues(batch, readers, i);
        const types = readers.map((r) => r.duckType);
        if (p.namedParameters) {
          const byName = {};
          const typesByName = {};
          reader.schema.fields.forEach((f, k) => {
            byName[f.name] = values[k];
            typesByName[f.name] = types[k];
          });
          rows.push({ values: byName, types: typesByName });
        } else {
          rows.push({ values, types });
        }
      }
    }
    return rows.length ? rows : null;
  }

  // CommandStatementIngest: the Arrow stream appended to a table, created or replaced as the
  // table definition options say, in one transaction.
  async ingest(call, cmd, stream) {
    if (this.config.readOnly) throw new FlightError(S.PERMISSION_DENIED, 'the database is read-only');
    this.noTransactions(cmd, 'CommandStatementIngest');
    if (!cmd.table) throw invalid('CommandStatementIngest: table is required');
    if (cmd.temporary) throw invalid('CommandStatementIngest: temporary tables are not supported (this server keeps no sessions)');
    const opts = cmd.table_definition_options || {};
    const ifNotExist = opts.if_not_exist || 'TABLE_NOT_EXIST_OPTION_UNSPECIFIED';
    const ifExists = opts.if_exists || 'TABLE_EXISTS_OPTION_UNSPECIFIED';
    const reader = await ipc.readFlightData(stream).catch((e) => {
      throw invalid(`cannot read the ingested Arrow stream: ${e.message}`);
    });
    if (!reader) throw invalid('CommandStatementIngest: the stream carries no Arrow schema');
    let readers;
    try {
      readers = a2d.readersFor(reader.schema);
    } catch (e) {
      throw invalid(`CommandStatementIngest: ${e.message}`);
    }
    if (!readers.length) throw invalid('CommandStatementIngest: the Arrow schema has no columns');
    const q = a2d.quoteIdent;
    const types = readers.map((r) => r.duckType);
    const columns = reader.schema.fields.map((f, k) => `${q(f.name)} ${a2d.sqlType(types[k])}`).join(', ');

    return this.withJob(call, null, async (job) => {
      const { conn } = job;
      const where = (await conn.runAndReadAll('SELECT current_database(), current_schema()')).getRowsJS()[0];
      const catalog = cmd.catalog != null ? cmd.catalog : where[0];
      const schema = cmd.schema != null ? cmd.schema : where[1];
      const target = `${q(catalog)}.${q(schema)}.${q(cmd.table)}`;
      await conn.run('BEGIN TRANSACTION');
      try {
        const found = (await conn.runAndReadAll(
          `SELECT count(*)::INTEGER FROM duckdb_tables()
           WHERE lower(database_name) = lower(?) AND lower(schema_name) = lower(?) AND lower(table_name) = lower(?)`,
          [catalog, schema, cmd.table])).getRowsJS()[0][0] > 0;
        if (found) {
          if (ifExists === 'TABLE_EXISTS_OPTION_FAIL') throw new FlightError(S.ALREADY_EXISTS, `table ${target} already exists`);
          if (ifExists === 'TABLE_EXISTS_OPTION_REPLACE') await conn.run(`CREATE OR REPLACE TABLE ${target} (${columns})`);
          else if (ifExists !== 'TABLE_EXISTS_OPTION_APPEND') throw invalid('CommandStatementIngest: table_definition_options.if_exists must be set');
        } else if (ifNotExist === 'TABLE_NOT_EXIST_OPTION_CREATE') {
          await conn.run(`CREATE TABLE ${target} (${columns})`);
        } else if (ifNotExist === 'TABLE_NOT_EXIST_OPTION_FAIL') {
          throw notFound(`table ${target} does not exist`);
        } else {
          throw invalid('CommandStatementIngest: table_definition_options.if_not_exist must be set');
        }

        // The appender needs the exact column types. A table we created has them; an existing
        // table with other types is loaded through a staging table, and DuckDB casts on INSERT.
        let appender = await conn.createAppender(cmd.table, schema, catalog);
        let staging = null;
        const same = appender.columnCount === types.length &&
          types.every((t, k) => appender.columnType(k).toString() === t.toString());
        if (!same) {
          appender.closeSync();
          staging = `flightsql_ingest_${crypto.randomBytes(6).toString('hex')}`;
          await conn.run(`CREATE TEMPORARY TABLE ${q(staging)} (${columns})`);
          appender = await conn.createAppender(staging, 'main', 'temp');
        }
        let count = 0;
        try {
          for await (const batch of reader) {
            for (let start = 0; start < batch.numRows; start += APPEND_CHUNK_ROWS) {
              if (job.cancelled) throw new FlightError(S.CANCELLED, 'ingestion cancelled');
              const end = Math.min(batch.numRows, start + APPEND_CHUNK_ROWS);
              const chunk = duck.DuckDBDataChunk.create(types, end - start);
              for (let c = 0; c < types.length; c++) chunk.setColumnValues(c, a2d.columnValues(batch, readers, c, start, end));
              appender.appendDataChunk(chunk);
              count += end - start;
            }
          }
          appender.flushSync();
        } finally {
          appender.closeSync();
        }
        if (staging) {
          await conn.run(`INSERT INTO ${target} SELECT * FROM temp.main.${q(staging)}`);
          await conn.run(`DROP TABLE temp.main.${q(staging)}`);
        }
        await conn.run('COMMIT');
        return count;
      } catch (e) {
        await conn.run('ROLLBACK').catch(() => {});
        throw e;
      }
    });
  }

  async doAction(call) {
    const { type, body } = call.request;
    switch (type) {
      case 'CreatePreparedStatement': {
        const any = this.unpackCommand(body, 'Action.body');
        if (any.name !== 'ActionCreatePreparedStatementRequest') throw invalid(`CreatePreparedStatement expects ActionCreatePreparedStatementRequest, not ${any.name}`);
        this.noTransactions(any.message, 'CreatePreparedStatement');
        const result = await this.createPrepared(call, any.message.query);
        return [{ body: this.codec.packSql('ActionCreatePreparedStatementResult', result) }];
      }
      case 'ClosePreparedStatement': {
        const any = this.unpackCommand(body, 'Action.body');
        if (any.name !== 'ActionClosePreparedStatementRequest') throw invalid(`ClosePreparedStatement expects ActionClosePreparedStatementRequest, not ${any.name}`);
        this.prepared.delete(Buffer.from(any.message.prepared_statement_handle || []).toString('utf8'));
        return [];
      }
      case 'CancelFlightInfo': {
        // Flight's own action: the request and result are plain messages, not in Any.
        const req = this.decodeMessage('arrow.flight.protocol.CancelFlightInfoRequest', body);
        const status = this.cancel(req.info);
        return [{ body: this.codec.encode('arrow.flight.protocol.CancelFlightInfoResult', { status: `CANCEL_STATUS_${status}` }) }];
      }
      case 'CancelQuery': {
        // Flight SQL's deprecated action: ActionCancelQueryRequest{info: serialized FlightInfo}.
        const any = this.unpackCommand(body, 'Action.body');
        if (any.name !== 'ActionCancelQueryRequest') throw invalid(`CancelQuery expects ActionCancelQueryRequest, not ${any.name}`);
        const info = this.decodeMessage('arrow.flight.protocol.FlightInfo', any.message.info);
        const status = this.cancel(info);
        return [{ body: this.codec.packSql('ActionCancelQueryResult', { result: `CANCEL_RESULT_${status}` }) }];
      }
      default:
        throw unimplemented(`unknown action type '${type}' (see ListActions)`);
    }
  }

  // Cancels the statements a FlightInfo's tickets name: running ones are interrupted, pending
  // ones forgotten. -> 'CANCELLED' or 'NOT_CANCELLABLE'; NOT_FOUND when none is known.
  cancel(info) {
    let known = 0;
    let cancellable = 0;
    for (const endpoint of (info && info.endpoint) || []) {
      let cmd;
      try {
        cmd = this.unpackCommand(endpoint.ticket && endpoint.ticket.ticket, 'ticket');
      } catch {
        continue;
      }
      if (cmd.name !== 'TicketStatementQuery') {
        known++;
        continue;
      }
      const id = Buffer.from(cmd.message.statement_handle || []).toString('utf8');
      const job = this.running.get(id);
      if (job) {
        job.cancel();
        known++;
        cancellable++;
      } else if (this.tickets.delete(id)) {
        known++;
        cancellable++;
      }
    }
    if (!known) throw notFound('no running or pending query matches this FlightInfo');
    return cancellable ? 'CANCELLED' : 'NOT_CANCELLABLE';
  }

  async createPrepared(call, sql) {
    this.logStatement('prepare', sql);
    return this.withJob(call, null, async ({ conn }) => {
      const prepared = await conn.prepare(sql);
      try {
        const fields = [];
        let known = true;
        for (let i = 0; i < prepared.columnCount; i++) {
          if (prepared.columnTypeId(i) === duck.DuckDBTypeId.INVALID) known = false;
          else fields.push([prepared.columnName(i), prepared.columnType(i)]);
        }
        const datasetSchema = known ? schemaFor(fields.map((f) => f[0]), fields.map((f) => f[1])) : null;
        const paramFields = [];
        const names = [];
        for (let i = 1; i <= prepared.parameterCount; i++) {
          const name = prepared.parameterName(i);
          names.push(name);
          // A parameter DuckDB cannot type yet (as in "SELECT ?") is announced as Arrow null: any
          // type is accepted for it.
          const typeId = prepared.parameterTypeId(i);
          const type = typeId === duck.DuckDBTypeId.INVALID || typeId === duck.DuckDBTypeId.ANY
            ? new arrow.Null() : planFor(prepared.parameterType(i)).type;
          paramFields.push(new arrow.Field(name, type, true));
        }
        const handle = crypto.randomUUID();
        const kind = prepared.statementType;
        this.prepared.set(handle, {
          handle,
          sql,
          datasetSchema: datasetSchema || new arrow.Schema([]),
          parameterCount: prepared.parameterCount,
          // DuckDB names positional parameters "1", "2", ...; any other name is bound by name.
          namedParameters: names.some((n) => !/^\d+$/.test(n)),
          params: null,
          usedAt: Date.now(),
        });
        const result = {
          prepared_statement_handle: Buffer.from(handle),
          dataset_schema: datasetSchema ? ipc.schemaBytes(datasetSchema) : Buffer.alloc(0),
          parameter_schema: paramFields.length ? ipc.schemaBytes(new arrow.Schema(paramFields)) : Buffer.alloc(0),
        };
        if (UPDATE_KINDS.has(kind)) result.is_update = true;
        else if (QUERY_KINDS.has(kind)) result.is_update = false;
        return result;
      } finally {
        prepared.destroySync();
      }
    });
  }

  listActions() {
    return [
      { type: 'CreatePreparedStatement', description: 'Flight SQL: prepare a statement (ActionCreatePreparedStatementRequest in Any)' },
      { type: 'ClosePreparedStatement', description: 'Flight SQL: close a prepared statement (ActionClosePreparedStatementRequest in Any)' },
      { type: 'CancelFlightInfo', description: 'Flight: cancel the query behind a FlightInfo (CancelFlightInfoRequest)' },
      { type: 'CancelQuery', description: 'Flight SQL (deprecated): cancel the query behind a FlightInfo (ActionCancelQueryRequest in Any)' },
    ];
  }

  // ---- grpc wiring ----

  // grpc-js handlers for FlightService; every failure becomes a gRPC status.
  handlers() {
    const fail = (e, call) => {
      const status = this.statusOf(e, call);
      return { code: status.code, details: status.details };
    };
    const unary = (fn) => (call, callback) => {
      Promise.resolve().then(() => fn(call)).then((r) => callback(null, r), (e) => callback(fail(e, call)));
    };
    // Server-streaming and bidi calls: fn returns the messages still to write (or null when it
    // wrote them itself).
    const streaming = (fn) => (call) => {
      Promise.resolve().then(() => fn(call)).then((messages) => {
        if (call.cancelled) return;
        for (const m of messages || []) call.write(m);
        call.end();
      }, (e) => {
        if (call.cancelled) return; // the client is gone: there is nobody to tell
        call.emit('error', fail(e, call));
      });
    };
    return {
      Handshake: (call) => {
        // Authentication is the gateway's: echo each request.
        call.on('data', (req) => call.write({ protocol_version: req.protocol_version, payload: req.payload }));
        call.on('end', () => call.end());
        call.on('error', () => {});
      },
      ListFlights: streaming(async () => []),
      GetFlightInfo: unary((call) => this.getFlightInfo(call)),
      PollFlightInfo: unary(async () => {
        throw unimplemented('PollFlightInfo is not supported: use GetFlightInfo');
      }),
      GetSchema: unary((call) => this.getSchema(call)),
      DoGet: streaming((call) => this.doGet(call)),
      DoPut: streaming((call) => this.doPut(call)),
      DoExchange: streaming(async () => {
        throw unimplemented('DoExchange is not supported by this server');
      }),
      DoAction: streaming((call) => this.doAction(call)),
      ListActions: streaming(async () => this.listActions()),
    };
  }

  statusOf(e, call) {
    if (e instanceof FlightError) {
      if (e.code !== S.CANCELLED) this.log.debug(`${call && call.getPath ? call.getPath() : ''} -> ${S[e.code] || e.code}: ${e.message}`);
      return { code: e.code, details: e.message };
    }
    // Not an answer we meant to give: a bug. Logged (without the request) and reported opaquely.
    this.log.error(`internal error in ${call && call.getPath ? call.getPath() : 'a call'}: ${e && e.stack ? e.stack : e}`);
    return { code: S.INTERNAL, details: 'internal server error' };
  }
}

// Whether a call's client has gone. grpc-js drops a cancellation that arrives before the
// method handler has been started (its call object for the handler does not exist yet), so the
// call's `cancelled` is then never set and 'cancelled' never emitted, and a query would run to
// its end for nobody. The HTTP/2 stream underneath is closed all the same; grpc-js's own
// intercepting call can tell (checkCancelled). That is internal API, hence looked up
// defensively: false when it is not there.
function callGone(call) {
  let c = call && call.call;
  for (let depth = 0; c && depth < 8; depth++) {
    if (typeof c.checkCancelled === 'function') {
      try {
        return c.checkCancelled() === true;
      } catch {
        return false;
      }
    }
    c = c.nextCall;
  }
  return false;
}

// A statement's results: one per parameter set (or one without parameters). Multi-statement
// SQL without parameters runs every statement and streams the last one's result.
async function* runResults(job, sql, params) {
  const { conn } = job;
  if (!params || !params.length) {
    yield await duckCall(() => conn.stream(sql));
    return;
  }
  const prepared = await duckCall(() => conn.prepare(sql));
  try {
    for (const row of params) {
      if (job.cancelled) throw new FlightError(S.CANCELLED, 'query cancelled');
      bindRow(prepared, row);
      yield await duckCall(() => prepared.stream());
    }
  } finally {
    prepared.destroySync();
  }
}

function bindRow(prepared, row) {
  prepared.clearBindings();
  try {
    prepared.bind(row.values, row.types);
  } catch (e) {
    throw invalid(`cannot bind the parameters: ${e.message}`);
  }
}

// Runs an update: -> the number of rows changed. Several parameter sets run in one transaction.
async function runUpdate(conn, sql, params) {
  if (!params || !params.length) return (await duckCall(() => conn.run(sql))).rowsChanged;
  const prepared = await duckCall(() => conn.prepare(sql));
  const atomic = params.length > 1;
  try {
    if (atomic) await conn.run('BEGIN TRANSACTION');
    let count = 0;
    for (const row of params) {
      bindRow(prepared, row);
      count += (await duckCall(() => prepared.run())).rowsChanged;
    }
    if (atomic) await conn.run('COMMIT');
    return count;
  } catch (e) {
    if (atomic) await conn.run('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    prepared.destroySync();
  }
}

// ---- process ---------------------------------------------------------------------------------

async function main() {
  let config;
  try {
    config = readConfig();
  } catch (e) {
    process.stderr.write(`flightsql-duckdb: ${e.message}\n`);
    process.exit(2);
  }
  const log = makeLogger(config.logLevel);
  let server = null;
  let grpcServer = null;

  // Signal handlers go in first, so a SIGTERM that arrives as soon as the startup line is out
  // (or before) still shuts down cleanly rather than killing the process.
  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: shutting down`);
    let finished = false;
    const finish = async () => {
      if (finished) return;
      finished = true;
      clearTimeout(force);
      if (server) {
        await server.cancelAll(2000);
        server.close();
      }
      process.exit(0);
    };
    // Let calls in flight finish for a while, then cut them off.
    const force = setTimeout(() => {
      log.warn('calls still running after 5 s: forcing shutdown');
      if (grpcServer) grpcServer.forceShutdown();
      finish();
    }, SHUTDOWN_GRACE_MS);
    if (grpcServer) grpcServer.tryShutdown(() => finish());
    else finish();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  try {
    server = new FlightSqlServer(config, log);
    await server.open();
  } catch (e) {
    process.stderr.write(`flightsql-duckdb: ${e.message}\n`);
    process.exit(1);
  }
  if (stopping) return;

  const { FlightService } = grpc.loadPackageDefinition(server.proto.packageDefinition).arrow.flight.protocol;
  grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': config.maxMessageBytes,
    'grpc.max_send_message_length': -1,
  });
  grpcServer.addService(FlightService.service, server.handlers());
  // IPv6 literals need brackets in a gRPC address.
  const hostPart = config.host.includes(':') && !config.host.startsWith('[') ? `[${config.host}]` : config.host;
  const port = await new Promise((resolve, reject) => {
    grpcServer.bindAsync(`${hostPart}:${config.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  }).catch((e) => {
    process.stderr.write(`flightsql-duckdb: cannot listen on ${hostPart}:${config.port}: ${e.message}\n`);
    server.close();
    process.exit(1);
  });
  if (stopping) return;
  process.stdout.write(`flightsql-duckdb listening on ${hostPart}:${port}\n`);
}

if (require.main === module) main();

module.exports = { FlightSqlServer, readConfig, makeLogger, FlightError, DEFAULT_PORT };
