'use strict';
// DuckDB result chunks -> Arrow record batches.
//
// The DuckDB node API hands out data chunks (up to 2048 rows) whose vectors we read in JS, and
// has no Arrow export of its own. Each result column gets a "plan" from its DuckDB type: the
// Arrow type it becomes and how to build Arrow data from DuckDB values. Fixed-width columns
// whose bits DuckDB and Arrow lay out alike (integers, floats, dates, times, timestamps) are
// copied as typed arrays straight from the vector, with DuckDB's validity mask used as the
// Arrow validity bitmap (both are little-endian, bit i = row i valid); every other type goes
// through the values the node API decodes. Several chunks are gathered into one Arrow batch
// (BatchBuilder) so a large result is a few hundred messages, not thousands, while each batch
// stays bounded in rows and bytes.
//
// Type mapping follows what DuckDB's own Arrow export does where Arrow JS can express it:
// HUGEINT becomes decimal128(38, 0), TIMESTAMP WITH TIME ZONE a UTC timestamp, UUID and ENUM
// strings. Types with no Arrow counterpart here (UHUGEINT, BIT, TIME WITH TIME ZONE, UNION,
// BIGNUM, VARIANT, GEOMETRY) are sent as their DuckDB text form.

const arrow = require('apache-arrow');
const { DuckDBTypeId: T } = require('@duckdb/node-api');

// Batch limits: whichever is reached first closes a batch.
const MAX_BATCH_ROWS = 65536;
const MAX_BATCH_BYTES = 2 * 1024 * 1024;

const textEncoder = new TextEncoder();

function item(child) {
  return new arrow.Field('item', child, true);
}

// ---- building Arrow data from arrays of DuckDB values ---------------------------------------

// A validity bitmap for `values` (null or undefined = null), or null when nothing is null.
function validityOf(values) {
  let bitmap = null;
  let nullCount = 0;
  for (let i = 0; i < values.length; i++) {
    if (values[i] == null) {
      if (!bitmap) bitmap = new Uint8Array((values.length + 7) >> 3).fill(0xff);
      bitmap[i >> 3] &= ~(1 << (i & 7));
      nullCount++;
    }
  }
  return { nullBitmap: bitmap, nullCount };
}

// Fixed-width numbers: `convert` turns a non-null DuckDB value into the typed array's element.
function primitivePlan(type, ArrayType, convert) {
  return {
    type,
    fastArray: null,
    build(values) {
      const data = new ArrayType(values.length);
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (v != null) data[i] = convert(v);
      }
      return arrow.makeData({ type, length: values.length, data, ...validityOf(values) });
    },
  };
}

// A plan whose columns can also be copied straight from a DuckDB vector's typed array.
function fastPlan(type, ArrayType, convert) {
  const plan = primitivePlan(type, ArrayType, convert);
  plan.fastArray = ArrayType;
  plan.convert = convert;
  return plan;
}

function boolPlan() {
  const type = new arrow.Bool();
  return {
    type,
    fastArray: null,
    build(values) {
      const data = new Uint8Array((values.length + 7) >> 3);
      for (let i = 0; i < values.length; i++) if (values[i]) data[i >> 3] |= 1 << (i & 7);
      return arrow.makeData({ type, length: values.length, data, ...validityOf(values) });
    },
  };
}

// Variable-length bytes (Utf8 or Binary): `toBytes` turns a non-null value into a Uint8Array.
function bytesPlan(type, toBytes) {
  return {
    type,
    fastArray: null,
    approxBytes: (v) => (v == null ? 0 : typeof v === 'string' ? v.length : v.bytes ? v.bytes.length : 16),
    build(values) {
      const parts = new Array(values.length);
      let total = 0;
      for (let i = 0; i < values.length; i++) {
        if (values[i] != null) {
          parts[i] = toBytes(values[i]);
          total += parts[i].length;
        }
      }
      if (total > 0x7fffffff) throw new Error('a batch column exceeds 2 GiB of data');
      const valueOffsets = new Int32Array(values.length + 1);
      const data = new Uint8Array(total);
      let pos = 0;
      for (let i = 0; i < values.length; i++) {
        if (parts[i]) {
          data.set(parts[i], pos);
          pos += parts[i].length;
        }
        valueOffsets[i + 1] = pos;
      }
      return arrow.makeData({ type, length: values.length, valueOffsets, data, ...validityOf(values) });
    },
  };
}

