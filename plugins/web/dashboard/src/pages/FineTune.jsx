// Fine-tuning runs (admins): start one, watch each run's progress bar and stages move with the
// fine_tune.* events over the WebSocket, cancel or resume, and ask the server for a preflight.
// Every route is admin-only and 404s when the fine-tune plugin is not enabled.
import { useCallback, useEffect, useRef, useState } from 'react'
import { get, post } from '../api.js'
import { live } from '../events.js'
import { Badge, Empty, Loading, Problem, duration, when } from '../components.jsx'

const base = '/api/v1/fine-tune'
const stageNames = ['generating_data', 'mining_negatives', 'training', 'evaluating', 'deploying']
const label = (name) => (name ? name.replace(/_/g, ' ') : '—')
const percent = (value) => `${Math.round((value || 0) * 100)}%`

const runTone = { running: 'good', complete: 'good', failed: 'bad', interrupted: 'warn', cancelled: 'neutral' }
const stageTone = { running: 'good', complete: 'good', failed: 'bad', interrupted: 'warn', cancelled: 'neutral',
  pending: 'neutral' }
const canCancel = (run) => run.state === 'running' || run.state === 'interrupted'
const canResume = (run) => run.state === 'failed' || run.state === 'cancelled' || run.state === 'interrupted'

// The stage state a fine_tune.stage event implies (`unhealthy`/`healthy` only change its health).
const stageStates = { started: 'running', complete: 'complete', failed: 'failed', cancelled: 'cancelled',
  interrupted: 'interrupted' }

function seconds(from, to) {
  if (!from) return null
  const start = Date.parse(from)
  const end = to ? Date.parse(to) : Date.now()
  return isNaN(start) || isNaN(end) ? null : Math.max(0, (end - start) / 1000)
}

// Applies one live frame to the list; returns the list unchanged when the frame is not about it.
function apply(runs, frame) {
  const p = frame.payload
  return runs.map((run) => {
    if (run.id !== p.run_id) return run
    const stages = (run.stages || []).map((s) => ({ ...s }))
    const stage = stages.find((s) => s.name === p.stage)
    switch (frame.event_type) {
      case 'fine_tune.progress':
        if (stage && stage.state !== 'complete') { stage.progress = Math.max(stage.progress || 0, p.progress); stage.state = 'running' }
        // Never less: a frame held while the list loaded may be older than what it read.
        return { ...run, stage: p.stage || run.stage, progress: Math.max(run.progress || 0, p.overall ?? 0), stages }
      case 'fine_tune.stage':
        if (stage && stageStates[p.state]) {
          stage.state = stageStates[p.state]
          if (p.state === 'complete') stage.progress = 1
          if (p.state === 'failed' && p.detail) stage.error = p.detail
        }
        if (stage && (p.state === 'unhealthy' || p.state === 'healthy')) stage.health = p.state === 'healthy' ? 'healthy' : 'unresponsive'
        return { ...run, stage: p.stage || run.stage, stages }
      case 'fine_tune.finished':
        return { ...run, state: p.state, reason: p.reason ?? run.reason, last_error: p.error || run.last_error,
          progress: p.state === 'complete' ? 1 : run.progress }
      default:
        return run
    }
  })
}

// A run read from the server, against the one on screen: a read that left before a live event
// arrived must not take the run back (a finished run to running, a bar to less).
const terminal = ['complete', 'failed', 'cancelled']
function merge(local, fetched) {
  if (!local) return fetched
  if (terminal.includes(local.state) && !terminal.includes(fetched.state) && (fetched.resumes || 0) <= (local.resumes || 0)) return local
  if (local.state === 'running' && fetched.state === 'running' && local.stage === fetched.stage && (local.progress || 0) > (fetched.progress || 0)) {
    const stages = (fetched.stages || []).map((s) => {
      const mine = (local.stages || []).find((m) => m.name === s.name)
      return mine && s.state === 'running' && (mine.progress || 0) > (s.progress || 0) ? { ...s, progress: mine.progress } : s
    })
    return { ...fetched, progress: local.progress, stages }
  }
  return fetched
}

