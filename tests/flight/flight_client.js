#!/usr/bin/env node
'use strict';
// A small Arrow Flight SQL client for tests: a library and a CLI.
//
// It talks Flight SQL to any address with nothing but the official protos (Flight.proto,
// FlightSql.proto), @grpc/grpc-js and apache-arrow, and shares no code with the server it
// tests: the IPC framing of FlightData is done here on its own, so a framing mistake on either
// side shows up as a decoding failure.
//
// Protos are found in FLIGHT_PROTO_DIR, else /usr/share/synthorg/arrow-flight, else (in a
// development checkout) the shared contracts next to the repository.
//
// Library:
//   const { FlightSqlClient } = require('./flight_client');
//   const c = new FlightSqlClient('127.0.0.1:8815', { metadata: { authorization: 'Bearer ...' } });
//   await c.query('SELECT 42 AS x')            -> { schema, rows: [{ x: 42 }], table }
//   await c.queryStats(sql, 'col', { signal }) -> { rows, sum, batches, schema } (streams)
//   await c.update(sql)                         -> record count
//   await c.ingest('t', arrowTable, { ifNotExist: 'create', ifExists: 'append' })
//   const p = await c.prepare(sql); await c.executePrepared(p, [1]); await c.closePrepared(p)
//   await c.handshakeBasic(user, password)      -> { authorization, responses }
// Failures reject with FlightError { code, codeName, details, metadata }.
//
// CLI: node flight_client.js [--address HOST:PORT] [--header 'name: value']... COMMAND [ARGS]
//   query SQL | stats SQL COLUMN | update SQL | catalogs | schemas | tables [PATTERN] |
//   table-types | sqlinfo [ID...] | actions | handshake USER PASSWORD
// prints JSON; on a gRPC error prints "FlightError NAME(code): details" to stderr and exits 1.

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const arrow = require('apache-arrow');

// protobufjs is @grpc/proto-loader's own dependency; the same instance is used for the Flight
// SQL messages that travel inside google.protobuf.Any.
const protobuf = require(require.resolve('protobufjs', { paths: [path.dirname(require.resolve('@grpc/proto-loader'))] }));

const SQL = 'arrow.flight.protocol.sql';
const TYPE_URL = (name) => `type.googleapis.com/${SQL}.${name}`;
const PROTO_FILES = ['Flight.proto', 'FlightSql.proto'];

// ---- protos ----------------------------------------------------------------------------------

function findProtoDir() {
  const dirs = [process.env.FLIGHT_PROTO_DIR, '/usr/share/synthorg/arrow-flight',
    path.resolve(__dirname, '../../../shared/contracts/arrow-flight')].filter(Boolean);
  for (const dir of dirs) if (PROTO_FILES.every((f) => fs.existsSync(path.join(dir, f)))) return dir;
  throw new Error('cannot find Flight.proto and FlightSql.proto; set FLIGHT_PROTO_DIR to the directory that contains them');
}

let loaded = null;
function protos() {
  if (loaded) return loaded;
  const protoDir = findProtoDir();
  const includeDirs = [protoDir, path.dirname(require.resolve('protobufjs/package.json', {
    paths: [path.dirname(require.resolve('@grpc/proto-loader'))],
  }))];
  const definition = protoLoader.loadSync(PROTO_FILES, {
    includeDirs, keepCase: true, longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true,
  });
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    for (const dir of includeDirs) if (fs.existsSync(path.join(dir, target))) return path.join(dir, target);
    return protobuf.util.path.resolve(origin, target);
  };
  root.loadSync(PROTO_FILES, { keepCase: true });
  root.resolveAll();
  const FlightService = grpc.loadPackageDefinition(definition).arrow.flight.protocol.FlightService;
  loaded = { FlightService, root };
  return loaded;
}

function encode(fullName, object) {
  const t = protos().root.lookupType(fullName);
  const message = t.fromObject(object);
  const err = t.verify(message);
  if (err) throw new Error(`${fullName}: ${err}`);
  return Buffer.from(t.encode(message).finish());
}

function decode(fullName, bytes) {
  const t = protos().root.lookupType(fullName);
  return t.toObject(t.decode(bytes), { longs: Number, enums: String, bytes: Buffer, defaults: true });
}

// google.protobuf.Any, written and read by hand: field 1 type_url, field 2 value.
function packAny(typeUrl, value) {
  return Buffer.from(protobuf.Writer.create().uint32(10).string(typeUrl).uint32(18).bytes(value).finish());
}

