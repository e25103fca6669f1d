// The dashboard in Debian's Chromium (playwright-core, never a downloaded browser) against a
// real `synthorg serve` with http-api, auth, store-sqlite and web — and workloads on the Docker
// engine when it answers: setup → sign in → overview healthy → start a workload and see it
// running, with its event arriving over the WebSocket → fine-tuning (with the fine-tune plugin
// and its test stage image: preflight, a bad field, a run whose progress bar moves to complete
// over the WebSocket, 409 for a second run, cancel, 409 on a resume) → change a setting → sign
// out → a viewer sees fine-tuning is for admins. Screenshots
// of each page go to --artifacts; any CSP violation, page error or failed step fails the test.
//
// node browser_test.mjs --synthorg BIN --plugins DIR [--artifacts DIR] [--chromium PATH]
// Exit 77 (skipped) when Chromium or playwright-core is missing.
import { spawn, execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { createServer as createHttpServer } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'

const here = dirname(fileURLToPath(import.meta.url))
const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, value, i, all) =>
  (i % 2 === 0 ? [...pairs, [value.replace(/^--/, ''), all[i + 1]]] : pairs), []))
const chromiumPath = args.chromium || '/usr/bin/chromium'
const artifacts = args.artifacts || join(tmpdir(), 'synthorg-web-artifacts')
const image = 'synthorg-test/busybox:latest'
const stageImage = 'synthorg-test/fine-tune-stage:latest'

function skip(why) {
  console.log(`SKIPPED: ${why}`)
  process.exit(77)
}

let chromium
try {
  // playwright-core comes with the dashboard's npm packages.
  chromium = createRequire(join(here, '../dashboard/package.json'))('playwright-core').chromium
} catch {
  skip('playwright-core is not installed (build the dashboard: it runs npm install)')
}
try {
  execFileSync(chromiumPath, ['--version'], { stdio: 'ignore' })
} catch {
  skip(`${chromiumPath} is missing (scripts/deps installs Debian's chromium)`)
}
if (!args.synthorg || !args.plugins) {
  console.error('usage: browser_test.mjs --synthorg BIN --plugins DIR [--artifacts DIR]')
  process.exit(2)
}
args.synthorg = resolve(args.synthorg)
args.plugins = resolve(args.plugins)

const freePort = () => new Promise((resolve, reject) => {
  const server = createServer()
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address()
    server.close(() => resolve(port))
  })
  server.on('error', reject)
})

function dockerReady(name = image) {
  try {
    execFileSync('docker', ['image', 'inspect', '--format', 'ok', name], { stdio: 'pipe' })
    return true
  } catch {
    return false
  }
}

const dir = mkdtempSync(join(tmpdir(), 'synthorg-web-'))
mkdirSync(artifacts, { recursive: true })
const [webPort, apiPort] = [await freePort(), await freePort()]
const withWorkloads = process.env.SYNTHORG_WEB_TEST_WORKLOADS !== '0' && dockerReady()
const instance = `webtest-${randomBytes(4).toString('hex')}`
if (!withWorkloads) console.log(`NOTE: ${image} or the Docker engine is missing: the workload step is skipped (scripts/services docker; tests/images/build.sh)`)
// Fine-tuning runs its stages through orchestrator-docker, with the test stage image.
const fineTuneMissing = process.env.SYNTHORG_WEB_TEST_FINE_TUNE === '0' ? 'SYNTHORG_WEB_TEST_FINE_TUNE=0'
  : !withWorkloads ? 'the Docker engine (or synthorg-test/busybox) is missing'
  : !existsSync(join(args.plugins, 'fine-tune.so')) ? `${join(args.plugins, 'fine-tune.so')} is not built`
  : !dockerReady(stageImage) ? `${stageImage} is missing (tests/images/build.sh)` : ''
const withFineTune = !fineTuneMissing
const fineTuneInstance = `${instance}-ft`
if (!withFineTune) console.log(`NOTE: ${fineTuneMissing}: the fine-tune plugin is left out and the fine-tuning run step is SKIPPED (only its "not enabled" state is checked)`)

