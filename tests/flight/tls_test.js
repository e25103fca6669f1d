'use strict';
// The gateway with its own certificate (tls_cert_file, tls_key_file) instead of h2c, and the
// per-user rate limit on calls, from a client's side. Run by ctest as flight.tls.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const grpc = require('@grpc/grpc-js');
const { FlightSqlClient } = require('./flight_client');
const { expectCode, skipReason, startKernel, PASSWORD } = require('./kernel_fixture');

const missing = skipReason();
if (missing) {
  test('the Flight SQL gateway over TLS', { skip: missing }, () => {});
  return;
}

let kernel, dir, cert;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthorg-flight-tls-'));
  const key = path.join(dir, 'gateway.key');
  cert = path.join(dir, 'gateway.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                           '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
                           '-keyout', key, '-out', cert], { stdio: ['ignore', 'ignore', 'pipe'] });
  // Four calls a burst, one a minute after that: two queries (GetFlightInfo + DoGet each).
  kernel = await startKernel({
    users: ['admin', 'alice'],
    gateway: { tls_cert_file: cert, tls_key_file: key },
    env: { SYNTHORG_WORKLOADS_REQUESTS_PER_MINUTE: '1', SYNTHORG_WORKLOADS_BURST_SIZE: '4' },
  });
});

after(async () => {
  if (kernel) await kernel.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const tls = (token) => new FlightSqlClient(`localhost:${kernel.grpcPort}`, {
  credentials: grpc.credentials.createSsl(fs.readFileSync(cert)),
  metadata: token ? { authorization: `Bearer ${token}` } : {},
});

test('over TLS: the Basic Handshake, then a query; plaintext is refused', async () => {
  assert.match(kernel.output, /msg="gRPC server started".* tls=true/);
  const anonymous = tls(null);
  const answer = await anonymous.handshakeBasic('alice', PASSWORD);
  anonymous.close();
  const token = answer.authorization.slice('Bearer '.length);
  const alice = tls(token);
  assert.deepEqual((await alice.query('SELECT 42 AS answer')).rows.map((r) => Number(r.answer)), [42]);
  alice.close();
  const plain = new FlightSqlClient(`127.0.0.1:${kernel.grpcPort}`, { metadata: { authorization: `Bearer ${token}` } });
  await expectCode(plain.query('SELECT 1'), 'UNAVAILABLE');
  plain.close();
  kernel.tokens.alice = token;
});

test('the per-user rate limit: RESOURCE_EXHAUSTED with RetryInfo, and other users go on', async () => {
  const alice = tls(kernel.tokens.alice);
  // The first test's query took two of the four; this one the other two.
  assert.equal(Number((await alice.query('SELECT 1 AS one')).rows[0].one), 1);
  const error = await expectCode(alice.query('SELECT 2'), 'RESOURCE_EXHAUSTED', /rate limit.*retry in \d+ s/);
  const details = error.metadata['grpc-status-details-bin'];
  assert.ok(details && Buffer.from(details).includes(Buffer.from('type.googleapis.com/google.rpc.RetryInfo')),
            'google.rpc.RetryInfo in grpc-status-details-bin');
  alice.close();
  const admin = tls(kernel.tokens.admin);
  assert.equal(Number((await admin.query('SELECT 3 AS three')).rows[0].three), 3, 'each user has a bucket of their own');
  admin.close();
});