// A Flight SQL message (by its short name) packed in Any.
function pack(name, object) {
  return packAny(TYPE_URL(name), encode(`${SQL}.${name}`, object));
}

function unpack(bytes) {
  const reader = protobuf.Reader.create(bytes);
  const out = { typeUrl: '', value: Buffer.alloc(0) };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 === 1) out.typeUrl = reader.string();
    else if (tag >>> 3 === 2) out.value = Buffer.from(reader.bytes());
    else reader.skipType(tag & 7);
  }
  return out;
}

function unpackAs(name, bytes) {
  const any = unpack(bytes);
  if (any.typeUrl !== TYPE_URL(name)) throw new Error(`expected ${name} in Any, got ${any.typeUrl || 'nothing'}`);
  return decode(`${SQL}.${name}`, any.value);
}

// ---- Arrow IPC framing -----------------------------------------------------------------------

const EOS = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

// One IPC message (flatbuffer Message) framed as in an IPC stream: marker, padded length,
// flatbuffer, padding.
function frame(header) {
  const padded = (header.length + 7) & ~7;
  const out = Buffer.alloc(8 + padded);
  out.writeUInt32LE(0xffffffff, 0);
  out.writeInt32LE(padded, 4);
  Buffer.from(header.buffer, header.byteOffset, header.byteLength).copy(out, 8);
  return out;
}

// The body length a flatbuffer Message declares (Message.bodyLength, field 3, an int64).
function bodyLength(header) {
  return arrow.Message.decode(header).bodyLength;
}

// FlightData messages -> IPC stream bytes, for apache-arrow's reader.
async function* ipcFromFlightData(messages) {
  for await (const m of messages) {
    if (!m.data_header || m.data_header.length === 0) continue;
    yield frame(m.data_header);
    const length = bodyLength(m.data_header);
    if (length > 0) {
      const body = m.data_body || Buffer.alloc(0);
      if (body.length >= length) yield body.subarray(0, length);
      else yield Buffer.concat([body, Buffer.alloc(length - body.length)]);
    }
  }
  yield EOS;
}

// IPC stream bytes -> FlightData fields, one per message.
function flightDataFromIpc(bytes) {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  let pos = 0;
  while (pos + 8 <= buf.length) {
    let length = buf.readInt32LE(pos);
    pos += 4;
    if (length === -1) {
      length = buf.readInt32LE(pos);
      pos += 4;
    }
    if (length === 0) break;
    const header = buf.subarray(pos, pos + length);
    pos += length;
    const n = bodyLength(header);
    out.push({ data_header: header, data_body: buf.subarray(pos, pos + n) });
    pos += n;
  }
  return out;
}

// Encapsulated schema bytes (FlightInfo.schema etc.) -> arrow.Schema, or null when empty.
function schemaFromBytes(bytes) {
  if (!bytes || bytes.length === 0) return null;
  const buf = Buffer.from(bytes);
  const offset = buf.readUInt32LE(0) === 0xffffffff ? 4 : 0;
  const length = buf.readInt32LE(offset);
  const message = arrow.Message.decode(buf.subarray(offset + 4, offset + 4 + length));
  if (!message.isSchema()) throw new Error('schema bytes do not hold a Schema message');
  return message.header();
}

// ---- errors ----------------------------------------------------------------------------------

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

// What grpc-js reports for a call cancelled by its client, for calls not started because the
// signal had already fired.
function cancelledHere() {
  return new FlightError(grpc.status.CANCELLED, 'Cancelled on client');
}

class FlightError extends Error {
  constructor(code, details, metadata) {
    super(`${CODE_NAMES[code] || 'UNKNOWN'}(${code}): ${details}`);
    this.code = code;
    this.codeName = CODE_NAMES[code] || 'UNKNOWN';
    this.details = details;
    this.metadata = metadata ? metadata.getMap() : {};
  }
}

// A gRPC error as a FlightError with the status exactly as received; other errors as they are.
function flightError(e) {
  if (e instanceof FlightError) return e;
  if (e && typeof e.code === 'number' && 'details' in e) return new FlightError(e.code, e.details, e.metadata);
  return e;
}

// ---- the client ------------------------------------------------------------------------------

const INGEST_NOT_EXIST = { create: 'TABLE_NOT_EXIST_OPTION_CREATE', fail: 'TABLE_NOT_EXIST_OPTION_FAIL' };
const INGEST_EXISTS = {
  fail: 'TABLE_EXISTS_OPTION_FAIL', append: 'TABLE_EXISTS_OPTION_APPEND', replace: 'TABLE_EXISTS_OPTION_REPLACE',
};