writeFileSync(join(dir, 'company.yaml'), `company_name: Browser test
kernel:
  plugin_dirs: [${args.plugins}]
select: {store: store-sqlite${withWorkloads ? ', orchestrator: orchestrator-docker' : ''}}
plugins:
  http-api:
    config: {address: 127.0.0.1, port: ${apiPort}}
  store-sqlite:
    config: {path: ${join(dir, 's.db')}}
  auth: {}
  telemetry:
    config: {data_dir: ${join(dir, 'telemetry')}}
  web:
    config: {address: 127.0.0.1, port: ${webPort}, access_log: false}
${withWorkloads ? `  orchestrator-docker:
    config: {pull_missing: false}
  workloads:
    config: {image: "${image}", command: [/bin/busybox, httpd, -f, -p, "8080", -h, /www], port: 8080,
             instance: ${instance}, stop_grace: 0s, stop_on_shutdown: true}
` : ''}${withFineTune ? `  fine-tune:
    config: {cpu_image: "${stageImage}", instance: ${fineTuneInstance}, stop_grace: 1s, health_interval: 300ms,
             memory_limit: 128m, pids_limit: 64}
` : ''}`)

let output = ''
const kernel = spawn(args.synthorg, ['--config', join(dir, 'company.yaml'), 'serve'], {
  env: { ...process.env, SYNTHORG_JWT_SECRET: randomBytes(32).toString('base64url'), SYNTHORG_HTTP_ACCESS_LOG: 'false' },
  stdio: ['ignore', 'pipe', 'pipe'],
})
kernel.stdout.on('data', (d) => { output += d })
kernel.stderr.on('data', (d) => { output += d })

const violations = []
const pageErrors = []
let browser
let currentPage
let failed = false

