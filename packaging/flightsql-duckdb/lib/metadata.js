'use strict';
// Flight SQL metadata results: catalogs, database schemas, tables, table types and SqlInfo.
//
// Their Arrow schemas are fixed by FlightSql.proto (names, types and nullability), so the
// batches are built here from plain JS values rather than converted from a DuckDB result,
// whose columns would all be nullable.

const arrow = require('apache-arrow');
const ipc = require('./arrow_ipc');
const { fieldFor } = require('./duck_to_arrow');
const { quoteIdent } = require('./arrow_to_duck');

const { Field, Utf8, Binary, Uint32, Int32, Int64, Bool, List, Struct, Map_, DenseUnion, Schema } = arrow;

const utf8 = (name, nullable) => new Field(name, new Utf8(), nullable);

const SCHEMAS = {
  CommandGetCatalogs: new Schema([utf8('catalog_name', false)]),
  CommandGetDbSchemas: new Schema([utf8('catalog_name', true), utf8('db_schema_name', false)]),
  CommandGetTables: new Schema([
    utf8('catalog_name', true), utf8('db_schema_name', true), utf8('table_name', false), utf8('table_type', false),
  ]),
  CommandGetTablesWithSchema: new Schema([
    utf8('catalog_name', true), utf8('db_schema_name', true), utf8('table_name', false), utf8('table_type', false),
    new Field('table_schema', new Binary(), false),
  ]),
  CommandGetTableTypes: new Schema([utf8('table_type', false)]),
};

// CommandGetSqlInfo's value column: a dense union whose members (and their type ids 0..5) are
// those listed in FlightSql.proto, in that order.
const SQL_INFO_MEMBERS = ['string_value', 'bool_value', 'bigint_value', 'int32_bitmask', 'string_list', 'int32_to_int32_list_map'];
const SQL_INFO_UNION = new DenseUnion([0, 1, 2, 3, 4, 5], [
  new Field('string_value', new Utf8(), false),
  new Field('bool_value', new Bool(), false),
  new Field('bigint_value', new Int64(), false),
  new Field('int32_bitmask', new Int32(), false),
  new Field('string_list', new List(new Field('item', new Utf8(), true)), false),
  new Field('int32_to_int32_list_map', new Map_(new Field('entries', new Struct([
    new Field('key', new Int32(), false),
    new Field('value', new List(new Field('item', new Int32(), true)), true),
  ]), false), false), false),
]);
SCHEMAS.CommandGetSqlInfo = new Schema([
  new Field('info_name', new Uint32(), false),
  new Field('value', SQL_INFO_UNION, false),
]);

// Table types this server reports (DuckDB base tables and views).
const TABLE_TYPES = ['TABLE', 'VIEW'];

// ---- small builders ------------------------------------------------------------------------

// JS values -> one Arrow Data (null and undefined are nulls).
function column(type, values) {
  const builder = arrow.makeBuilder({ type, nullValues: [null, undefined] });
  for (const v of values) builder.append(v);
  return builder.finish().flush();
}

function batchOf(schema, columns) {
  const length = columns.length ? columns[0].length : 0;
  const children = schema.fields.map((f, k) => column(f.type, columns[k]));
  return new arrow.RecordBatch(schema, arrow.makeData({ type: new Struct(schema.fields), length, nullCount: 0, children }));
}

// Flight SQL filter patterns use SQL LIKE's % and _ with no escape character.
function likeClause(column, pattern, params) {
  if (pattern == null) return '';
  params.push(pattern);
  return ` AND ${column} LIKE ?`;
}

// ---- the commands --------------------------------------------------------------------------

// Databases other than DuckDB's internal ones (system, temp).
const USER_DATABASES = 'SELECT database_name FROM duckdb_databases() WHERE NOT internal';

async function catalogs(conn) {
  const r = await conn.runAndReadAll(`${USER_DATABASES} ORDER BY database_name`);
  return batchOf(SCHEMAS.CommandGetCatalogs, [r.getColumnsJS()[0] || []]);
}