function textPlan() {
  return bytesPlan(new arrow.Utf8(), (v) => textEncoder.encode(typeof v === 'string' ? v : String(v)));
}

// Decimals are 128-bit little-endian two's complement in Arrow: four uint32 words per value.
function decimalPlan(precision, scale, toBigInt) {
  const type = new arrow.Decimal(scale, precision, 128);
  return {
    type,
    fastArray: null,
    build(values) {
      const words = new BigInt64Array(values.length * 2);
      for (let i = 0; i < values.length; i++) {
        if (values[i] == null) continue;
        const v = toBigInt(values[i]);
        words[2 * i] = BigInt.asIntN(64, v);
        words[2 * i + 1] = BigInt.asIntN(64, v >> 64n);
      }
      const data = new Uint32Array(words.buffer);
      return arrow.makeData({ type, length: values.length, data, ...validityOf(values) });
    },
  };
}

// DuckDB intervals are months, days and microseconds; Arrow's month_day_nano holds nanoseconds.
function intervalPlan() {
  const type = new arrow.IntervalMonthDayNano();
  return {
    type,
    fastArray: null,
    build(values) {
      const buffer = new ArrayBuffer(values.length * 16);
      const view = new DataView(buffer);
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (v == null) continue;
        view.setInt32(16 * i, v.months, true);
        view.setInt32(16 * i + 4, v.days, true);
        view.setBigInt64(16 * i + 8, BigInt.asIntN(64, v.micros * 1000n), true);
      }
      return arrow.makeData({ type, length: values.length, data: new Int32Array(buffer), ...validityOf(values) });
    },
  };
}

function nullPlan() {
  const type = new arrow.Null();
  return {
    type,
    fastArray: null,
    build(values) {
      return arrow.makeData({ type, length: values.length, nullCount: values.length });
    },
  };
}

function listPlan(childPlan) {
  const type = new arrow.List(item(childPlan.type));
  return {
    type,
    fastArray: null,
    build(values) {
      const valueOffsets = new Int32Array(values.length + 1);
      const childValues = [];
      for (let i = 0; i < values.length; i++) {
        if (values[i] != null) for (const v of values[i].items) childValues.push(v);
        valueOffsets[i + 1] = childValues.length;
      }
      const child = childPlan.build(childValues);
      return arrow.makeData({ type, length: values.length, valueOffsets, child, ...validityOf(values) });
    },
  };
}

function fixedListPlan(childPlan, size) {
  const type = new arrow.FixedSizeList(size, item(childPlan.type));
  return {
    type,
    fastArray: null,
    build(values) {
      const childValues = [];
      for (const v of values) {
        if (v == null) for (let k = 0; k < size; k++) childValues.push(null);
        else for (let k = 0; k < size; k++) childValues.push(v.items[k]);
      }
      const child = childPlan.build(childValues);
      return arrow.makeData({ type, length: values.length, child, ...validityOf(values) });
    },
  };
}

function structPlan(names, childPlans) {
  const type = new arrow.Struct(names.map((n, k) => new arrow.Field(n, childPlans[k].type, true)));
  return {
    type,
    fastArray: null,
    build(values) {
      const children = names.map((n, k) =>
        childPlans[k].build(values.map((v) => (v == null ? null : v.entries[n]))));
      return arrow.makeData({ type, length: values.length, children, ...validityOf(values) });
    },
  };
}

// Arrow's map is a list of non-null {key, value} structs whose keys are never null.
function mapPlan(keyPlan, valuePlan) {
  const entriesType = new arrow.Struct([
    new arrow.Field('key', keyPlan.type, false),
    new arrow.Field('value', valuePlan.type, true),
  ]);
  const type = new arrow.Map_(new arrow.Field('entries', entriesType, false), false);
  return {
    type,
    fastArray: null,
    build(values) {
      const valueOffsets = new Int32Array(values.length + 1);
      const keys = [];
      const vals = [];
      for (let i = 0; i < values.length; i++) {
        if (values[i] != null) {
          for (const e of values[i].entries) {
            keys.push(e.key);
            vals.push(e.value);
          }
        }
        valueOffsets[i + 1] = keys.length;
      }
      const child = arrow.makeData({
        type: entriesType, length: keys.length, nullCount: 0,
        children: [keyPlan.build(keys), valuePlan.build(vals)],
      });
      return arrow.makeData({ type, length: values.length, valueOffsets, child, ...validityOf(values) });
    },
  };
}

