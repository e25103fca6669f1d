'use strict';
// The start-up the Flight SQL gateway's end-to-end tests share (gateway_test.js,
// frontends_test.js): a real `synthorg serve` with http-api, auth, store-sqlite, workloads,
// flight-gateway and telemetry on loopback, its users signed in, and a handle on each user's
// workload that works on either orchestrator:
//
//   FLIGHT_ORCHESTRATOR=process (default)  orchestrator-process runs packaging/flightsql-duckdb's
//                                           server.js with this Node; workloads found in /proc
//   FLIGHT_ORCHESTRATOR=docker              orchestrator-docker runs the image
//                                           synthorg/flightsql-duckdb:latest (FLIGHT_IMAGE) with the
//                                           workloads plugin's hardening defaults; workloads found
//                                           by their container_id, through the Docker engine
//
// Needs SYNTHORG_BIN and SYNTHORG_PLUGIN_BUILD_DIR (ctest sets both).
//
//   const { skipReason, startKernel } = require('./kernel_fixture');
//   const kernel = await startKernel({ users: ['alice'], gateway: { max_streams_per_user: 40 } });
//   kernel.grpcPort, kernel.httpPort, kernel.tokens.alice, kernel.output
//   await kernel.request('GET', '/api/v1/workloads', undefined, token)
//   const w = await kernel.workload('alice'); await w.cpuSeconds(); await w.kill();
//   await kernel.stop();   // the kernel, then every workload it started, then its directory

const assert = require('node:assert/strict');
const { FlightError } = require('./flight_client');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFile, execFileSync } = require('node:child_process');
const { findProtoDir } = require('./flight_client');

const ORCHESTRATOR = (process.env.FLIGHT_ORCHESTRATOR || 'process').toLowerCase();
const IMAGE = process.env.FLIGHT_IMAGE || 'synthorg/flightsql-duckdb:latest';
// Docker mode: the container's memory limit (the workloads plugin's memory_limit) and DuckDB's
// own (DUCKDB_MEMORY_LIMIT). The container's limit covers Node, DuckDB and the 64 MB /tmp tmpfs
// DuckDB spills to (tmpfs pages count against it). gateway_test.js's 9-million-row window sort
// needs DuckDB 384MB: at 256MB its spill overflows the 64 MB tmpfs ("failed to offload data
// block ... max_temp_directory_size"). The container then peaks at about 500-600 MiB (page cache
// included): 256m and 128m are OOM-killed, 512m passes but runs at its limit, 640m passes;
// 768m leaves room. (At 512m without DUCKDB_MEMORY_LIMIT, DuckDB takes 80% of the cgroup's
// limit, 409.5 MiB, and the sort alone gets the container OOM-killed.) Process mode keeps 256MB
// and no container limit (its /tmp is the host's disk).
const MEMORY_LIMIT = process.env.FLIGHT_MEMORY_LIMIT || '768m';
const duckdbMemoryLimit = (orchestrator) => process.env.FLIGHT_DUCKDB_MEMORY_LIMIT || (orchestrator === 'docker' ? '384MB' : '256MB');
const DUCKDB_MEMORY_LIMIT = duckdbMemoryLimit(ORCHESTRATOR);
const SERVER = path.resolve(__dirname, '../../packaging/flightsql-duckdb/server.js');
const PASSWORD = 'a long pass phrase 1';
const BUILD_HINT = 'build it with packaging/flightsql-duckdb/build-image (or scripts/services docker, which runs tests/images/build.sh)';

function docker(args, options = {}) {
  return execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000, ...options });
}

function dockerAsync(args) {
  return new Promise((resolve, reject) =>
    execFile('docker', args, { encoding: 'utf8', timeout: 60000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`docker ${args.join(' ')}: ${stderr || error.message}`)) : resolve(stdout)));
}

