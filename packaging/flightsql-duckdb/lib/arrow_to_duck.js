'use strict';
// Arrow data -> DuckDB values and types: for bulk ingestion (CommandStatementIngest) and for
// prepared statement parameters (an Arrow batch, one row per parameter set).
//
// Each Arrow type gets a "column reader": its DuckDB type (for CREATE TABLE, data chunks and
// parameter binding) and a function reading row i of an Arrow Data as a DuckDB value. Temporal
// and decimal values are read from the raw buffers, because apache-arrow's getters turn them
// into JS numbers of milliseconds and lose precision.

const arrow = require('apache-arrow');
const duck = require('@duckdb/node-api');

const { Type, TimeUnit, DateUnit, IntervalUnit } = arrow;

class UnsupportedTypeError extends Error {}

function quoteIdent(name) {
  return `"${String(name).replace(/"/g, '""')}"`;
}

// The SQL spelling of a DuckDB type, with struct field names quoted (DuckDB's toString does not
// quote them).
function sqlType(t) {
  switch (t.typeId) {
    case duck.DuckDBTypeId.LIST: return `${sqlType(t.valueType)}[]`;
    case duck.DuckDBTypeId.STRUCT:
      return `STRUCT(${t.entryNames.map((n, k) => `${quoteIdent(n)} ${sqlType(t.entryTypes[k])}`).join(', ')})`;
    case duck.DuckDBTypeId.MAP: return `MAP(${sqlType(t.keyType)}, ${sqlType(t.valueType)})`;
    case duck.DuckDBTypeId.DECIMAL: return `DECIMAL(${t.width},${t.scale})`;
    default: return t.toString();
  }
}

// An int64 split over two uint32/int32 words (little-endian), as Arrow stores 64-bit parts of
// decimals and intervals.
function int64At(words, index) {
  return (BigInt.asIntN(32, BigInt(words[index + 1])) << 32n) | BigInt(words[index] >>> 0);
}

function decimalAt(words, stride, i) {
  let v = 0n;
  for (let k = stride - 1; k >= 0; k--) v = (v << 32n) | BigInt(words[stride * i + k] >>> 0);
  return BigInt.asIntN(32 * stride, v);
}

const US_PER = { [TimeUnit.SECOND]: 1000000n, [TimeUnit.MILLISECOND]: 1000n, [TimeUnit.MICROSECOND]: 1n };

