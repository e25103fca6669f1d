'use strict';
// The front ends of the PondPilot deployment guide ("TLS Configuration"), run for real in front
// of the Flight SQL gateway: nginx terminating TLS with `grpc_pass grpc://localhost:8081;` in a
// `listen 443 ssl http2` server block, and Caddy with
// `reverse_proxy localhost:8081 { transport http { versions h2c } }`. Each config is the guide's,
// with only the ports, the listen address (loopback), the certificate paths and, for Caddy,
// its internal CA instead of ACME (offline) substituted. Through each: the Basic Handshake, a
// refused password, `SELECT 42`, a million-row DoGet, and the guide's HTTP block in front of the
// HTTP API. The kernel comes from kernel_fixture.js, as in gateway_test.js.
//
// nginx and caddy are Debian's (nginx-light, caddy: scripts/deps installs both); each front
// end's tests skip, saying what to install, without it. Both run as the current user, with
// their pid, logs, temporary files and state in a temporary directory, and are stopped at the end.
//
// Run by ctest as flight.frontends; needs SYNTHORG_BIN and SYNTHORG_PLUGIN_BUILD_DIR.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const grpc = require('@grpc/grpc-js');
const { FlightSqlClient, FlightError } = require('./flight_client');
const { expectCode, skipReason, startKernel, freePort, PASSWORD } = require('./kernel_fixture');

const missing = skipReason();
if (missing) {
  test('the Flight SQL front-end suite', { skip: missing }, () => {});
  return;
}

const GRPC_HOST = 'grpc.proxy.example.com';  // the guide's names
const HTTP_HOST = 'proxy.example.com';
const ROWS = 1_000_000;