function Field({ name, title, hint, value, onChange, invalid, ...rest }) {
  return (
    <div className="field">
      <label htmlFor={`ft-${name}`}>{title}</label>
      <input id={`ft-${name}`} name={name} value={value} onChange={(e) => onChange(name, e.target.value)}
        aria-describedby={`ft-${name}-hint`} aria-invalid={invalid ? 'true' : undefined} {...rest} />
      <span id={`ft-${name}-hint`} className="muted small">{hint}</span>
    </div>
  )
}

const blank = { epochs: '3', learning_rate: '0.00002', batch_size: '16', validation_split: '0.1', options: '{}' }

function StartForm({ onStarted }) {
  const [values, setValues] = useState(blank)
  const [problem, setProblem] = useState(null)
  const [busy, setBusy] = useState(false)
  const change = (name, value) => setValues((v) => ({ ...v, [name]: value }))

  const submit = async (event) => {
    event.preventDefault()
    setProblem(null)
    const body = {}
    for (const key of ['epochs', 'learning_rate', 'batch_size', 'validation_split']) {
      const text = values[key].trim()
      if (text === '') continue // the server's default
      const number = Number(text)
      body[key] = Number.isNaN(number) ? text : number // the server says what is allowed
    }
    if (values.options.trim()) {
      try {
        body.options = JSON.parse(values.options)
      } catch (failure) {
        setProblem({ field: 'options', code: 'invalid_json', detail: `options: not valid JSON (${failure.message})` })
        return
      }
    }
    setBusy(true)
    try {
      const { data } = await post(`${base}/runs`, body)
      onStarted(data)
    } catch (failure) {
      setProblem({ field: failure.problem?.field, code: failure.code, status: failure.status,
        detail: failure.status === 0 ? 'The server cannot be reached; try again.' : failure.message })
    } finally {
      setBusy(false)
    }
  }

  const invalid = (name) => problem && problem.field === name
  return (
    <form className="card start-run" onSubmit={submit} noValidate aria-labelledby="start-run-title">
      <h2 id="start-run-title">Start a run</h2>
      <div className="fields">
        <Field name="epochs" title="Epochs" hint="whole number, 1–1000" type="number" inputMode="numeric"
          value={values.epochs} onChange={change} invalid={invalid('epochs')} />
        <Field name="learning_rate" title="Learning rate" hint="above 0, at most 1" type="text" inputMode="decimal"
          value={values.learning_rate} onChange={change} invalid={invalid('learning_rate')} />
        <Field name="batch_size" title="Batch size" hint="whole number, 1–4096" type="number" inputMode="numeric"
          value={values.batch_size} onChange={change} invalid={invalid('batch_size')} />
        <Field name="validation_split" title="Validation split" hint="from 0 to below 1" type="text" inputMode="decimal"
          value={values.validation_split} onChange={change} invalid={invalid('validation_split')} />
      </div>
      <details className="advanced" open={invalid('options') || undefined}>
        <summary>Stage options</summary>
        <label className="field">
          Options (a JSON object, given to every stage as <code>config.options</code>)
          <textarea name="options" rows="2" spellCheck="false" value={values.options}
            aria-invalid={invalid('options') ? 'true' : undefined} onChange={(e) => change('options', e.target.value)} />
        </label>
      </details>
      <div className="form-row">
        <button type="submit" disabled={busy} data-testid="start-run">{busy ? 'Starting…' : 'Start the run'}</button>
        <button type="button" className="secondary" disabled={busy}
          onClick={() => { setValues(blank); setProblem(null) }}>Defaults</button>
        {problem && (
          <div className="inline-problem" role="alert" data-testid="start-problem">
            <strong>{problem.status === 409 ? 'Cannot start now' : 'Not started'}</strong>{' '}
            <code>{problem.code}</code> {problem.detail}
          </div>
        )}
      </div>
    </form>
  )
}

function Check({ name, check }) {
  if (!check) return null
  return (
    <li data-check={name}>
      <Badge tone={check.skipped ? 'neutral' : check.ok ? 'good' : 'bad'}>{check.skipped ? 'skipped' : check.ok ? 'ok' : 'failed'}</Badge>
      {' '}<strong>{name}</strong> <span className="muted">{check.detail}</span>
      {check.reason && <> <code>{check.reason}</code></>}
      {check.backend && <span className="muted small"> ({check.backend})</span>}
    </li>
  )
}