// Arrow type -> { duckType, read(data, i) -> DuckDB value (never called for null rows) }.
function readerFor(type) {
  switch (type.typeId) {
    case Type.Null:
      return { duckType: duck.VARCHAR, read: () => null };
    case Type.Bool:
      return { duckType: duck.BOOLEAN, read: getter((v) => !!v) };
    case Type.Int: {
      const types = type.isSigned
        ? { 8: duck.TINYINT, 16: duck.SMALLINT, 32: duck.INTEGER, 64: duck.BIGINT }
        : { 8: duck.UTINYINT, 16: duck.USMALLINT, 32: duck.UINTEGER, 64: duck.UBIGINT };
      return { duckType: types[type.bitWidth], read: (data, i) => data.values[i] };
    }
    case Type.Float:
      return { duckType: type.precision === 2 ? duck.DOUBLE : duck.FLOAT, read: getter((v) => v) };
    case Type.Utf8:
    case Type.LargeUtf8:
    case Type.Utf8View:
      return { duckType: duck.VARCHAR, read: getter((v) => v) };
    case Type.Binary:
    case Type.LargeBinary:
    case Type.BinaryView:
    case Type.FixedSizeBinary:
      return { duckType: duck.BLOB, read: getter((v) => duck.blobValue(v)) };
    case Type.Date:
      return {
        duckType: duck.DATE,
        read: type.unit === DateUnit.DAY
          ? (data, i) => duck.dateValue(data.values[i])
          : (data, i) => duck.dateValue(Number(data.values[i] / 86400000n)),
      };
    case Type.Time:
      if (type.unit === TimeUnit.NANOSECOND) {
        return { duckType: duck.TIME_NS, read: (data, i) => duck.timeNSValue(BigInt(data.values[i])) };
      }
      return { duckType: duck.TIME, read: (data, i) => duck.timeValue(BigInt(data.values[i]) * US_PER[type.unit]) };
    case Type.Timestamp: {
      if (type.timezone) {
        // DuckDB's TIMESTAMPTZ is microseconds; nanoseconds are truncated.
        const toMicros = type.unit === TimeUnit.NANOSECOND ? (v) => v / 1000n : (v) => v * US_PER[type.unit];
        return { duckType: duck.TIMESTAMPTZ, read: (data, i) => duck.timestampTZValue(toMicros(data.values[i])) };
      }
      switch (type.unit) {
        case TimeUnit.SECOND: return { duckType: duck.TIMESTAMP_S, read: (d, i) => duck.timestampSecondsValue(d.values[i]) };
        case TimeUnit.MILLISECOND: return { duckType: duck.TIMESTAMP_MS, read: (d, i) => duck.timestampMillisValue(d.values[i]) };
        case TimeUnit.MICROSECOND: return { duckType: duck.TIMESTAMP, read: (d, i) => duck.timestampValue(d.values[i]) };
        default: return { duckType: duck.TIMESTAMP_NS, read: (d, i) => duck.timestampNanosValue(d.values[i]) };
      }
    }
    case Type.Decimal: {
      if (type.precision > 38) throw new UnsupportedTypeError(`decimal precision ${type.precision} (DuckDB allows 38)`);
      const stride = type.bitWidth / 32;
      return {
        duckType: duck.DECIMAL(type.precision, type.scale),
        read: (data, i) => duck.decimalValue(decimalAt(data.values, stride, i), type.precision, type.scale),
      };
    }
    case Type.Interval:
      return {
        duckType: duck.INTERVAL,
        read: (data, i) => {
          const w = data.values;
          switch (type.unit) {
            case IntervalUnit.YEAR_MONTH: return duck.intervalValue(w[i], 0, 0n);
            case IntervalUnit.DAY_TIME: return duck.intervalValue(0, w[2 * i], BigInt(w[2 * i + 1]) * 1000n);
            default: return duck.intervalValue(w[4 * i], w[4 * i + 1], int64At(w, 4 * i + 2) / 1000n);
          }
        },
      };
    case Type.Duration: {
      const toMicros = type.unit === TimeUnit.NANOSECOND ? (v) => v / 1000n : (v) => v * US_PER[type.unit];
      return { duckType: duck.INTERVAL, read: (data, i) => duck.intervalValue(0, 0, toMicros(BigInt(data.values[i]))) };
    }
    case Type.List:
    case Type.LargeList: {
      const child = readerFor(type.children[0].type);
      return {
        duckType: duck.LIST(child.duckType),
        read: (data, i) => {
          const c = data.children[0];
          const items = [];
          for (let j = Number(data.valueOffsets[i]); j < Number(data.valueOffsets[i + 1]); j++) {
            items.push(c.getValid(j) ? child.read(c, j) : null);
          }
          return duck.listValue(items);
        },
      };
    }
    case Type.FixedSizeList: {
      const child = readerFor(type.children[0].type);
      const size = type.listSize;
      return {
        duckType: duck.LIST(child.duckType),
        read: (data, i) => {
          const c = data.children[0];
          const items = [];
          for (let j = i * size; j < (i + 1) * size; j++) items.push(c.getValid(j) ? child.read(c, j) : null);
          return duck.listValue(items);
        },
      };
    }
    case Type.Struct: {
      const fields = type.children.map((f) => ({ name: f.name, reader: readerFor(f.type) }));
      const entries = {};
      for (const f of fields) entries[f.name] = f.reader.duckType;
      return {
        duckType: duck.STRUCT(entries),
        read: (data, i) => {
          const out = {};
          fields.forEach((f, k) => {
            const c = data.children[k];
            out[f.name] = c.getValid(i) ? f.reader.read(c, i) : null;
          });
          return duck.structValue(out);
        },
      };
    }
    case Type.Map: {
      const [keyField, valueField] = type.children[0].type.children;
      const key = readerFor(keyField.type);
      const value = readerFor(valueField.type);
      return {
        duckType: duck.MAP(key.duckType, value.duckType),
        read: (data, i) => {
          const entries = data.children[0];
          const [k, v] = entries.children;
          const out = [];
          for (let j = data.valueOffsets[i]; j < data.valueOffsets[i + 1]; j++) {
            out.push({ key: key.read(k, j), value: v.getValid(j) ? value.read(v, j) : null });
          }
          return duck.mapValue(out);
        },
      };
    }
    case Type.Dictionary: {
      // Decoded through apache-arrow: dictionaries are mostly strings, whose getter is exact.
      const inner = readerFor(type.dictionary);
      return {
        duckType: inner.duckType,
        read: (data, i) => {
          const dict = data.dictionary;
          const index = Number(data.values[i]);
          const chunks = dict.data;
          let at = index;
          for (const c of chunks) {
            if (at < c.length) return c.getValid(at) ? inner.read(c, at) : null;
            at -= c.length;
          }
          return null;
        },
      };
    }
    default:
      throw new UnsupportedTypeError(`Arrow type ${type}`);
  }
}

// A reader built on apache-arrow's own getter, for types whose JS value is exact.
function getter(convert) {
  const cache = new WeakMap();
  return (data, i) => {
    let vector = cache.get(data);
    if (!vector) {
      vector = arrow.makeVector(data);
      cache.set(data, vector);
    }
    return convert(vector.get(i));
  };
}

// Readers for every column of an Arrow schema.
function readersFor(schema) {
  return schema.fields.map((f) => {
    try {
      return readerFor(f.type);
    } catch (e) {
      if (e instanceof UnsupportedTypeError) e.message = `column ${quoteIdent(f.name)}: unsupported ${e.message}`;
      throw e;
    }
  });
}

// Row `i` of a record batch as DuckDB values.
function rowValues(batch, readers, i) {
  return readers.map((r, c) => {
    const data = batch.getChildAt(c).data[0];
    return data.getValid(i) ? r.read(data, i) : null;
  });
}

// Rows [start, end) of column `c` of a record batch as DuckDB values.
function columnValues(batch, readers, c, start, end) {
  const data = batch.getChildAt(c).data[0];
  const r = readers[c];
  const out = new Array(end - start);
  for (let i = start; i < end; i++) out[i - start] = data.getValid(i) ? r.read(data, i) : null;
  return out;
}

module.exports = { readerFor, readersFor, rowValues, columnValues, sqlType, quoteIdent, UnsupportedTypeError };