function onPath(command) {
  for (const dir of (process.env.PATH || '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const candidate = path.join(dir || '.', command);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch { /* next */ }
  }
  return null;
}

// Why nginx cannot play the guide's front end here, or null. The guide needs HTTP/2 over TLS
// and grpc_pass: ngx_http_v2_module and ngx_http_grpc_module.
const NGINX = onPath('nginx');
function nginxProblem() {
  if (!NGINX) return 'nginx is not installed: apt-get install nginx-light (scripts/deps installs it)';
  if (!onPath('openssl')) return 'openssl (for the test certificate) is not installed: apt-get install openssl';
  const version = spawnSync(NGINX, ['-V'], { encoding: 'utf8' });  // nginx -V prints on stderr
  const configure = `${version.stdout}${version.stderr}`;
  if (!/--with-http_ssl_module/.test(configure)) return `${NGINX} has no TLS (ngx_http_ssl_module): install Debian's nginx-light or nginx`;
  if (!/--with-http_v2_module/.test(configure)) return `${NGINX} has no HTTP/2 (ngx_http_v2_module): install Debian's nginx-light or nginx`;
  if (/--without-http_grpc_module/.test(configure)) return `${NGINX} has no grpc_pass (ngx_http_grpc_module): install Debian's nginx (or nginx-full)`;
  return null;
}
const CADDY = onPath('caddy');
const caddyProblem = () => (CADDY ? null : 'caddy is not installed: apt-get install caddy (scripts/deps installs it)');

const problems = { nginx: nginxProblem(), caddy: caddyProblem() };
if (problems.nginx && problems.caddy) {
  test('the Flight SQL front-end suite', { skip: `${problems.nginx}; ${problems.caddy}` }, () => {});
  return;
}

let kernel, dir;
const frontends = [];  // { name, child, port, errors() }

function waitForPort(port, child, name, log) {
  const deadline = Date.now() + 15000;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null || child.signalCode) {
        return reject(new Error(`${name} exited (${child.exitCode ?? child.signalCode}):\n${log()}`));
      }
      const socket = net.connect(port, '127.0.0.1');
      socket.on('connect', () => { socket.destroy(); resolve(); });
      socket.on('error', () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`${name} is not listening on 127.0.0.1:${port}:\n${log()}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

function run(name, command, args, env = {}) {
  let output = '';
  const child = spawn(command, args, { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const frontend = { name, child, log: () => output };
  frontends.push(frontend);
  return frontend;
}

async function stopAll() {
  for (const { child } of frontends) {
    if (child.exitCode !== null || child.signalCode) continue;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(timer);
  }
}

// A self-signed certificate for both of the guide's names, made now (never committed).
function makeCertificate() {
  const key = path.join(dir, 'proxy.key');
  const cert = path.join(dir, 'proxy.crt');
  execFileSync(onPath('openssl'), ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                           '-days', '1', '-subj', `/CN=${GRPC_HOST}`,
                           '-addext', `subjectAltName=DNS:${GRPC_HOST},DNS:${HTTP_HOST}`,
                           '-keyout', key, '-out', cert], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { key, cert };
}

// nginx with the guide's two server blocks (HTTP API and gRPC) on one TLS port.
async function startNginx(tls) {
  const port = await freePort();
  const temp = path.join(dir, 'nginx');
  fs.mkdirSync(temp);
  let user = '';
  if (process.getuid() === 0) {
    // A master running as root would run its workers as nobody, who cannot read our files:
    // name the current user (nginx ignores `user` otherwise).
    const group = fs.readFileSync('/etc/group', 'utf8').split('\n').map((l) => l.split(':'))
      .find((f) => Number(f[2]) === process.getgid());
    user = `user ${os.userInfo().username} ${group ? group[0] : os.userInfo().username};`;
  }
  const conf = path.join(temp, 'nginx.conf');
  fs.writeFileSync(conf, `${user}
worker_processes 1;
daemon off;
pid ${temp}/nginx.pid;
error_log ${temp}/error.log info;
events { worker_connections 1024; }
http {
  access_log ${temp}/access.log;
  client_body_temp_path ${temp}/client_body;
  proxy_temp_path ${temp}/proxy;
  fastcgi_temp_path ${temp}/fastcgi;
  uwsgi_temp_path ${temp}/uwsgi;
  scgi_temp_path ${temp}/scgi;

  # The PondPilot guide's blocks: 443 -> 127.0.0.1:${port}, 8080 -> ${kernel.httpPort}, 8081 -> ${kernel.grpcPort}.
  server {
      listen 127.0.0.1:${port} ssl http2;
      server_name ${HTTP_HOST};

      ssl_certificate ${tls.cert};
      ssl_certificate_key ${tls.key};

      # HTTP endpoints
      location / {
          proxy_pass http://localhost:${kernel.httpPort};
          proxy_set_header Host $host;
          proxy_set_header X-Real-IP $remote_addr;
          proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
          proxy_set_header X-Forwarded-Proto $scheme;
      }
  }

  # gRPC requires separate server block
  server {
      listen 127.0.0.1:${port} ssl http2;
      server_name ${GRPC_HOST};

      ssl_certificate ${tls.cert};
      ssl_certificate_key ${tls.key};

      location / {
          grpc_pass grpc://localhost:${kernel.grpcPort};
      }
  }
}
`);
  const frontend = run('nginx', NGINX, ['-p', temp, '-c', conf, '-e', path.join(temp, 'error.log')]);
  frontend.errors = () => {
    try { return fs.readFileSync(path.join(temp, 'error.log'), 'utf8'); } catch { return ''; }
  };
  await waitForPort(port, frontend.child, 'nginx', () => `${frontend.log()}${frontend.errors()}`);
  return { port, ca: fs.readFileSync(tls.cert), frontend };
}

// Caddy with the guide's two site blocks. "Automatic TLS" would ask Let's Encrypt: offline, the
// same sites get certificates from Caddy's own CA (local_certs), trusted by the client here only.
async function startCaddy() {
  const port = await freePort();
  const home = path.join(dir, 'caddy');
  fs.mkdirSync(home);
  const config = path.join(home, 'Caddyfile');
  fs.writeFileSync(config, `{
	admin off
	local_certs
	skip_install_trust
	auto_https disable_redirects
	storage file_system ${home}/data
	https_port ${port}
}

# The PondPilot guide's blocks: 443 -> 127.0.0.1:${port}, 8080 -> ${kernel.httpPort}, 8081 -> ${kernel.grpcPort}.
${HTTP_HOST}:${port} {
	bind 127.0.0.1
	reverse_proxy localhost:${kernel.httpPort}
}

${GRPC_HOST}:${port} {
	bind 127.0.0.1
	reverse_proxy localhost:${kernel.grpcPort} {
		transport http {
			versions h2c
		}
	}
}
`);
  const frontend = run('caddy', CADDY, ['run', '--config', config, '--adapter', 'caddyfile'],
                       { HOME: home, XDG_DATA_HOME: home, XDG_CONFIG_HOME: home });
  frontend.errors = () => frontend.log().split('\n').filter((l) => /"level":"(error|warn)"/.test(l)).join('\n');
  await waitForPort(port, frontend.child, 'caddy', frontend.log);
  const root = path.join(home, 'data', 'pki', 'authorities', 'local', 'root.crt');
  await new Promise((resolve, reject) => {
    const deadline = Date.now() + 10000;
    const check = () => (fs.existsSync(root) ? resolve()
      : Date.now() > deadline ? reject(new Error(`no ${root}:\n${frontend.log()}`)) : setTimeout(check, 50));
    check();
  });
  return { port, ca: fs.readFileSync(root), frontend };
}

// A Flight SQL client that reaches the gateway as grpc+tls://grpc.proxy.example.com would: TLS
// with that name (SNI and certificate check) and that :authority, at the front end's port.
function clientThrough(front, token) {
  return new FlightSqlClient(`127.0.0.1:${front.port}`, {
    credentials: grpc.credentials.createSsl(front.ca),
    channelOptions: { 'grpc.ssl_target_name_override': GRPC_HOST, 'grpc.default_authority': GRPC_HOST },
    metadata: token ? { authorization: `Bearer ${token}` } : {},
  });
}

function httpsGet(front, target) {
  return new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: front.port, path: target, servername: HTTP_HOST, ca: front.ca,
                headers: { host: HTTP_HOST } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
    }).on('error', reject);
  });
}


// The guide's promise, checked through one front end.
async function throughFrontEnd(front, t) {
  const says = () => `\n--- ${front.frontend.name} ---\n${front.frontend.errors()}\n--- kernel ---\n${kernel.output.slice(-3000)}`;
  try {
    const anonymous = clientThrough(front, null);
    const answer = await anonymous.handshakeBasic('alice', PASSWORD);
    assert.match(answer.authorization || '', /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/, 'the token in the authorization header');
    const token = answer.authorization.slice('Bearer '.length);
    await expectCode(anonymous.handshakeBasic('alice', 'not the password'), 'UNAUTHENTICATED', /invalid username or password/);
    anonymous.close();

    const alice = clientThrough(front, token);
    const started = Date.now();
    const result = await alice.query('SELECT 42 AS answer');
    assert.deepEqual(result.rows.map((r) => Number(r.answer)), [42]);
    t.diagnostic(`SELECT 42 through ${front.frontend.name}: ${Date.now() - started} ms (the first one starts alice's workload)`);

    const streamed = Date.now();
    const stats = await alice.queryStats(`SELECT range AS n FROM range(${ROWS})`, 'n');
    assert.equal(Number(stats.rows), ROWS);
    assert.equal(BigInt(stats.sum), BigInt(ROWS) * BigInt(ROWS - 1) / 2n);
    t.diagnostic(`DoGet ${ROWS} rows through ${front.frontend.name}: ${Date.now() - streamed} ms, ${stats.batches} batches`);
    alice.close();

    // The guide's other block: the HTTP API behind the same port, by name.
    const health = await httpsGet(front, '/api/v1/healthz');
    assert.equal(health.status, 200, health.body);
    assert.equal(JSON.parse(health.body).status, 'ok');
    const complaints = front.frontend.errors().split('\n').filter((l) => /\[(error|warn|crit|alert|emerg)\]|"level":"error"/.test(l));
    for (const line of complaints) t.diagnostic(`${front.frontend.name} logged: ${line}`);
  } catch (error) {
    error.message += says();
    throw error;
  }
}

before(async () => {
  kernel = await startKernel({ users: ['admin', 'alice'], noToken: ['alice'] });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthorg-frontends-'));
});

after(async () => {
  await stopAll();
  for (const { name, child } of frontends)
    assert.ok(child.exitCode !== null || child.signalCode, `${name} (pid ${child.pid}) has stopped`);
  if (kernel) await kernel.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('nginx (the guide\'s listen ssl http2 + grpc_pass): Handshake, SELECT 42, a million-row DoGet',
     { skip: problems.nginx || false }, async (t) => {
  const front = await startNginx(makeCertificate());
  await throughFrontEnd(front, t);
});

test('Caddy (the guide\'s reverse_proxy, transport http versions h2c): Handshake, SELECT 42, a million-row DoGet',
     { skip: problems.caddy || false }, async (t) => {
  const front = await startCaddy();
  await throughFrontEnd(front, t);
});