async function dbSchemas(conn, cmd) {
  const params = [];
  let sql = `SELECT database_name, schema_name FROM duckdb_schemas() WHERE database_name IN (${USER_DATABASES})`;
  if (cmd.catalog != null) {
    params.push(cmd.catalog);
    sql += ' AND database_name = ?';
  }
  sql += likeClause('schema_name', cmd.db_schema_filter_pattern, params);
  sql += ' ORDER BY database_name, schema_name';
  const rows = (await conn.runAndReadAll(sql, params)).getRowsJS();
  return batchOf(SCHEMAS.CommandGetDbSchemas, [rows.map((r) => r[0]), rows.map((r) => r[1])]);
}

async function tableRows(conn, cmd) {
  const params = [];
  let where = '';
  if (cmd.catalog != null) {
    params.push(cmd.catalog);
    where += ' AND database_name = ?';
  }
  where += likeClause('schema_name', cmd.db_schema_filter_pattern, params);
  where += likeClause('name', cmd.table_name_filter_pattern, params);
  const types = (cmd.table_types || []).filter((t) => TABLE_TYPES.includes(t));
  if (cmd.table_types && cmd.table_types.length) {
    if (!types.length) return [];
    where += ` AND table_type IN (${types.map(() => '?').join(', ')})`;
    params.push(...types);
  }
  const sql = `SELECT * FROM (
      SELECT database_name, schema_name, table_name AS name, 'TABLE' AS table_type FROM duckdb_tables() WHERE NOT internal
      UNION ALL
      SELECT database_name, schema_name, view_name AS name, 'VIEW' AS table_type FROM duckdb_views() WHERE NOT internal
    ) WHERE database_name IN (${USER_DATABASES})${where}
    ORDER BY database_name, schema_name, name, table_type`;
  return (await conn.runAndReadAll(sql, params)).getRowsJS();
}

// A table's columns as an IPC-encapsulated Arrow schema, with the Flight SQL column metadata
// that can be known without reading the table.
async function tableSchemaBytes(conn, catalog, schema, table) {
  const prepared = await conn.prepare(`SELECT * FROM ${quoteIdent(catalog)}.${quoteIdent(schema)}.${quoteIdent(table)}`);
  try {
    const fields = [];
    for (let i = 0; i < prepared.columnCount; i++) {
      const f = fieldFor(prepared.columnName(i), prepared.columnType(i));
      f.metadata.set('ARROW:FLIGHT:SQL:CATALOG_NAME', catalog);
      f.metadata.set('ARROW:FLIGHT:SQL:DB_SCHEMA_NAME', schema);
      f.metadata.set('ARROW:FLIGHT:SQL:TABLE_NAME', table);
      fields.push(f);
    }
    return ipc.schemaBytes(new Schema(fields));
  } finally {
    prepared.destroySync();
  }
}

async function tables(conn, cmd) {
  const rows = await tableRows(conn, cmd);
  const cols = [0, 1, 2, 3].map((k) => rows.map((r) => r[k]));
  if (!cmd.include_schema) return batchOf(SCHEMAS.CommandGetTables, cols);
  const schemas = [];
  for (const r of rows) schemas.push(await tableSchemaBytes(conn, r[0], r[1], r[2]));
  return batchOf(SCHEMAS.CommandGetTablesWithSchema, [...cols, schemas]);
}

function tableTypes() {
  return batchOf(SCHEMAS.CommandGetTableTypes, [[...TABLE_TYPES].sort()]);
}

// ---- SqlInfo -------------------------------------------------------------------------------

