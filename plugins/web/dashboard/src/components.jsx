// Small pieces every page uses: the problem banner, empty and loading states, badges.
export function Problem({ error, onRetry }) {
  if (!error) return null
  const offline = error.status === 0
  return (
    <div className="problem" role="alert">
      <strong>{offline ? 'The server cannot be reached' : `Something went wrong (${error.code})`}</strong>
      <p>{offline ? 'Check that the kernel is running, then try again.' : error.message}</p>
      {onRetry && (
        <button className="secondary" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  )
}

export function Empty({ title, children }) {
  return (
    <div className="empty">
      <strong>{title}</strong>
      {children && <p>{children}</p>}
    </div>
  )
}

export function Loading({ what }) {
  return <div className="loading" aria-busy="true">Loading {what}…</div>
}

export function Badge({ tone = 'neutral', children }) {
  return <span className={`badge ${tone}`}>{children}</span>
}

export function stateTone(state) {
  return { running: 'good', ready: 'good', up: 'good', ok: 'good', healthy: 'good', started: 'good',
    starting: 'warn', stopped: 'neutral', failed: 'bad', down: 'bad' }[state] || 'neutral'
}

export function duration(seconds) {
  if (seconds == null) return '—'
  const s = Math.floor(seconds)
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60)
  if (d) return `${d} d ${h} h`
  if (h) return `${h} h ${m} min`
  if (m) return `${m} min ${s % 60} s`
  return `${s} s`
}

export function when(iso) {
  if (!iso) return '—'
  const date = new Date(iso)
  return isNaN(date) ? iso : date.toLocaleString()
}
