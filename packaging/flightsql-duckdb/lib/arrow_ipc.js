'use strict';
// Arrow IPC framing as Flight uses it.
//
// An IPC stream is a sequence of encapsulated messages: 0xFFFFFFFF, an int32 length, that many
// bytes of flatbuffer Message (padded to 8), then the message body (bodyLength bytes, from the
// Message). Flight carries each message in one FlightData: data_header is the flatbuffer, and
// data_body the body. Schemas in FlightInfo, SchemaResult and prepared statement results are
// the encapsulated message itself (continuation, length, flatbuffer).
//
// apache-arrow writes whole IPC streams; here a stream it wrote for one record batch is split
// into its messages, and on the way in FlightData is put back together into a stream that
// apache-arrow's reader decodes. Only public apache-arrow API is used.

const arrow = require('apache-arrow');

const CONTINUATION = 0xffffffff;

function pad8(n) {
  return (n + 7) & ~7;
}

// Flatbuffer Message bytes -> encapsulated message (continuation, length, flatbuffer, padding).
function encapsulate(flatbuffer) {
  const padded = pad8(flatbuffer.byteLength);
  const out = Buffer.alloc(8 + padded);
  out.writeUInt32LE(CONTINUATION, 0);
  out.writeInt32LE(padded, 4);
  out.set(flatbuffer, 8);
  return out;
}

function schemaHeader(schema) {
  return Buffer.from(arrow.Message.encode(arrow.Message.from(schema)));
}

// The schema as Flight puts it in FlightInfo.schema and friends.
function schemaBytes(schema) {
  return encapsulate(schemaHeader(schema));
}

// Walks an IPC stream's bytes; yields { header, body, message } for each message up to the
// end-of-stream marker.
function* splitIpcStream(bytes) {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  while (pos + 4 <= view.length) {
    let length = view.readInt32LE(pos);
    pos += 4;
    if (length === -1) { // continuation marker; the length follows (pre-0.15 streams lack it)
      length = view.readInt32LE(pos);
      pos += 4;
    }
    if (length === 0) return; // end of stream
    const header = view.subarray(pos, pos + length);
    pos += length;
    const message = arrow.Message.decode(header);
    const body = view.subarray(pos, pos + message.bodyLength);
    pos += message.bodyLength;
    yield { header, body, message };
  }
}

// One record batch -> the FlightData fields of its messages (dictionary batches, if the batch
// has dictionaries, then the record batch), without the schema message.
function batchToFlightData(batch) {
  const bytes = arrow.RecordBatchStreamWriter.writeAll([batch]).toUint8Array(true);
  const out = [];
  for (const { header, body, message } of splitIpcStream(bytes)) {
    if (message.isSchema()) continue;
    out.push({ data_header: header, data_body: body });
  }
  return out;
}

// An iterable of FlightData (objects with data_header and data_body) -> async iterable of IPC
// stream bytes. FlightData without a header (a DoPut's descriptor-only first message, or
// app_metadata-only messages) carries no Arrow message and is skipped. `onMessage` sees each
// FlightData first (for descriptors and app_metadata).
async function* flightDataToIpc(source, onMessage) {
  for await (const data of source) {
    if (onMessage) onMessage(data);
    const header = data.data_header;
    if (!header || header.length === 0) continue;
    yield encapsulate(header);
    const message = arrow.Message.decode(header);
    const body = data.data_body || Buffer.alloc(0);
    if (message.bodyLength > 0) {
      // A peer may leave the body's trailing padding off; the reader wants bodyLength bytes.
      if (body.length >= message.bodyLength) {
        yield body.subarray(0, message.bodyLength);
      } else {
        const padded = Buffer.alloc(message.bodyLength);
        padded.set(body, 0);
        yield padded;
      }
    }
  }
  yield Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]); // end of stream
}

// An iterable of FlightData -> an opened apache-arrow AsyncRecordBatchStreamReader (its
// `schema` is set, batches are read as they arrive), or null if the stream held no schema.
async function readFlightData(source, onMessage) {
  const reader = await arrow.RecordBatchReader.from(flightDataToIpc(source, onMessage));
  await reader.open();
  return reader.schema ? reader : null;
}

module.exports = {
  encapsulate, schemaHeader, schemaBytes, splitIpcStream, batchToFlightData,
  flightDataToIpc, readFlightData,
};