function Preflight() {
  const [result, setResult] = useState(null)
  const [error, setError] = useState(null)
  const [busy, setBusy] = useState(false)
  const run = async () => {
    setBusy(true)
    setError(null)
    try {
      setResult((await post(`${base}/preflight`)).data)
    } catch (failure) {
      setResult(null)
      setError(failure)
    } finally {
      setBusy(false)
    }
  }
  return (
    <div className="card preflight" data-testid="preflight">
      <div className="title-row">
        <h2>Preflight</h2>
        <button className="secondary" onClick={run} disabled={busy} data-testid="run-preflight">
          {busy ? 'Checking…' : result ? 'Check again' : 'Run preflight'}</button>
      </div>
      {busy && <p className="muted small" aria-busy="true">Running the stage image once as <code>preflight</code>…</p>}
      <Problem error={error} onRetry={run} />
      {!result && !error && !busy && (
        <p className="muted small">Checks that the orchestrator answers, the stage image runs, and GPUs are there
          when the gpu variant needs them — before you start a run.</p>
      )}
      {result && (
        <>
          <p data-testid="preflight-result">
            <Badge tone={result.ok ? 'good' : 'bad'}>{result.ok ? 'Ready to fine-tune' : 'Not ready'}</Badge>{' '}
            <span className="muted small">variant <code>{result.variant}</code>, image <code>{result.image}</code></span>
          </p>
          <ul className="checks">
            {['orchestrator', 'image', 'gpu', ...Object.keys(result.checks || {}).filter((n) => !['orchestrator', 'image', 'gpu'].includes(n))]
              .map((name) => <Check key={name} name={name} check={result.checks?.[name]} />)}
          </ul>
        </>
      )}
    </div>
  )
}

function Stages({ run }) {
  const stages = run.stages?.length ? run.stages : stageNames.map((name) => ({ name, state: 'pending' }))
  return (
    <ol className="stages" aria-label="Stages">
      {stages.map((s) => {
        const tip = [s.attempts > 1 && `${s.attempts} attempts`, s.duration_ms != null && duration(s.duration_ms / 1000),
          s.health === 'unresponsive' && 'health port not answering', s.error].filter(Boolean).join(' · ')
        return (
          <li key={s.name} className={`stage ${s.state}`} data-stage={s.name} data-stage-state={s.state} title={tip}>
            <span className="stage-name">{label(s.name)}</span>
            <span className="stage-detail">
              <Badge tone={stageTone[s.state] || 'neutral'}>{s.state}</Badge>
              {s.state === 'running' && <span className="small"> {percent(s.progress)}</span>}
              {s.duration_ms != null && s.state !== 'running' && <span className="muted small"> {duration(s.duration_ms / 1000)}</span>}
              {s.health === 'unresponsive' && <span className="small warn-text"> not answering</span>}
            </span>
          </li>
        )
      })}
    </ol>
  )
}

