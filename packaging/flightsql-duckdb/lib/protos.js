'use strict';
// Finding and loading the official Arrow Flight protos (Flight.proto, FlightSql.proto).
//
// The protos are not part of this package: the image installs them at
// /usr/share/synthorg/arrow-flight, and FLIGHT_PROTO_DIR overrides that. The grpc service
// definition comes from @grpc/proto-loader; the Flight SQL command messages, which travel
// inside google.protobuf.Any and never appear in a method signature, are encoded and decoded
// with protobufjs, loaded from the same files. protobufjs is @grpc/proto-loader's own
// dependency: it is resolved through proto-loader so both use one instance (proto-loader
// registers google/protobuf/descriptor.proto, which FlightSql.proto imports, in it).

const fs = require('fs');
const path = require('path');
const protoLoader = require('@grpc/proto-loader');

const protobuf = require(require.resolve('protobufjs', {
  paths: [path.dirname(require.resolve('@grpc/proto-loader'))],
}));

const PROTO_FILES = ['Flight.proto', 'FlightSql.proto'];
const IMAGE_PROTO_DIR = '/usr/share/synthorg/arrow-flight';
const SQL_PACKAGE = 'arrow.flight.protocol.sql';
const TYPE_URL_PREFIX = 'type.googleapis.com/';

// The directories tried, in order: FLIGHT_PROTO_DIR (tests and development set it), then where
// the image puts the protos.
function candidateDirs() {
  const dirs = [];
  if (process.env.FLIGHT_PROTO_DIR) dirs.push({ dir: process.env.FLIGHT_PROTO_DIR, from: 'FLIGHT_PROTO_DIR' });
  dirs.push({ dir: IMAGE_PROTO_DIR, from: 'default' });
  return dirs;
}

function hasProtos(dir) {
  return PROTO_FILES.every((f) => fs.existsSync(path.join(dir, f)));
}

function findProtoDir() {
  const tried = candidateDirs();
  // An explicit FLIGHT_PROTO_DIR that lacks the files is a configuration error: falling back
  // silently to another copy would hide it.
  if (process.env.FLIGHT_PROTO_DIR && !hasProtos(process.env.FLIGHT_PROTO_DIR)) {
    throw new Error(`FLIGHT_PROTO_DIR=${process.env.FLIGHT_PROTO_DIR} does not contain ${PROTO_FILES.join(' and ')}`);
  }
  for (const { dir } of tried) {
    if (hasProtos(dir)) return dir;
  }
  throw new Error(`cannot find the Arrow Flight protos (${PROTO_FILES.join(', ')}) in ${IMAGE_PROTO_DIR}; ` +
    'set FLIGHT_PROTO_DIR to the directory that contains them');
}

// The include path that makes "google/protobuf/descriptor.proto" resolve to the copy protobufjs
// ships (the other google imports are bundled into protobufjs itself).
function googleIncludeDir() {
  return path.dirname(require.resolve('protobufjs/package.json', {
    paths: [path.dirname(require.resolve('@grpc/proto-loader'))],
  }));
}

function load(protoDir = findProtoDir()) {
  const includeDirs = [protoDir, googleIncludeDir()];
  // Field names stay as in the protos (snake_case); int64 fields become JS numbers (they hold
  // row and byte counts); bytes become Buffers; unset scalars read as their defaults.
  const packageDefinition = protoLoader.loadSync(PROTO_FILES, {
    includeDirs, keepCase: true, longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true,
  });

  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    for (const dir of includeDirs) {
      const full = path.join(dir, target);
      if (fs.existsSync(full)) return full;
    }
    return protobuf.util.path.resolve(origin, target);
  };
  root.loadSync(PROTO_FILES, { keepCase: true });
  root.resolveAll();

  return { protoDir, packageDefinition, root, codec: makeCodec(root) };
}

// Encoding and decoding of single messages, and of google.protobuf.Any around them.
function makeCodec(root) {
  const typeCache = new Map();
  function type(name) {
    let t = typeCache.get(name);
    if (!t) {
      t = root.lookupType(name);
      typeCache.set(name, t);
    }
    return t;
  }
  const toObjectOptions = { longs: Number, enums: String, bytes: Buffer, defaults: true };

  // Any is two fields, written by hand so no google/protobuf/any.proto is needed.
  function encodeAny(typeUrl, value) {
    return Buffer.from(protobuf.Writer.create().uint32(10).string(typeUrl).uint32(18).bytes(value).finish());
  }
  function decodeAny(bytes) {
    const reader = protobuf.Reader.create(bytes);
    let typeUrl = '';
    let value = Buffer.alloc(0);
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      switch (tag >>> 3) {
        case 1: typeUrl = reader.string(); break;
        case 2: value = Buffer.from(reader.bytes()); break;
        default: reader.skipType(tag & 7);
      }
    }
    return { typeUrl, value };
  }

  return {
    type,
    // Full name -> bytes.
    encode(name, object) {
      const t = type(name);
      // fromObject takes enum names and Buffers; verify then checks what it made.
      const message = t.fromObject(object);
      const err = t.verify(message);
      if (err) throw new Error(`${name}: ${err}`);
      return Buffer.from(t.encode(message).finish());
    },
    // Bytes -> plain object. Presence of proto3 `optional` fields is kept: an unset optional
    // field is absent from the object (protobufjs leaves members of a oneof undefaulted).
    decode(name, bytes) {
      const t = type(name);
      return t.toObject(t.decode(bytes), toObjectOptions);
    },
    // A Flight SQL message packed in Any, as Flight SQL puts commands in descriptors, tickets and
    // action bodies.
    packSql(shortName, object) {
      return encodeAny(`${TYPE_URL_PREFIX}${SQL_PACKAGE}.${shortName}`, this.encode(`${SQL_PACKAGE}.${shortName}`, object));
    },
    // Any -> { name: short Flight SQL message name or null, typeUrl, value }. Throws on bytes that
    // are not an Any.
    unpack(bytes) {
      const { typeUrl, value } = decodeAny(bytes);
      if (!typeUrl) throw new Error('not a google.protobuf.Any (no type_url)');
      const full = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
      const name = full.startsWith(`${SQL_PACKAGE}.`) ? full.slice(SQL_PACKAGE.length + 1) : null;
      return { name, typeUrl, value };
    },
    encodeAny,
    decodeAny,
  };
}

module.exports = { load, findProtoDir, PROTO_FILES, IMAGE_PROTO_DIR, SQL_PACKAGE, TYPE_URL_PREFIX };