// ---- DuckDB type -> plan ---------------------------------------------------------------------

const num = (v) => Number(v);
const big = (v) => BigInt(v);

function planFor(duckType) {
  switch (duckType.typeId) {
    case T.BOOLEAN: return boolPlan();
    case T.TINYINT: return fastPlan(new arrow.Int8(), Int8Array, num);
    case T.SMALLINT: return fastPlan(new arrow.Int16(), Int16Array, num);
    case T.INTEGER: return fastPlan(new arrow.Int32(), Int32Array, num);
    case T.BIGINT: return fastPlan(new arrow.Int64(), BigInt64Array, big);
    case T.UTINYINT: return fastPlan(new arrow.Uint8(), Uint8Array, num);
    case T.USMALLINT: return fastPlan(new arrow.Uint16(), Uint16Array, num);
    case T.UINTEGER: return fastPlan(new arrow.Uint32(), Uint32Array, num);
    case T.UBIGINT: return fastPlan(new arrow.Uint64(), BigUint64Array, big);
    case T.FLOAT: return fastPlan(new arrow.Float32(), Float32Array, num);
    case T.DOUBLE: return fastPlan(new arrow.Float64(), Float64Array, num);
    case T.DATE: return fastPlan(new arrow.DateDay(), Int32Array, (v) => v.days);
    case T.TIME: return fastPlan(new arrow.TimeMicrosecond(), BigInt64Array, (v) => v.micros);
    case T.TIME_NS: return fastPlan(new arrow.TimeNanosecond(), BigInt64Array, (v) => v.nanos);
    case T.TIMESTAMP: return fastPlan(new arrow.TimestampMicrosecond(), BigInt64Array, (v) => v.micros);
    case T.TIMESTAMP_S: return fastPlan(new arrow.TimestampSecond(), BigInt64Array, (v) => v.seconds);
    case T.TIMESTAMP_MS: return fastPlan(new arrow.TimestampMillisecond(), BigInt64Array, (v) => v.millis);
    case T.TIMESTAMP_NS: return fastPlan(new arrow.TimestampNanosecond(), BigInt64Array, (v) => v.nanos);
    case T.TIMESTAMP_TZ: return fastPlan(new arrow.TimestampMicrosecond('UTC'), BigInt64Array, (v) => v.micros);
    case T.INTERVAL: return intervalPlan();
    case T.HUGEINT: return decimalPlan(38, 0, (v) => v);
    case T.DECIMAL: return decimalPlan(duckType.width, duckType.scale, (v) => v.value);
    case T.VARCHAR: return textPlan();
    case T.BLOB: return bytesPlan(new arrow.Binary(), (v) => v.bytes);
    case T.SQLNULL: return nullPlan();
    case T.LIST: return listPlan(planFor(duckType.valueType));
    case T.ARRAY: return fixedListPlan(planFor(duckType.valueType), duckType.length);
    case T.STRUCT: return structPlan(duckType.entryNames, duckType.entryTypes.map(planFor));
    case T.MAP: return mapPlan(planFor(duckType.keyType), planFor(duckType.valueType));
    default: return textPlan(); // UUID, ENUM and the types without an Arrow counterpart
  }
}

// Flight SQL column metadata (FlightSql.proto, CommandStatementQuery): the source type name.
function fieldFor(name, duckType, plan = planFor(duckType)) {
  return new arrow.Field(name, plan.type, true, new Map([['ARROW:FLIGHT:SQL:TYPE_NAME', duckType.toString()]]));
}

function schemaFor(names, duckTypes) {
  return new arrow.Schema(names.map((n, i) => fieldFor(n, duckTypes[i])));
}

// ---- gathering chunks into batches -----------------------------------------------------------

// A fixed-width vector's values and validity, copied as they lie. The node API keeps the
// vector's typed array and validity words in fields it marks private: they are used when present
// and shaped as expected, and null is returned otherwise (convertedPart then decodes values).
function fastPart(vector, rowCount, Fast) {
  const items = vector.items;
  const validity = vector.validity;
  if (!(items instanceof Fast) || items.length !== rowCount || !validity) return null;
  const words = validity.data;
  if (words !== null && !(words instanceof BigUint64Array && validity.offset === 0)) return null;
  return {
    values: items.slice(),
    validity: words ? new Uint8Array(words.buffer.slice(words.byteOffset, words.byteOffset + words.byteLength)) : null,
    length: rowCount,
  };
}