class FlightSqlClient {
  // address: "host:port". options.metadata: headers sent with every call (e.g.
  // { authorization: 'Bearer <jwt>' }); options.credentials: grpc channel credentials
  // (insecure by default); options.channelOptions: extra grpc channel options.
  constructor(address, options = {}) {
    const { FlightService } = protos();
    this.headers = { ...(options.metadata || {}) };
    this.stub = new FlightService(address, options.credentials || grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      ...(options.channelOptions || {}),
    });
  }

  close() {
    this.stub.close();
  }

  metadata(extra = {}) {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries({ ...this.headers, ...extra })) md.set(k, v);
    return md;
  }

  callOptions(opts) {
    return opts && opts.deadlineMs ? { deadline: new Date(Date.now() + opts.deadlineMs) } : {};
  }

  // A unary call. opts.signal (an AbortSignal) cancels it.
  unary(method, request, opts = {}) {
    const { signal } = opts;
    if (signal && signal.aborted) return Promise.reject(cancelledHere());
    return new Promise((resolve, reject) => {
      const onAbort = () => call.cancel();
      const call = this.stub[method](request, this.metadata(opts.metadata), this.callOptions(opts), (err, res) => {
        if (signal) signal.removeEventListener('abort', onAbort);
        if (err) reject(flightError(err));
        else resolve(res);
      });
      if (signal) signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  // Collects a server stream's messages.
  collect(call) {
    return new Promise((resolve, reject) => {
      const out = [];
      call.on('data', (m) => out.push(m));
      call.on('error', (e) => reject(flightError(e)));
      call.on('end', () => resolve(out));
    });
  }

  // ---- Flight RPCs ----

  static descriptor(commandName, fields) {
    return { type: 'CMD', cmd: pack(commandName, fields || {}), path: [] };
  }

  getFlightInfo(commandName, fields, opts) {
    return this.unary('GetFlightInfo', FlightSqlClient.descriptor(commandName, fields), opts);
  }

  async getSchema(commandName, fields, opts) {
    const res = await this.unary('GetSchema', FlightSqlClient.descriptor(commandName, fields), opts);
    return schemaFromBytes(res.schema);
  }

  // DoGet on a ticket, decoding the Arrow stream as it arrives. opts.onBatch(batch) is called
  // for every record batch (awaited: a slow consumer slows the stream down, through gRPC flow
  // control); opts.collect (default true) keeps the batches; opts.signal (an AbortSignal)
  // cancels the call. -> { schema, batches, rows }
  async doGet(ticket, opts = {}) {
    // Not even started when already aborted: a call that grpc-js cancels in the tick that
    // started it can still reach the server, which is then never told (seen with 1.14).
    if (opts.signal && opts.signal.aborted) throw cancelledHere();
    const call = this.stub.DoGet({ ticket }, this.metadata(opts.metadata), this.callOptions(opts));
    let failure = null;
    call.on('error', (e) => {
      failure = flightError(e);
    });
    const onAbort = () => call.cancel();
    if (opts.signal) {
      if (opts.signal.aborted) call.cancel();
      else opts.signal.addEventListener('abort', onAbort, { once: true });
    }
    const batches = [];
    let rows = 0;
    let schema = null;
    try {
      const reader = await arrow.RecordBatchReader.from(ipcFromFlightData(call));
      await reader.open();
      schema = reader.schema;
      if (schema) {
        for await (const batch of reader) {
          rows += batch.numRows;
          if (opts.collect !== false) batches.push(batch);
          if (opts.onBatch) await opts.onBatch(batch);
        }
      }
    } catch (e) {
      throw failure || flightError(e);
    } finally {
      if (opts.signal) opts.signal.removeEventListener('abort', onAbort);
    }
    if (failure) throw failure;
    return { schema, batches, rows };
  }

  // DoPut: `descriptor` goes in the first FlightData; `table` (an arrow.Table, or null) is sent
  // as Arrow data, its schema message in that same first FlightData. -> the PutResults'
  // app_metadata, in order.
  async doPut(descriptor, table, opts = {}) {
    const call = this.stub.DoPut(this.metadata(opts.metadata), this.callOptions(opts));
    const results = this.collect(call).then((list) => list.map((r) => r.app_metadata));
    const messages = table ? flightDataFromIpc(arrow.tableToIPC(table, 'stream')) : [{}];
    messages[0] = { ...messages[0], flight_descriptor: descriptor };
    // A server that answers early (an error, say) ends the call: stop waiting for 'drain' then.
    const ended = results.then(() => {}, () => {});
    try {
      for (const m of messages) {
        if (!call.write(m)) await Promise.race([new Promise((resolve) => call.once('drain', resolve)), ended]);
      }
      call.end();
    } catch (e) {
      call.cancel();
      throw flightError(e);
    }
    return results;
  }

  async doAction(type, body, opts) {
    const call = this.stub.DoAction({ type, body: body || Buffer.alloc(0) }, this.metadata(opts && opts.metadata), this.callOptions(opts));
    return (await this.collect(call)).map((r) => r.body);
  }

  async listActions(opts) {
    return this.collect(this.stub.ListActions({}, this.metadata(opts && opts.metadata), this.callOptions(opts)));
  }

  // Handshake with HTTP Basic credentials in the `authorization` header, the way Flight
  // clients authenticate to a gateway. -> { authorization: the `authorization` header the
  // server answered with (headers or trailers), or null; responses: HandshakeResponse list }.
  handshakeBasic(user, password, opts = {}) {
    const basic = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    return this.handshake({ ...(opts.metadata || {}), authorization: basic }, opts);
  }

  handshake(metadata, opts = {}) {
    return new Promise((resolve, reject) => {
      const call = this.stub.Handshake(this.metadata(metadata), this.callOptions(opts));
      let authorization = null;
      const responses = [];
      const take = (md) => {
        const v = md.get('authorization');
        if (v.length && authorization === null) authorization = String(v[0]);
      };
      call.on('metadata', take);
      call.on('status', (s) => s.metadata && take(s.metadata));
      call.on('data', (r) => responses.push(r));
      call.on('error', (e) => reject(flightError(e)));
      call.on('end', () => setImmediate(() => resolve({ authorization, responses })));
      call.write({ protocol_version: 0, payload: Buffer.alloc(0) });
      call.end();
    });
  }

  // ---- Flight SQL ----

  // Every endpoint of a FlightInfo, read in order (this client redeems tickets on the same
  // server; endpoint locations are not followed).
  async readInfo(info, opts = {}) {
    const out = { schema: schemaFromBytes(info.schema), batches: [], rows: 0 };
    for (const endpoint of info.endpoint) {
      const r = await this.doGet(endpoint.ticket.ticket, opts);
      out.schema = r.schema || out.schema;
      out.batches.push(...r.batches);
      out.rows += r.rows;
    }
    return out;
  }

  static rowsOf(result) {
    const table = result.schema ? new arrow.Table(result.schema, result.batches) : null;
    const rows = table ? table.toArray().map((r) => r.toJSON()) : [];
    return { schema: result.schema, rows, table };
  }

  // A query's whole result. -> { schema, rows (objects by column name), table }
  async query(sql, opts = {}) {
    const info = await this.getFlightInfo('CommandStatementQuery', { query: sql }, opts);
    return FlightSqlClient.rowsOf(await this.readInfo(info, opts));
  }

  // A query streamed without keeping it: the row count and the sum of one integer or float
  // column, computed batch by batch. opts.signal cancels, opts.onBatch sees each batch.
  async queryStats(sql, column, opts = {}) {
    const info = await this.getFlightInfo('CommandStatementQuery', { query: sql }, opts);
    let sum = null;
    let batches = 0;
    const onBatch = async (batch) => {
      batches++;
      const vector = batch.getChild(column);
      if (!vector) throw new Error(`no column ${column} in the result`);
      for (const data of vector.data) {
        const values = data.values;
        const big = values instanceof BigInt64Array || values instanceof BigUint64Array;
        if (sum === null) sum = big ? 0n : 0;
        if (data.nullCount === 0) {
          for (let i = 0; i < data.length; i++) sum += values[i];
        } else {
          for (let i = 0; i < data.length; i++) if (data.getValid(i)) sum += values[i];
        }
      }
      if (opts.onBatch) await opts.onBatch(batch);
    };
    let rows = 0;
    let schema = null;
    for (const endpoint of info.endpoint) {
      const r = await this.doGet(endpoint.ticket.ticket, { ...opts, onBatch, collect: false });
      rows += r.rows;
      schema = r.schema;
    }
    return { rows, sum, batches, schema, info };
  }

  static updateCount(results) {
    if (!results.length) throw new Error('the server sent no PutResult');
    return decode(`${SQL}.DoPutUpdateResult`, results[0]).record_count;
  }

  async update(sql, opts) {
    const results = await this.doPut(FlightSqlClient.descriptor('CommandStatementUpdate', { query: sql }), null, opts);
    return FlightSqlClient.updateCount(results);
  }

  // Bulk load an arrow.Table into `table`. options: ifNotExist 'create'|'fail', ifExists
  // 'fail'|'append'|'replace', schema, catalog, temporary.
  async ingest(table, arrowTable, options = {}) {
    const cmd = {
      table,
      table_definition_options: {
        if_not_exist: INGEST_NOT_EXIST[options.ifNotExist || 'create'],
        if_exists: INGEST_EXISTS[options.ifExists || 'fail'],
      },
      temporary: !!options.temporary,
    };
    if (options.schema != null) cmd.schema = options.schema;
    if (options.catalog != null) cmd.catalog = options.catalog;
    const results = await this.doPut(FlightSqlClient.descriptor('CommandStatementIngest', cmd), arrowTable, options);
    return FlightSqlClient.updateCount(results);
  }

  // -> { handle, datasetSchema, parameterSchema, isUpdate }
  async prepare(sql, opts) {
    const [body] = await this.doAction('CreatePreparedStatement', pack('ActionCreatePreparedStatementRequest', { query: sql }), opts);
    const r = unpackAs('ActionCreatePreparedStatementResult', body);
    return {
      handle: r.prepared_statement_handle,
      datasetSchema: schemaFromBytes(r.dataset_schema),
      parameterSchema: schemaFromBytes(r.parameter_schema),
      isUpdate: r.is_update === undefined ? null : r.is_update,
    };
  }

  // Parameters as an Arrow table: an arrow.Table as is, or one row of JS values typed by the
  // statement's parameter schema (or, where that says nothing, by the values themselves).
  static parameterTable(prepared, params) {
    if (params instanceof arrow.Table) return params;
    const fields = prepared.parameterSchema ? prepared.parameterSchema.fields : [];
    const columns = {};
    params.forEach((v, i) => {
      const declared = fields[i] && fields[i].type.typeId !== arrow.Type.Null ? fields[i].type : null;
      const type = declared || (typeof v === 'bigint' ? new arrow.Int64()
        : typeof v === 'number' ? (Number.isInteger(v) ? new arrow.Int64() : new arrow.Float64())
          : typeof v === 'boolean' ? new arrow.Bool() : new arrow.Utf8());
      const value = type.typeId === arrow.Type.Int && type.bitWidth === 64 && typeof v === 'number' ? BigInt(v) : v;
      columns[fields[i] ? fields[i].name : String(i + 1)] = arrow.vectorFromArray([value], type);
    });
    return new arrow.Table(columns);
  }

  async bind(prepared, params, opts) {
    if (params == null) return;
    const descriptor = FlightSqlClient.descriptor('CommandPreparedStatementQuery', { prepared_statement_handle: prepared.handle });
    const results = await this.doPut(descriptor, FlightSqlClient.parameterTable(prepared, params), opts);
    // A newer server may hand back a new handle (DoPutPreparedStatementResult); older ones
    // answer nothing.
    if (results.length && results[0] && results[0].length) {
      const r = decode(`${SQL}.DoPutPreparedStatementResult`, results[0]);
      if (r.prepared_statement_handle && r.prepared_statement_handle.length) prepared.handle = r.prepared_statement_handle;
    }
  }

  async executePrepared(prepared, params, opts = {}) {
    await this.bind(prepared, params, opts);
    const info = await this.getFlightInfo('CommandPreparedStatementQuery', { prepared_statement_handle: prepared.handle }, opts);
    return FlightSqlClient.rowsOf(await this.readInfo(info, opts));
  }

  async executePreparedUpdate(prepared, params, opts = {}) {
    const descriptor = FlightSqlClient.descriptor('CommandPreparedStatementUpdate', { prepared_statement_handle: prepared.handle });
    const table = params == null ? null : FlightSqlClient.parameterTable(prepared, params);
    return FlightSqlClient.updateCount(await this.doPut(descriptor, table, opts));
  }

  async closePrepared(prepared, opts) {
    await this.doAction('ClosePreparedStatement', pack('ActionClosePreparedStatementRequest', {
      prepared_statement_handle: prepared.handle,
    }), opts);
  }

  // Cancels the query behind a FlightInfo. -> 'CANCEL_STATUS_...'
  async cancelFlightInfo(info, opts) {
    const [body] = await this.doAction('CancelFlightInfo', encode('arrow.flight.protocol.CancelFlightInfoRequest', { info }), opts);
    return decode('arrow.flight.protocol.CancelFlightInfoResult', body).status;
  }

  async metadataQuery(name, fields, opts) {
    const info = await this.getFlightInfo(name, fields, opts);
    return FlightSqlClient.rowsOf(await this.readInfo(info, opts));
  }

  getCatalogs(opts) {
    return this.metadataQuery('CommandGetCatalogs', {}, opts);
  }

  getDbSchemas({ catalog, dbSchemaFilterPattern } = {}, opts) {
    const f = {};
    if (catalog != null) f.catalog = catalog;
    if (dbSchemaFilterPattern != null) f.db_schema_filter_pattern = dbSchemaFilterPattern;
    return this.metadataQuery('CommandGetDbSchemas', f, opts);
  }

  getTables({ catalog, dbSchemaFilterPattern, tableNameFilterPattern, tableTypes, includeSchema } = {}, opts) {
    const f = { table_types: tableTypes || [], include_schema: !!includeSchema };
    if (catalog != null) f.catalog = catalog;
    if (dbSchemaFilterPattern != null) f.db_schema_filter_pattern = dbSchemaFilterPattern;
    if (tableNameFilterPattern != null) f.table_name_filter_pattern = tableNameFilterPattern;
    return this.metadataQuery('CommandGetTables', f, opts);
  }

  getTableTypes(opts) {
    return this.metadataQuery('CommandGetTableTypes', {}, opts);
  }

  // -> { schema, rows: [{ info_name, value }] } where value is the union member's value.
  getSqlInfo(ids = [], opts) {
    return this.metadataQuery('CommandGetSqlInfo', { info: ids }, opts);
  }
}

// ---- CLI -------------------------------------------------------------------------------------

function json(value) {
  return JSON.stringify(value, (k, v) => {
    if (typeof v === 'bigint') return v.toString();
    if (v && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString('base64');
    if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
    return v;
  });
}

async function cli(argv) {
  let address = process.env.FLIGHT_ADDRESS || '127.0.0.1:8815';
  const headers = {};
  const args = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--address') address = argv[++i];
    else if (argv[i] === '--header') {
      const h = argv[++i] || '';
      const at = h.indexOf(':');
      if (at < 1) throw new Error(`bad --header '${h}' (want 'name: value')`);
      headers[h.slice(0, at).trim().toLowerCase()] = h.slice(at + 1).trim();
    } else args.push(argv[i]);
  }
  const [command, ...rest] = args;
  const client = new FlightSqlClient(address, { metadata: headers });
  const print = (v) => process.stdout.write(`${json(v)}\n`);
  try {
    switch (command) {
      case 'query': print((await client.query(rest[0])).rows); break;
      case 'stats': {
        const s = await client.queryStats(rest[0], rest[1]);
        print({ rows: s.rows, sum: s.sum, batches: s.batches });
        break;
      }
      case 'update': print({ record_count: await client.update(rest[0]) }); break;
      case 'catalogs': print((await client.getCatalogs()).rows); break;
      case 'schemas': print((await client.getDbSchemas()).rows); break;
      case 'tables': print((await client.getTables({ tableNameFilterPattern: rest[0] })).rows); break;
      case 'table-types': print((await client.getTableTypes()).rows); break;
      case 'sqlinfo': print((await client.getSqlInfo(rest.map(Number))).rows); break;
      case 'actions': print(await client.listActions()); break;
      case 'handshake': print(await client.handshakeBasic(rest[0], rest[1])); break;
      default:
        process.stderr.write('usage: flight_client.js [--address HOST:PORT] [--header "name: value"]... ' +
          'query SQL | stats SQL COLUMN | update SQL | catalogs | schemas | tables [PATTERN] | table-types | ' +
          'sqlinfo [ID...] | actions | handshake USER PASSWORD\n');
        return 2;
    }
    return 0;
  } catch (e) {
    if (e instanceof FlightError) {
      process.stderr.write(`FlightError ${e.codeName}(${e.code}): ${e.details}\n`);
      return 1;
    }
    throw e;
  } finally {
    client.close();
  }
}

if (require.main === module) {
  cli(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e) => {
    process.stderr.write(`${e.stack || e}\n`);
    process.exitCode = 1;
  });
}

module.exports = {
  FlightSqlClient, FlightError, pack, packAny, unpack, unpackAs, encode, decode, schemaFromBytes, findProtoDir,
  ipcFromFlightData, flightDataFromIpc,
};