function Run({ run, me, now, busy, error, onCancel, onResume }) {
  const done = (run.stages || []).filter((s) => s.state === 'complete').length
  const total = run.stages?.length || stageNames.length
  const elapsed = seconds(run.started_at || run.created_at, run.finished_at || (run.state === 'running' ? new Date(now).toISOString() : run.updated_at))
  const config = run.config || {}
  return (
    <article className="run card" data-run-id={run.id} data-state={run.state} data-testid="run">
      <div className="run-head">
        <span className="mono" title={run.id}>{run.id.slice(0, 12)}</span>
        <Badge tone={runTone[run.state] || 'neutral'}>{run.state}</Badge>
        {run.reason && run.reason !== 'user' && <code className="muted">{run.reason}</code>}
        <span className="muted">{run.state === 'complete' ? 'all stages done' : <>stage <strong>{label(run.stage)}</strong></>}</span>
        <span className="spacer" />
        {canCancel(run) && <button className="secondary" disabled={busy} onClick={() => onCancel(run)}
          data-testid="cancel-run">{busy === 'cancel' ? 'Cancelling…' : 'Cancel'}</button>}
        {canResume(run) && <button disabled={busy} onClick={() => onResume(run)}
          data-testid="resume-run">{busy === 'resume' ? 'Resuming…' : 'Resume'}</button>}
      </div>
      <div className="run-progress">
        <progress className={run.state} value={run.progress || 0} max="1" data-testid="run-progress"
          aria-label={`Run ${run.id.slice(0, 12)} progress`} />
        <span className="percent" data-testid="run-percent">{percent(run.progress)}</span>
        <span className="muted small" data-testid="stages-done">{done} of {total} stages complete</span>
      </div>
      <Stages run={run} />
      <dl className="run-meta">
        <div><dt>Started</dt><dd>{when(run.started_at || run.created_at)}</dd></div>
        <div><dt>{run.finished_at ? 'Finished' : 'Running for'}</dt>
          <dd>{run.finished_at ? when(run.finished_at) : run.state === 'running' ? duration(elapsed) : '—'}</dd></div>
        {run.finished_at && <div><dt>Took</dt><dd>{duration(elapsed)}</dd></div>}
        <div><dt>Config</dt><dd className="small">{config.epochs} epochs · lr {config.learning_rate} · batch {config.batch_size} · split {config.validation_split}</dd></div>
        {run.resumes > 0 && <div><dt>Resumed</dt><dd>{run.resumes}×</dd></div>}
        {run.image && <div><dt>Image</dt><dd className="mono small">{run.image}{run.variant && ` (${run.variant})`}</dd></div>}
        {run.created_by && <div><dt>By</dt><dd>{run.created_by === me.id ? 'you' : <span className="mono" title={run.created_by}>{run.created_by.slice(0, 12)}</span>}</dd></div>}
      </dl>
      {run.last_error && (
        <div className="run-error" data-testid="last-error"><strong>Last error</strong> {run.last_error}</div>
      )}
      {error && (
        <div className="inline-problem" role="alert" data-testid="run-action-problem">
          <strong>{error.status === 409 ? `Cannot ${error.action} this run` : `${error.action} failed`}</strong>{' '}
          <code>{error.code}</code> {error.message}
        </div>
      )}
    </article>
  )
}

export function FineTune({ me }) {
  if (me.role !== 'admin') {
    return (
      <section>
        <h1>Fine-tuning</h1>
        <Empty title="Fine-tuning is for administrators">
          Runs use the server's GPUs and data, so only an admin can see, start, cancel or resume them. You are
          signed in as {me.role}; ask an administrator if you need a run.</Empty>
      </section>
    )
  }
  return <FineTuneRuns me={me} />
}