// The SqlInfo ids answered (FlightSql.proto, enum SqlInfo) and the union member each uses.
async function sqlInfoValues(conn, server) {
  const keywords = (await conn.runAndReadAll('SELECT keyword_name FROM duckdb_keywords() ORDER BY 1')).getColumnsJS()[0];
  return new Map([
    [0, ['string_value', server.name]], // FLIGHT_SQL_SERVER_NAME
    [1, ['string_value', server.version]], // FLIGHT_SQL_SERVER_VERSION
    [2, ['string_value', server.arrowVersion]], // FLIGHT_SQL_SERVER_ARROW_VERSION
    [3, ['bool_value', server.readOnly]], // FLIGHT_SQL_SERVER_READ_ONLY
    [4, ['bool_value', true]], // FLIGHT_SQL_SERVER_SQL
    [5, ['bool_value', false]], // FLIGHT_SQL_SERVER_SUBSTRAIT
    [8, ['int32_bitmask', 0]], // FLIGHT_SQL_SERVER_TRANSACTION: SQL_SUPPORTED_TRANSACTION_NONE
    [9, ['bool_value', true]], // FLIGHT_SQL_SERVER_CANCEL
    [10, ['bool_value', !server.readOnly]], // FLIGHT_SQL_SERVER_BULK_INGESTION
    [11, ['bool_value', false]], // FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED
    [100, ['int32_bitmask', server.statementTimeoutMs]], // FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT
    [101, ['int32_bitmask', 0]], // FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT
    [500, ['bool_value', false]], // SQL_DDL_CATALOG
    [501, ['bool_value', true]], // SQL_DDL_SCHEMA
    [502, ['bool_value', true]], // SQL_DDL_TABLE
    [503, ['int32_bitmask', 1]], // SQL_IDENTIFIER_CASE: SQL_CASE_SENSITIVITY_CASE_INSENSITIVE
    [504, ['string_value', '"']], // SQL_IDENTIFIER_QUOTE_CHAR
    [505, ['int32_bitmask', 1]], // SQL_QUOTED_IDENTIFIER_CASE: case insensitive too, in DuckDB
    [506, ['bool_value', true]], // SQL_ALL_TABLES_ARE_SELECTABLE
    [507, ['int32_bitmask', 3]], // SQL_NULL_ORDERING: SQL_NULLS_SORTED_AT_END (DuckDB's default)
    [508, ['string_list', keywords]], // SQL_KEYWORDS
  ]);
}

// `requested`: the ids asked for (all when empty). Ids this server does not know are left out.
async function sqlInfo(conn, requested, server) {
  const known = await sqlInfoValues(conn, server);
  const ids = requested && requested.length ? requested.filter((id) => known.has(id)) : [...known.keys()];
  const members = SQL_INFO_MEMBERS.map(() => []);
  const typeIds = new Int8Array(ids.length);
  const valueOffsets = new Int32Array(ids.length);
  ids.forEach((id, i) => {
    const [member, value] = known.get(id);
    const k = SQL_INFO_MEMBERS.indexOf(member);
    typeIds[i] = k;
    valueOffsets[i] = members[k].length;
    members[k].push(value);
  });
  const children = SQL_INFO_UNION.children.map((f, k) => column(f.type, members[k]));
  const value = arrow.makeData({ type: SQL_INFO_UNION, length: ids.length, nullCount: 0, typeIds, valueOffsets, children });
  const infoName = column(new Uint32(), ids);
  const schema = SCHEMAS.CommandGetSqlInfo;
  return new arrow.RecordBatch(schema, arrow.makeData({
    type: new Struct(schema.fields), length: ids.length, nullCount: 0, children: [infoName, value],
  }));
}

function schemaFor(name, cmd) {
  if (name === 'CommandGetTables' && cmd && cmd.include_schema) return SCHEMAS.CommandGetTablesWithSchema;
  return SCHEMAS[name];
}

// name -> async (conn, cmd, server) -> RecordBatch
const COMMANDS = {
  CommandGetCatalogs: (conn) => catalogs(conn),
  CommandGetDbSchemas: (conn, cmd) => dbSchemas(conn, cmd),
  CommandGetTables: (conn, cmd) => tables(conn, cmd),
  CommandGetTableTypes: () => tableTypes(),
  CommandGetSqlInfo: (conn, cmd, server) => sqlInfo(conn, cmd.info, server),
};

module.exports = { COMMANDS, SCHEMAS, TABLE_TYPES, schemaFor };