// Why these tests cannot run here (a sentence saying what to do), or null.
function skipReason(orchestrator = ORCHESTRATOR) {
  try {
    findProtoDir();
  } catch (error) {
    return `${error.message} (they ship in ../shared/contracts/arrow-flight beside a checkout)`;
  }
  if (orchestrator === 'process') return null;
  if (orchestrator !== 'docker') return `FLIGHT_ORCHESTRATOR=${orchestrator} is not known (process or docker)`;
  try {
    docker(['version', '--format', '{{.Server.APIVersion}}']);
  } catch (error) {
    const why = error.code === 'ENOENT' ? 'the docker CLI is not installed (scripts/deps installs docker.io)'
                                        : 'the Docker engine is not reachable; start it with scripts/services docker';
    return `FLIGHT_ORCHESTRATOR=docker: ${why}`;
  }
  try {
    docker(['image', 'inspect', '--format', '{{.Id}}', IMAGE]);
  } catch {
    return `FLIGHT_ORCHESTRATOR=docker: the image ${IMAGE} is absent; ${BUILD_HINT}`;
  }
  return null;
}

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// GET on the Docker Engine API (DOCKER_HOST's unix socket or tcp address, else the default
// socket): for what the CLI does not print, such as a container's cumulative CPU time.
function engineGet(target) {
  const host = process.env.DOCKER_HOST || 'unix:///var/run/docker.sock';
  const where = host.startsWith('unix://') ? { socketPath: host.slice('unix://'.length) }
    : (() => { const url = new URL(host.replace(/^tcp:/, 'http:')); return { host: url.hostname, port: url.port || 2375 }; })();
  return new Promise((resolve, reject) => {
    http.get({ ...where, path: target, timeout: 30000 }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(text))
                                                   : reject(new Error(`GET ${target}: ${res.statusCode} ${text}`))));
    }).on('error', reject);
  });
}

