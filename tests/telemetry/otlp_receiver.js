#!/usr/bin/env node
// A local OTLP/HTTP receiver for the telemetry tests. Every request to /v1/traces or /v1/logs
// is decoded with the official OTLP schema (the protobufjs code generated from
// opentelemetry-proto that npm's @opentelemetry/otlp-transformer ships), in either encoding:
// - application/json: the JSON mapping the specification asks for is checked first: ids as
//   hex, 64-bit integers as decimal strings, enums as integers, no key the schema does not know;
// - application/x-protobuf: the bytes are decoded, must re-encode to exactly the same bytes
//   (canonical: field order, no unknown or repeated fields, no padded varints), and are then
//   turned into the JSON mapping, which goes through the same checks.
// Either way record.body is the JSON mapping, so a test reads the same fields whichever
// protocol was used; record.contentType says which. With --example (the shared contract's
// examples/trace.json), each trace request must also have that document's shape.
//
// Faults for the next requests are queued with POST /__control:
//   {"status": 503, "retry_after": "1", "times": 2}   answer 503 twice
//   {"delay_ms": 3000, "times": 1}                      answer late (a slow collector)
//   {"close": true, "times": 1}                         close the connection mid-request
// GET /__received lists what arrived: {path, headers, contentType, body, errors, answered}; any request to
// /echo is recorded with its headers (an outgoing call's traceparent).
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const zlib = require('zlib');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];

const root = require(path.join(__dirname, 'node_modules/@opentelemetry/otlp-transformer/build/src/generated/root.js'));
const Long = require(path.join(__dirname, 'node_modules/protobufjs/minimal.js')).util.Long;
const proto = root.opentelemetry.proto;
const types = {
  '/v1/traces': proto.collector.trace.v1.ExportTraceServiceRequest,
  '/v1/logs': proto.collector.logs.v1.ExportLogsServiceRequest,
};

const idLengths = { traceId: 32, spanId: 16, parentSpanId: 16 };
const int64Keys = new Set(['startTimeUnixNano', 'endTimeUnixNano', 'timeUnixNano', 'observedTimeUnixNano', 'intValue']);
const enumKeys = new Set(['kind', 'code', 'severityNumber']);

// The JSON mapping's rules, checked before protobufjs sees the message; returns the message
// converted to what protobufjs's fromObject expects (bytes as base64, int64 as Long).
function checkMapping(value, where, errors) {
  if (Array.isArray(value)) return value.map((item, i) => checkMapping(item, `${where}[${i}]`, errors));
  if (value === null || typeof value !== 'object') return value;
  const out = {};
  for (const [key, item] of Object.entries(value)) {
    const at = `${where}.${key}`;
    if (!/^[a-z][a-zA-Z0-9]*$/.test(key)) errors.push(`${at}: key is not lowerCamelCase`);
    if (key in idLengths) {
      const hex = new RegExp(`^[0-9a-fA-F]{${idLengths[key]}}$`);
      if (typeof item !== 'string' || !hex.test(item)) {
        errors.push(`${at}: ${JSON.stringify(item)} is not ${idLengths[key]} hex digits`);
        out[key] = item;
      } else {
        out[key] = Buffer.from(item, 'hex').toString('base64');
      }
    } else if (int64Keys.has(key)) {
      if (typeof item !== 'string' || !/^-?[0-9]+$/.test(item)) {
        errors.push(`${at}: ${JSON.stringify(item)} is not a 64-bit integer as a decimal string`);
        out[key] = item;
      } else {
        out[key] = Long.fromString(item, key !== 'intValue');
      }
    } else if (key === 'doubleValue' && typeof item === 'string') {
      // The proto3 JSON mapping spells these three as strings; protobufjs wants numbers.
      const special = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };
      if (!(item in special)) errors.push(`${at}: ${JSON.stringify(item)} is not a double`);
      out[key] = special[item];
    } else if (enumKeys.has(key)) {
      if (!Number.isInteger(item)) errors.push(`${at}: ${JSON.stringify(item)} is not an integer enum value`);
      out[key] = item;
    } else {
      out[key] = checkMapping(item, at, errors);
    }
  }
  return out;
}

// Keys the schema dropped on a fromObject/toObject round trip are keys it does not know.
function unknownKeys(sent, back, where, errors) {
  if (Array.isArray(sent)) {
    sent.forEach((item, i) => unknownKeys(item, Array.isArray(back) ? back[i] : undefined, `${where}[${i}]`, errors));
    return;
  }
  if (sent === null || typeof sent !== 'object' || Long.isLong(sent)) return;
  for (const [key, item] of Object.entries(sent)) {
    const empty = item === 0 || item === '' || item === false || (Array.isArray(item) && item.length === 0);
    if (!empty && (back === undefined || back === null || !(key in back))) errors.push(`${where}.${key}: not in the OTLP schema`);
    else if (back && key in back) unknownKeys(item, back[key], `${where}.${key}`, errors);
  }
}

// Every key path of the example (arrays collapsed), for the shape check.
function keyPaths(value, prefix, out) {
  if (Array.isArray(value)) {
    value.forEach((item) => keyPaths(item, `${prefix}[]`, out));
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      out.add(`${prefix}.${key}`);
      keyPaths(item, `${prefix}.${key}`, out);
    }
  }
  return out;
}

// What the example has that a request may leave out: a root span has no parent, and our scope
// carries no attributes.
const optionalInExample = [/parentSpanId$/, /\.scope\.attributes/];