function FineTuneRuns({ me }) {
  const [runs, setRuns] = useState(null)
  const [cursor, setCursor] = useState('')
  const [error, setError] = useState(null)
  const [busy, setBusy] = useState({}) // run id → 'cancel' | 'resume'
  const [actionErrors, setActionErrors] = useState({}) // run id → error
  const [lastEvent, setLastEvent] = useState(null)
  const [now, setNow] = useState(Date.now())
  const known = useRef(new Set())
  const listing = useRef(false)
  const held = useRef([])

  const load = useCallback(async () => {
    try {
      const { data } = await get(`${base}/runs?limit=20`)
      setRuns((list) => (data.runs || []).map((r) => merge(list?.find((x) => x.id === r.id), r)))
      setCursor(data.next_cursor || '')
      setError(null)
    } catch (failure) {
      setError(failure)
    }
  }, [])
  const more = async () => {
    try {
      const { data } = await get(`${base}/runs?limit=20&cursor=${encodeURIComponent(cursor)}`)
      setRuns((list) => [...list, ...(data.runs || []).filter((r) => !list.some((x) => x.id === r.id))])
      setCursor(data.next_cursor || '')
    } catch (failure) {
      setError(failure)
    }
  }
  // One run read again (timings, attempts, exit codes the events do not carry).
  // Only the newest read of a run is applied (answers can come back out of order).
  const reads = useRef({})
  const refresh = useCallback(async (id) => {
    const ticket = (reads.current[id] = (reads.current[id] || 0) + 1)
    try {
      const { data } = await get(`${base}/runs/${encodeURIComponent(id)}`)
      if (reads.current[id] !== ticket) return
      setRuns((list) => (list ? list.map((r) => (r.id === id ? merge(r, data) : r)) : list))
    } catch { /* the next event or a reload brings it */ }
  }, [])
  useEffect(() => { load() }, [load])
  useEffect(() => { known.current = new Set((runs || []).map((r) => r.id)) }, [runs])

  useEffect(() => {
    live.subscribe(['fine_tune'])
    const off = live.onFrame((frame) => {
      if (frame.channel !== 'fine_tune' || !frame.payload?.run_id) return
      setLastEvent(frame)
      const id = frame.payload.run_id
      if (!known.current.has(id)) {
        // Started elsewhere (or its POST has not answered yet): read the list once, then apply
        // what arrived meanwhile.
        held.current.push(frame)
        if (!listing.current) {
          listing.current = true
          load().finally(() => {
            listing.current = false
            const frames = held.current
            held.current = []
            setRuns((list) => (list ? frames.reduce(apply, list) : list))
            for (const f of frames) if (f.event_type !== 'fine_tune.progress') refresh(f.payload.run_id)
          })
        }
        return
      }
      setRuns((list) => (list ? apply(list, frame) : list))
      if (frame.event_type !== 'fine_tune.progress') refresh(id)
    })
    // Events missed while the socket was down: read the list again once it is back.
    let wasOpen = null
    const offStatus = live.onStatus((status) => {
      if (status === 'open' && wasOpen === false) load()
      if (status === 'open') wasOpen = true
      else if (wasOpen) wasOpen = false
    })
    return () => { off(); offStatus(); live.unsubscribe(['fine_tune']) }
  }, [load, refresh])

  const running = (runs || []).some((r) => r.state === 'running')
  useEffect(() => {
    if (!running) return undefined
    const timer = setInterval(() => setNow(Date.now()), 1000)
    return () => clearInterval(timer)
  }, [running])

  const act = async (run, action) => {
    setBusy((b) => ({ ...b, [run.id]: action }))
    setActionErrors((e) => ({ ...e, [run.id]: null }))
    try {
      const { data } = await post(`${base}/runs/${encodeURIComponent(run.id)}/${action}`)
      reads.current[run.id] = (reads.current[run.id] || 0) + 1 // reads that left before are older than this
      setRuns((list) => list.map((r) => (r.id === run.id ? data : r)))
    } catch (failure) {
      failure.action = action
      setActionErrors((e) => ({ ...e, [run.id]: failure }))
      if (failure.status === 409) refresh(run.id) // its state moved on meanwhile
    } finally {
      setBusy((b) => ({ ...b, [run.id]: null }))
    }
  }

  if (error && error.status === 404) {
    return (
      <section>
        <h1>Fine-tuning</h1>
        <Empty title="Fine-tuning is not enabled on this server">
          An operator can enable the fine-tune plugin (it needs an orchestrator such as orchestrator-docker and
          the stage image); see docs/fine-tune.md. The API answers 404 under /api/v1/fine-tune until then.</Empty>
      </section>
    )
  }
  if (error && error.status === 403) {
    return <section><h1>Fine-tuning</h1><Empty title="Fine-tuning is for administrators">
      The server no longer sees you as an admin; sign in again.</Empty></section>
  }
  return (
    <section className="fine-tune">
      <div className="title-row">
        <h1>Fine-tuning</h1>
        <button className="secondary" onClick={load}>Refresh</button>
      </div>
      <div className="fine-tune-top">
        {/* Events can outrun the POST's answer: a run already listed is newer than that answer. */}
        <StartForm onStarted={(run) => setRuns((list) => (list?.some((r) => r.id === run.id) ? list : [run, ...(list || [])]))} />
        <Preflight />
      </div>
      <h2>Runs</h2>
      {error ? <Problem error={error} onRetry={load} /> : !runs ? <Loading what="fine-tuning runs" /> : runs.length === 0 ? (
        <Empty title="No fine-tuning runs yet">Start one above: it runs five stages (generating data, mining
          negatives, training, evaluating, deploying), each in a hardened container, and its progress shows here
          live. Run the preflight first to check the image.</Empty>
      ) : (
        <div className="runs" data-testid="runs">
          {runs.map((run) => (
            <Run key={run.id} run={run} me={me} now={now} busy={busy[run.id]} error={actionErrors[run.id]}
              onCancel={(r) => act(r, 'cancel')} onResume={(r) => act(r, 'resume')} />
          ))}
          {cursor && <button className="secondary" onClick={more}>Show older runs</button>}
        </div>
      )}
      <p className="muted small" data-testid="last-event">
        {lastEvent ? `Live: ${lastEvent.event_type} at ${when(lastEvent.timestamp)}` : 'Live updates: waiting for events'}
      </p>
    </section>
  )
}