class Kernel {
  constructor(orchestrator) {
    this.orchestrator = orchestrator;
    this.output = '';
    this.tokens = {};
    this.password = PASSWORD;
    this.secret = crypto.randomBytes(48).toString('base64url');
    // Names this kernel's containers (label synthorg.instance), so that runs sharing one engine
    // are told apart and cleaned up by label.
    this.instance = `flight-test-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    this.spawnedPids = new Set();
  }

  request(method, target, body, token) {
    return new Promise((resolve, reject) => {
      const headers = { 'content-type': 'application/json' };
      if (token) headers.authorization = `Bearer ${token}`;
      const req = http.request({ host: '127.0.0.1', port: this.httpPort, method, path: target, headers }, (res) => {
        let text = '';
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => {
          let parsed = null;
          try { parsed = text ? JSON.parse(text) : null; } catch { parsed = text; }
          resolve({ status: res.statusCode, headers: res.headers, body: parsed });
        });
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  async waitFor(predicate, timeoutMs, what) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (await predicate()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${what}\n${this.output.slice(-4000)}`);
  }

  async login(user) {
    const answer = await this.request('POST', '/api/v1/auth/login', { username: user, password: PASSWORD });
    assert.equal(answer.status, 200, `${user} signs in: ${JSON.stringify(answer.body)}`);
    return answer.body.token;
  }

  // The kernel's workload processes (process mode): its descendants running server.js, with the
  // loopback address each listens on and its CPU seconds (user + system), from /proc.
  workloadProcesses() {
    const table = new Map();
    for (const entry of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        table.set(Number(entry), { ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / 100 });
      } catch { /* gone */ }
    }
    const mine = new Set([this.process.pid]);
    for (let grew = true; grew;) {
      grew = false;
      for (const [pid, info] of table)
        if (!mine.has(pid) && mine.has(info.ppid)) { mine.add(pid); grew = true; }
    }
    const result = [];
    for (const pid of mine) {
      if (pid === this.process.pid) continue;
      let cmdline = '', environ = '';
      try {
        cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
      } catch { continue; }
      if (!cmdline.includes('server.js')) continue;
      const host = (environ.split('\0').find((v) => v.startsWith('SYNTHORG_LISTEN_HOST=')) || '').split('=')[1];
      result.push({ pid, host, cpu: table.get(pid).cpu });
      this.spawnedPids.add(pid);
    }
    return result;
  }

  // This kernel's containers (docker mode), running or not.
  containers() {
    return docker(['ps', '-aq', '--no-trunc', '--filter', `label=synthorg.instance=${this.instance}`])
      .split('\n').filter(Boolean);
  }

  // The user's running workload, as the workloads API reports it, with what the tests need of
  // its process or container: cpuSeconds() (cumulative CPU time) and kill() (SIGKILL).
  async workload(user) {
    const list = await this.request('GET', '/api/v1/workloads', undefined, this.tokens[user]);
    const record = list.body.workloads.find((w) => w.state === 'running');
    assert.ok(record, `${user} has a running workload: ${JSON.stringify(list.body)}`);
    if (this.orchestrator === 'docker') {
      const id = record.container_id;
      assert.ok(id, `${user}'s workload names its container: ${JSON.stringify(record)}`);
      assert.equal(docker(['inspect', '--format', '{{index .Config.Labels "synthorg.instance"}}', id]).trim(), this.instance);
      return {
        record,
        containerId: id,
        cpuSeconds: async () => {
          const stats = await engineGet(`/containers/${id}/stats?stream=false&one-shot=true`);
          return stats.cpu_stats.cpu_usage.total_usage / 1e9;
        },
        kill: () => dockerAsync(['kill', '--signal', 'KILL', id]),
      };
    }
    const host = record.endpoints.grpc.host;
    const proc = this.workloadProcesses().find((p) => p.host === host);
    assert.ok(proc, `${user}'s workload process (${host})`);
    return {
      record,
      pid: proc.pid,
      cpuSeconds: async () => {
        const now = this.workloadProcesses().find((p) => p.pid === proc.pid);
        assert.ok(now, `${user}'s workload process ${proc.pid} is still there`);
        return now.cpu;
      },
      kill: async () => process.kill(proc.pid, 'SIGKILL'),
    };
  }

  // For the log (docker mode): each running container's peak memory against its limit, as the
  // engine reports it (cgroup v1's max_usage; cgroup v2 has no peak in the API).
  async memoryReport() {
    const lines = [];
    for (const id of this.containers()) {
      try {
        const { memory_stats: m } = await engineGet(`/containers/${id}/stats?stream=false&one-shot=true`);
        const mib = (bytes) => `${(bytes / 1048576).toFixed(0)} MiB`;
        // As `docker stats` shows it: less the inactive page cache (the image's files read).
        const cache = (m && m.stats && (m.stats.total_inactive_file ?? m.stats.inactive_file)) || 0;
        if (m && m.limit) lines.push(`container ${id.slice(0, 12)}: memory ${mib(m.usage - cache)} in use ` +
                                      `(${mib(m.usage)} with page cache${m.max_usage ? `, peak ${mib(m.max_usage)}` : ''}) ` +
                                      `of ${mib(m.limit)}`);
      } catch { /* not running */ }
    }
    return lines;
  }

  // Docker mode: the engine's oom and die events of this kernel's containers, from start-up on.
  watchEvents() {
    this.events = [];
    this.eventsProcess = spawn('docker', ['events', '--format', '{{json .}}', '--filter', 'type=container',
                                          '--filter', `label=synthorg.instance=${this.instance}`,
                                          '--filter', 'event=oom', '--filter', 'event=die'],
                               { stdio: ['ignore', 'pipe', 'ignore'] });
    let pending = '';
    this.eventsProcess.stdout.on('data', (chunk) => {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop();
      for (const line of lines) {
        try {
          const event = JSON.parse(line);
          this.events.push({ action: event.Action || event.status, id: event.id,
                             exitCode: event.Actor && event.Actor.Attributes && event.Actor.Attributes.exitCode });
        } catch { /* not JSON */ }
      }
    });
  }

  // Containers of this kernel the kernel's memory cgroup killed (docker mode).
  oomKills() {
    return (this.events || []).filter((e) => e.action === 'oom').map((e) => e.id.slice(0, 12));
  }

  async stop() {
    if (this.orchestrator === 'docker' && this.process) {
      for (const line of await this.memoryReport().catch(() => [])) console.log(line);
    }
    if (this.process && this.process.exitCode === null) {
      if (this.orchestrator === 'process') this.workloadProcesses();  // noted while they are its children
      this.process.kill('SIGTERM');
      await this.waitFor(() => this.process.exitCode !== null, 20000, 'the kernel to stop')
        .catch(() => this.process.kill('SIGKILL'));
    }
    for (const pid of this.spawnedPids) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    if (this.eventsProcess) this.eventsProcess.kill();
    if (this.orchestrator === 'docker') {
      const ids = this.containers();
      if (ids.length) docker(['rm', '--force', '--volumes', ...ids]);
      assert.deepEqual(this.containers(), [], `the containers of instance ${this.instance} are removed`);
    }
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// Starts the kernel and signs in: the first user in `users` is the admin (made by setup), the
// others viewers; each gets a token in kernel.tokens unless listed in `noToken`. `gateway` adds
// flight-gateway settings; `env` adds to (or overrides) the kernel's environment.
async function startKernel({ orchestrator = ORCHESTRATOR, users = [], noToken = [], gateway = {}, env = {} } = {}) {
  const BIN = process.env.SYNTHORG_BIN;
  const PLUGINS = process.env.SYNTHORG_PLUGIN_BUILD_DIR;
  assert.ok(BIN && PLUGINS, 'SYNTHORG_BIN and SYNTHORG_PLUGIN_BUILD_DIR are set by ctest');
  const kernel = new Kernel(orchestrator);
  const docker = orchestrator === 'docker';
  const orchestratorPlugin = docker ? 'orchestrator-docker' : 'orchestrator-process';
  kernel.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthorg-flight-'));
  const plugins = path.join(kernel.dir, 'plugins');
  fs.mkdirSync(plugins);
  for (const name of ['http-api', 'auth', 'store-sqlite', 'workloads', orchestratorPlugin, 'flight-gateway', 'telemetry'])
    fs.symlinkSync(path.join(PLUGINS, `${name}.so`), path.join(plugins, `${name}.so`));
  kernel.httpPort = await freePort();
  kernel.grpcPort = await freePort();
  // Process mode: server.js run by this Node, no container to harden. Docker mode: the image's
  // own entrypoint and the plugin's hardening defaults (read-only root, tmpfs /tmp, user
  // 65534:65534, every capability dropped, no-new-privileges, pids_limit).
  const workload = docker
    ? `      image: ${IMAGE}
      memory_limit: ${JSON.stringify(MEMORY_LIMIT)}
      instance: ${kernel.instance}
      stop_on_shutdown: true`
    : `      image: flightsql-duckdb
      command: [${process.execPath}, ${SERVER}]
      memory_limit: "0"
      pids_limit: 0
      user: ""`;
  const gatewayConfig = { address: '127.0.0.1', port: kernel.grpcPort, max_message_bytes: 4194304, ...gateway };
  fs.writeFileSync(path.join(kernel.dir, 'company.yaml'), `company_name: FlightTest
kernel:
  plugin_dirs: [${plugins}]
select: {store: store-sqlite, orchestrator: ${orchestratorPlugin}}
plugins:
  http-api: {config: {address: 127.0.0.1, port: ${kernel.httpPort}}}
  store-sqlite: {config: {path: ${path.join(kernel.dir, 's.db')}}}
  ${orchestratorPlugin}: {config: {${docker ? 'pull_missing: false' : ''}}}
  workloads:
    config:
${workload}
      port: 0
      grpc_port: 8815
      env: {DUCKDB_THREADS: "1", DUCKDB_MEMORY_LIMIT: ${duckdbMemoryLimit(orchestrator)}${docker ? '' : `, FLIGHT_PROTO_DIR: ${findProtoDir()}`}}
      ready_timeout: 30s
      failure_cooldown: 2s
  telemetry: {config: {data_dir: ${kernel.dir}}}
  flight-gateway:
    config: ${JSON.stringify(gatewayConfig)}
`);
  if (docker) kernel.watchEvents();
  kernel.process = spawn(BIN, ['-c', path.join(kernel.dir, 'company.yaml'), 'serve'], {
    env: { ...process.env, SYNTHORG_JWT_SECRET: kernel.secret, SYNTHORG_HTTP_ACCESS_LOG: 'false',
           SYNTHORG_WORKLOADS_REQUESTS_PER_MINUTE: '100000', SYNTHORG_WORKLOADS_BURST_SIZE: '100000', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  kernel.process.stdout.on('data', (d) => (kernel.output += d));
  kernel.process.stderr.on('data', (d) => (kernel.output += d));
  try {
    await kernel.waitFor(() => kernel.output.includes('All plugins started') || kernel.process.exitCode !== null,
                         30000, 'the kernel to start');
    assert.equal(kernel.process.exitCode, null, `the kernel exited:\n${kernel.output}`);
    assert.match(kernel.output, new RegExp(`msg="gRPC server started".*port=${kernel.grpcPort}`),
                 'PondPilot\'s log line, with the port');
    const [admin, ...others] = users;
    if (admin) {
      assert.equal((await kernel.request('POST', '/api/v1/auth/setup', { username: admin, password: PASSWORD })).status, 201);
      kernel.tokens[admin] = await kernel.login(admin);
    }
    for (const user of others) {
      const made = await kernel.request('POST', '/api/v1/users', { username: user, password: PASSWORD, role: 'viewer' },
                                        kernel.tokens[admin]);
      assert.equal(made.status, 201, `${user} is created: ${JSON.stringify(made.body)}`);
      if (!noToken.includes(user)) kernel.tokens[user] = await kernel.login(user);
    }
  } catch (error) {
    await kernel.stop().catch(() => {});
    throw error;
  }
  return kernel;
}

// Awaits a Flight call that must fail with `codeName` (and details matching `pattern`); returns
// the error.
async function expectCode(promise, codeName, pattern) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof FlightError, `a gRPC error, not ${error}`);
    assert.equal(error.codeName, codeName, `${error.codeName}: ${error.details}`);
    if (pattern) assert.match(error.details, pattern);
    return error;
  }
  assert.fail(`expected ${codeName}, the call succeeded`);
}

module.exports = { expectCode, ORCHESTRATOR, IMAGE, MEMORY_LIMIT, DUCKDB_MEMORY_LIMIT, PASSWORD, skipReason, startKernel, freePort, docker };