function validate(urlPath, body) {
  const errors = [];
  const type = types[urlPath];
  const converted = checkMapping(body, '$', errors);
  const problem = type.verify(converted);
  if (problem) errors.push(`schema: ${problem}`);
  else unknownKeys(converted, type.toObject(type.fromObject(converted), { longs: String, bytes: String, enums: Number }), '$', errors);
  if (urlPath === '/v1/traces' && example) {
    const ours = keyPaths(body, '$', new Set());
    for (const wanted of keyPaths(example, '$', new Set()))
      if (!ours.has(wanted) && !optionalInExample.some((re) => re.test(wanted)))
        errors.push(`shape: ${wanted} (in examples/trace.json) is missing`);
  }
  return errors;
}

// A protobuf request as its JSON mapping: int64 as decimal strings, enums as integers, NaN and
// infinities as strings (json: true), repeated fields present even when empty (as our JSON
// encoder sends attributes), and the ids as hex rather than protobufjs's base64.
function jsonMapping(type, message) {
  const object = type.toObject(message, { longs: String, enums: Number, bytes: String, json: true, arrays: true });
  const hexIds = (value) => {
    if (Array.isArray(value)) return value.forEach(hexIds);
    if (value === null || typeof value !== 'object') return;
    for (const [key, item] of Object.entries(value)) {
      if (key in idLengths && typeof item === 'string') value[key] = Buffer.from(item, 'base64').toString('hex');
      else hexIds(item);
    }
  };
  hexIds(object);
  return object;
}

// Decodes a protobuf body and checks it is exactly what the official encoder would write for
// the message it holds; returns the message.
function decodeProtobuf(type, bytes, errors) {
  const message = type.decode(bytes);  // throws on malformed wire data
  const again = Buffer.from(type.encode(message).finish());
  if (!again.equals(bytes)) {
    let at = 0;
    while (at < again.length && at < bytes.length && again[at] === bytes[at]) ++at;
    errors.push(`protobuf: not canonical: ${bytes.length} bytes sent, ${again.length} when re-encoded, ` +
                `first difference at byte ${at}`);
  }
  return message;
}

// Strings on the wire must be valid UTF-8. protobufjs does not check: most bad bytes come back
// as U+FFFD, which the canonical check above catches (re-encoded, they differ), but an encoded
// surrogate decodes to a lone surrogate and re-encodes to the same bytes, so look for those.
function checkStrings(value, where, errors) {
  if (typeof value === 'string') {
    if (!value.isWellFormed()) errors.push(`${where}: not valid UTF-8 (a lone surrogate)`);
  } else if (Array.isArray(value)) {
    value.forEach((item, i) => checkStrings(item, `${where}[${i}]`, errors));
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) checkStrings(item, `${where}.${key}`, errors);
  }
}

let example = null;
if (args.example) {
  example = JSON.parse(fs.readFileSync(args.example, 'utf8'));
  // The checker itself must accept the specification's own example.
  const own = validate('/v1/traces', example);
  if (own.length) {
    console.error('the receiver rejects examples/trace.json itself:', own);
    process.exit(1);
  }
}

const received = [];
const faults = [];

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

function answer(response, status, body, headers = {}) {
  response.writeHead(status, { 'content-type': 'application/json', ...headers });
  response.end(JSON.stringify(body));
}

const server = http.createServer(async (request, response) => {
  const url = new URL(request.url, 'http://receiver');
  if (url.pathname === '/__control' && request.method === 'POST') {
    const fault = JSON.parse((await readBody(request)).toString('utf8'));
    faults.push({ times: 1, ...fault });
    return answer(response, 200, { queued: faults.length });
  }
  if (url.pathname === '/__received') {
    if (request.method === 'DELETE') received.length = 0;
    return answer(response, 200, { received });
  }
  if (url.pathname === '/echo') {  // stands for a daemon we call: records what the call carried
    received.push({ path: url.pathname, headers: request.headers });
    return answer(response, 200, {});
  }
  if (!(url.pathname in types) || request.method !== 'POST') return answer(response, 404, { error: 'not an OTLP path' });

  const fault = faults[0];
  if (fault) {
    if (--fault.times <= 0) faults.shift();
    if (fault.close) {
      received.push({ path: url.pathname, headers: request.headers, answered: 'closed' });
      request.socket.destroy();  // mid-request: the body may still be arriving
      return;
    }
  }
  const raw = await readBody(request);
  const contentType = request.headers['content-type'];
  const record = { path: url.pathname, headers: request.headers, contentType, errors: [] };
  received.push(record);
  try {
    const bytes = request.headers['content-encoding'] === 'gzip' ? zlib.gunzipSync(raw) : raw;
    if (contentType === 'application/json') {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);  // throws on invalid UTF-8
      record.body = JSON.parse(text);
    } else if (contentType === 'application/x-protobuf') {
      const type = types[url.pathname];
      const message = decodeProtobuf(type, bytes, record.errors);
      record.body = jsonMapping(type, message);
      checkStrings(record.body, '$', record.errors);
    } else {
      throw new Error(`content-type ${JSON.stringify(contentType)} is neither application/json nor application/x-protobuf`);
    }
    record.errors.push(...validate(url.pathname, record.body));
  } catch (error) {
    record.errors.push(`undecodable: ${error.message}`);
  }
  const status = fault && fault.status ? fault.status : 200;
  const reply = () => {
    record.answered = status;
    const headers = fault && fault.retry_after !== undefined ? { 'retry-after': String(fault.retry_after) } : {};
    answer(response, status, status === 200 ? {} : { code: status, message: 'fault injected by the test' }, headers);
  };
  if (fault && fault.delay_ms) setTimeout(reply, fault.delay_ms);
  else reply();
});

server.listen(Number(args.port || 0), '127.0.0.1', () => {
  const ready = { url: `http://127.0.0.1:${server.address().port}` };
  if (args['ready-file']) fs.writeFileSync(args['ready-file'], JSON.stringify(ready));
  else console.log(JSON.stringify(ready));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