// The same part built from the decoded values.
function convertedPart(vector, rowCount, plan) {
  const values = new plan.fastArray(rowCount);
  let validity = null;
  for (let i = 0; i < rowCount; i++) {
    const v = vector.getItem(i);
    if (v == null) {
      if (!validity) validity = new Uint8Array((rowCount + 7) >> 3).fill(0xff);
      validity[i >> 3] &= ~(1 << (i & 7));
    } else {
      values[i] = plan.convert(v);
    }
  }
  return { values, validity, length: rowCount };
}

// One column of the batch being gathered.
class ColumnAccumulator {
  constructor(plan) {
    this.plan = plan;
    this.parts = []; // fixed-width plans: { values, validity, length } per chunk
    this.values = []; // other plans: DuckDB values
    this.bytes = 0;
  }

  append(vector, rowCount) {
    const Fast = this.plan.fastArray;
    if (Fast) {
      this.parts.push(fastPart(vector, rowCount, Fast) || convertedPart(vector, rowCount, this.plan));
      this.bytes += rowCount * Fast.BYTES_PER_ELEMENT;
      return;
    }
    const approx = this.plan.approxBytes;
    for (let i = 0; i < rowCount; i++) {
      const v = vector.getItem(i);
      this.values.push(v);
      this.bytes += approx ? approx(v) : 8;
    }
  }

  finishFast() {
    const Fast = this.plan.fastArray;
    const length = this.parts.reduce((n, p) => n + p.length, 0);
    const data = new Fast(length);
    let bitmap = null;
    let nullCount = 0;
    let offset = 0;
    for (const part of this.parts) {
      data.set(part.values, offset);
      if (part.validity) {
        for (let i = 0; i < part.length; i++) {
          // Whole valid bytes are skipped: the common case of few or no nulls.
          if ((i & 7) === 0 && i + 8 <= part.length && part.validity[i >> 3] === 0xff) {
            i += 7;
            continue;
          }
          if (!(part.validity[i >> 3] & (1 << (i & 7)))) {
            if (!bitmap) bitmap = new Uint8Array((length + 7) >> 3).fill(0xff);
            const row = offset + i;
            bitmap[row >> 3] &= ~(1 << (row & 7));
            nullCount++;
          }
        }
      }
      offset += part.length;
    }
    return arrow.makeData({ type: this.plan.type, length, data, nullBitmap: bitmap, nullCount });
  }

  finish() {
    const data = this.parts.length ? this.finishFast() : this.plan.build(this.values);
    this.parts = [];
    this.values = [];
    this.bytes = 0;
    return data;
  }
}

// Gathers DuckDB chunks for one result into Arrow record batches of bounded size.
class BatchBuilder {
  constructor(names, duckTypes, limits = {}) {
    this.plans = duckTypes.map((t) => planFor(t));
    this.schema = new arrow.Schema(names.map((n, i) => fieldFor(n, duckTypes[i], this.plans[i])));
    this.columns = this.plans.map((p) => new ColumnAccumulator(p));
    this.rows = 0;
    this.maxRows = limits.maxRows || MAX_BATCH_ROWS;
    this.maxBytes = limits.maxBytes || MAX_BATCH_BYTES;
  }

  append(chunk) {
    const n = chunk.rowCount;
    for (let c = 0; c < this.columns.length; c++) this.columns[c].append(chunk.getColumnVector(c), n);
    this.rows += n;
  }

  get bytes() {
    return this.columns.reduce((s, c) => s + c.bytes, 0);
  }

  get full() {
    return this.rows >= this.maxRows || this.bytes >= this.maxBytes;
  }

  get empty() {
    return this.rows === 0;
  }

  // The gathered rows as a RecordBatch; the builder is empty afterwards.
  finish() {
    const children = this.columns.map((c) => c.finish());
    const length = this.rows;
    this.rows = 0;
    const data = arrow.makeData({ type: new arrow.Struct(this.schema.fields), length, nullCount: 0, children });
    return new arrow.RecordBatch(this.schema, data);
  }
}

module.exports = { planFor, fieldFor, schemaFor, BatchBuilder, MAX_BATCH_ROWS, MAX_BATCH_BYTES };