async function waitForKernel() {
  const deadline = Date.now() + 30000
  while (Date.now() < deadline) {
    if (output.includes('All plugins started')) return
    if (kernel.exitCode !== null) throw new Error(`synthorg serve exited:\n${output}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`synthorg serve did not start in 30 s:\n${output}`)
}

function step(name) {
  console.log(`step: ${name}`)
}

try {
  await waitForKernel()
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  })
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  page.setDefaultTimeout(15000)
  currentPage = page
  // Violations as the page itself sees them, and as the console reports them.
  await page.exposeFunction('__synthorgCspViolation', (text) => violations.push(text))
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__synthorgCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`))
  })
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to (apply|load|execute|connect)/i.test(message.text())) violations.push(message.text())
  })
  page.on('pageerror', (error) => pageErrors.push(error.message))
  const base = `http://127.0.0.1:${webPort}`
  const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true })

  step('a fresh install goes straight to the first-run wizard, which holds to the server\'s password rule')
  await page.goto(base + '/')
  await page.getByRole('heading', { name: 'Welcome to SynthOrg' }).waitFor()
  if (!page.url().endsWith('/setup')) throw new Error(`a fresh install should land on /setup, not ${page.url()}`)
  const minLength = await page.getByLabel('Password', { exact: true }).getAttribute('minlength')
  if (minLength !== '12') throw new Error(`the setup form allows ${minLength}-character passwords; the server wants 12`)
  await page.getByText('At least 12 characters.').waitFor()
  await page.getByLabel('Username').fill('admin')
  await page.getByLabel('Password', { exact: true }).fill('correct-horse-battery-staple')
  await page.getByLabel('Password again').fill('correct-horse-battery-staple')
  await shot('setup')
  await page.getByRole('button', { name: 'Create administrator' }).click()
  await page.getByText('was created').waitFor()
  await page.getByRole('button', { name: 'Continue to sign in' }).click()

  step('once set up, the sign-in page')
  await page.goto(base + '/')
  await page.getByRole('heading', { name: 'Sign in' }).waitFor()
  if (page.url().endsWith('/setup')) throw new Error('set up already: the wizard should not come back')
  await shot('sign-in-empty')

  step('sign in')
  await page.getByLabel('Username').fill('admin')
  await page.getByLabel('Password').fill('wrong-password-here')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByText('That username and password do not match.').waitFor()
  await shot('sign-in-error')
  await page.getByLabel('Password').fill('correct-horse-battery-staple')
  await page.getByRole('button', { name: 'Sign in' }).click()

  step('the overview shows a healthy, ready kernel')
  await page.getByRole('heading', { name: 'Overview' }).waitFor()
  await page.getByTestId('status').getByText('Healthy').waitFor()
  await page.getByTestId('readiness').getByText('Ready', { exact: true }).waitFor()
  await page.getByRole('cell', { name: /^web/ }).first().waitFor()
  await page.getByTestId('live-status').getByText('Live').waitFor()
  // The telemetry plugin runs without an OTLP endpoint: metrics on, tracing off, and no chip
  // saying "telemetry off" beside a running telemetry plugin.
  await page.locator('[data-feature="metrics"]').getByText('on', { exact: true }).waitFor()
  await page.locator('[data-feature="tracing"]').getByText('SYNTHORG_TRACE_OTLP_ENDPOINT').waitFor()
  if (await page.locator('[data-feature="telemetry"]').count()) throw new Error('a "telemetry" chip is back')
  await shot('overview')

  step('every page fits a phone 390 px wide: nothing scrolls the page sideways')
  await page.setViewportSize({ width: 390, height: 844 })
  for (const path of ['/', '/workloads', '/fine-tune', '/settings', '/events']) {
    await page.goto(base + path)
    await page.locator('main h1').first().waitFor()
    const width = await page.evaluate(() => document.documentElement.scrollWidth)
    if (width > 390) throw new Error(`${path} is ${width} px wide on a 390 px phone`)
  }
  await shot('overview-phone')
  await page.setViewportSize({ width: 1280, height: 900 })
  await page.goto(base + '/')
  await page.getByRole('heading', { name: 'Overview' }).waitFor()

  step('workloads')
  await page.getByRole('link', { name: 'Workloads' }).click()
  await page.getByRole('heading', { name: 'Workloads' }).waitFor()
  if (withWorkloads) {
    await page.getByText('No workloads yet').waitFor()
    await page.getByTestId('start-workload').click()
    await page.locator('tr[data-state="running"]').waitFor({ timeout: 60000 })
    // The row was filled in by the POST; the event proves the WebSocket path (web → http-api).
    await page.getByTestId('last-event').getByText(/Live: workload\.(spawned|ready)/).waitFor({ timeout: 30000 })
  } else {
    await page.getByText('Workloads are not enabled on this server').waitFor()
  }
  await shot('workloads')

  step('fine-tuning')
  await page.getByRole('link', { name: 'Fine-tuning' }).click()
  await page.getByRole('heading', { name: 'Fine-tuning' }).waitFor()
  if (withFineTune) {
    await page.getByText('No fine-tuning runs yet').waitFor()
    await page.getByTestId('run-preflight').click()
    await page.getByTestId('preflight-result').getByText('Ready to fine-tune').waitFor({ timeout: 60000 })
    await page.getByTestId('preflight').locator('[data-check="image"]').getByText('ok', { exact: true }).waitFor()

    // The server's 400 detail, next to the form.
    await page.getByLabel('Epochs').fill('0')
    await page.getByTestId('start-run').click()
    await page.getByTestId('start-problem').getByText(/epochs: 0 is not allowed/).waitFor()

    // A run, slowed down so that the bar is seen moving; everything after the POST comes live.
    await page.getByLabel('Epochs').fill('2')
    await page.getByText('Stage options').click()
    await page.getByLabel(/^Options/).fill('{"sleep": "0.4"}')
    await page.evaluate(() => { window.__synthorgNoReload = true })
    await page.getByTestId('start-run').click()
    const run = page.getByTestId('run').first()
    await run.waitFor()
    const seen = []
    let midShot = false
    for (const end = Date.now() + 120000; ;) {
      const now = await run.evaluate((el) => ({ state: el.dataset.state, value: el.querySelector('progress').value }))
      if (seen[seen.length - 1] !== now.value) seen.push(now.value)
      if (!midShot && now.value >= 0.4 && now.value <= 0.8) {
        midShot = true
        await shot('fine-tune-running')
      }
      if (now.state === 'complete') break
      if (now.state !== 'running') throw new Error(`the run became ${now.state}; its bar went ${seen.join(' → ')}`)
      if (Date.now() > end) throw new Error(`the run did not complete in 120 s; its bar went ${seen.join(' → ')}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    console.log(`  progress bar: ${seen.map((v) => v.toFixed(2)).join(' → ')}`)
    const between = seen.filter((v) => v > 0 && v < 1)
    if (between.length < 5) throw new Error(`the progress bar did not move step by step: ${seen.join(' → ')}`)
    if (seen.some((v, i) => i > 0 && v < seen[i - 1])) throw new Error(`the progress bar went back: ${seen.join(' → ')}`)
    if (seen[seen.length - 1] !== 1) throw new Error(`a complete run's bar is at ${seen[seen.length - 1]}`)
    if (!(await page.evaluate(() => window.__synthorgNoReload === true))) throw new Error('the page was reloaded')
    await page.getByTestId('last-event').getByText(/Live: fine_tune\.(finished|stage)/).waitFor()
    await run.getByTestId('stages-done').getByText('5 of 5 stages complete').waitFor()
    await run.locator('[data-stage="deploying"][data-stage-state="complete"]').waitFor()
    await shot('fine-tune')

    // One active run at a time here: a second answers 409, shown by the form; then cancel.
    await page.getByLabel(/^Options/).fill('{"hang_stage": "generating_data"}')
    await page.getByTestId('start-run').click()
    const hanging = page.locator('[data-testid="run"][data-state="running"]')
    await hanging.locator('[data-stage="generating_data"][data-stage-state="running"]').waitFor({ timeout: 30000 })
    await page.getByTestId('start-run').click()
    await page.getByTestId('start-problem').getByText('too_many_active_runs').waitFor()
    await hanging.getByTestId('cancel-run').click()
    const cancelled = page.locator('[data-testid="run"][data-state="cancelled"]')
    await cancelled.waitFor({ timeout: 30000 })
    // Resuming it while another run is active: the 409 shows on the run itself.
    await page.getByTestId('start-run').click()
    await hanging.locator('[data-stage="generating_data"][data-stage-state="running"]').waitFor({ timeout: 30000 })
    await cancelled.getByTestId('resume-run').click()
    await cancelled.getByTestId('run-action-problem').getByText('too_many_active_runs').waitFor()
    await cancelled.getByTestId('run-action-problem').getByText('Cannot resume this run').waitFor()
    await shot('fine-tune-conflict')
    await hanging.getByTestId('cancel-run').click()
    await page.locator('[data-testid="run"][data-state="running"]').waitFor({ state: 'detached', timeout: 30000 })
  } else {
    console.log(`SKIPPED STEP: a fine-tuning run (${fineTuneMissing})`)
    await page.getByText('Fine-tuning is not enabled on this server').waitFor()
  }

  step('change a setting, with its ETag')
  await page.getByRole('link', { name: 'Settings' }).click()
  const row = page.locator('tr[data-setting="http.max_connections"]')
  await row.waitFor()
  await row.getByRole('button', { name: 'Edit' }).click()
  await row.locator('input[name="value"]').fill('4321')
  await row.getByRole('button', { name: 'Save' }).click()
  await row.getByTestId('value').getByText('4321').waitFor()
  await row.getByText('stored').waitFor()
  await shot('settings')

  step('a page from another origin reaches the API only once its origin is allowed (CORS, real preflights)')
  {
    // Another origin: a page of our own on another loopback port, with no CSP of its own.
    const other = createHttpServer((request, response) => {
      response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>elsewhere</title>')
    })
    await new Promise((r) => other.listen(0, '127.0.0.1', r))
    const origin = `http://127.0.0.1:${other.address().port}`
    const elsewhere = await browser.newPage()
    try {
      await elsewhere.goto(`${origin}/`)
      const call = (headers) => elsewhere.evaluate(async ({ url, headers }) => {
        try {
          const response = await fetch(url, { headers })
          return { status: response.status, requestId: response.headers.get('x-request-id') }
        } catch (error) {
          return { blocked: String(error) }
        }
      }, { url: `http://127.0.0.1:${apiPort}/api/v1/auth/me`, headers })
      const before = await call({ authorization: 'Bearer not-a-token' })
      if (!before.blocked) throw new Error(`with no origin allowed the browser read an answer: ${JSON.stringify(before)}`)
      const saved = await page.evaluate(async (value) => (await fetch('/api/v1/settings/api/cors_allowed_origins', {
        method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ value }) })).status, [origin])
      if (saved !== 200) throw new Error(`saving api.cors_allowed_origins answered ${saved}`)
      let after
      for (let i = 0; i < 50; i++) {
        after = await call({ authorization: 'Bearer not-a-token' })  // preflighted: a non-safelisted header
        if (!after.blocked) break
        await new Promise((r) => setTimeout(r, 100))
      }
      if (after.status !== 401 || !after.requestId)
        throw new Error(`once allowed, the browser should read the 401 and its X-Request-Id: ${JSON.stringify(after)}`)
      const odd = await call({ 'x-not-read-here': '1' })
      if (!odd.blocked) throw new Error(`a header the API does not read passed the preflight: ${JSON.stringify(odd)}`)
    } finally {
      await elsewhere.close()
      other.close()
      await page.evaluate(() => fetch('/api/v1/settings/api/cors_allowed_origins', { method: 'DELETE' }))
    }
  }

  step('the live event log')
  await page.getByRole('link', { name: 'Events' }).click()
  await page.getByText('Connected').waitFor()
  if (withWorkloads) {
    // Stop the workload from the API (same cookie) and watch its event arrive.
    await page.evaluate(async () => {
      const list = await (await fetch('/api/v1/workloads')).json()
      for (const w of list.workloads) await fetch(`/api/v1/workloads/${w.id}`, { method: 'DELETE' })
    })
    await page.getByTestId('event-log').getByText('workload.stopped').waitFor({ timeout: 30000 })
  }
  await shot('events')

  // A viewer for the last step, made with the admin's cookie.
  const created = await page.evaluate(async () => (await fetch('/api/v1/users', { method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'viewer', password: 'viewer-pass-phrase-long-enough', role: 'viewer' }) })).status)
  if (created !== 201) throw new Error(`creating a viewer answered ${created}`)

  step('sign out')
  await page.getByRole('button', { name: 'Sign out' }).click()
  await page.getByRole('heading', { name: 'Sign in' }).waitFor()
  const me = await page.evaluate(async () => (await fetch('/api/v1/auth/me')).status)
  if (me !== 401) throw new Error(`after sign-out /api/v1/auth/me answered ${me}, not 401`)

  step('a viewer sees that fine-tuning is for administrators')
  await page.getByLabel('Username').fill('viewer')
  await page.getByLabel('Password').fill('viewer-pass-phrase-long-enough')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('heading', { name: 'Overview' }).waitFor()
  await page.getByRole('link', { name: 'Fine-tuning' }).click()
  await page.getByText('Fine-tuning is for administrators').waitFor()
  await page.getByRole('button', { name: 'Sign out' }).click()
  await page.getByRole('heading', { name: 'Sign in' }).waitFor()

  if (violations.length) throw new Error(`CSP violations:\n${violations.join('\n')}`)
  if (pageErrors.length) throw new Error(`page errors:\n${pageErrors.join('\n')}`)
  console.log(`PASSED; screenshots in ${artifacts}`)
} catch (error) {
  failed = true
  console.error(`FAILED: ${error.stack || error}`)
  if (currentPage) await currentPage.screenshot({ path: join(artifacts, 'failure.png'), fullPage: true }).catch(() => {})
  if (violations.length) console.error(`CSP violations:\n${violations.join('\n')}`)
  console.error(`--- synthorg output (last 4 KiB) ---\n${output.slice(-4096)}`)
} finally {
  if (browser) await browser.close().catch(() => {})
  kernel.kill('SIGTERM')
  await new Promise((resolve) => {
    const timer = setTimeout(() => { kernel.kill('SIGKILL'); resolve() }, 15000)
    kernel.on('exit', () => { clearTimeout(timer); resolve() })
    if (kernel.exitCode !== null) { clearTimeout(timer); resolve() }
  })
  for (const label of withWorkloads ? [instance, fineTuneInstance] : []) {
    try {
      const ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=synthorg.instance=${label}`]).toString().trim()
      if (ids) execFileSync('docker', ['rm', '-f', ...ids.split(/\s+/)], { stdio: 'ignore' })
    } catch { /* the engine went away: nothing to clean */ }
  }
  rmSync(dir, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)
