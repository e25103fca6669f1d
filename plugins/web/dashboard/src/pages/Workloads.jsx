// Your workload (every user's, for admins): start, stop, open; states follow the live
// workload.* events over the WebSocket.
import { useCallback, useEffect, useState } from 'react'
import { del, get, post } from '../api.js'
import { live } from '../events.js'
import { Badge, Empty, Loading, Problem, stateTone, when } from '../components.jsx'

export function Workloads({ me }) {
  const admin = me.role === 'admin'
  const [scope, setScope] = useState(admin ? 'all' : 'mine')
  const [items, setItems] = useState(null)
  const [error, setError] = useState(null)
  const [actionError, setActionError] = useState(null)
  const [busy, setBusy] = useState(false)
  const [lastEvent, setLastEvent] = useState(null)

  const load = useCallback(async () => {
    try {
      const query = admin && scope === 'mine' ? `?user=${encodeURIComponent(me.id)}` : ''
      const { data } = await get(`/api/v1/workloads${query}`)
      setItems(data.workloads || data.items || [])
      setError(null)
    } catch (failure) {
      setError(failure)
    }
  }, [admin, scope, me.id])
  useEffect(() => { load() }, [load])

  useEffect(() => {
    live.subscribe(['workload'])
    const off = live.onFrame((frame) => {
      if (frame.channel !== 'workload' || !frame.payload) return
      setLastEvent(frame)
      const { workload_id: id, state } = frame.payload
      setItems((current) => {
        if (!current) return current
        if (!current.some((w) => w.id === id)) {
          load()
          return current
        }
        return current.map((w) => (w.id === id && state ? { ...w, state, reason: frame.payload.reason ?? w.reason } : w))
      })
    })
    return () => { off(); live.unsubscribe(['workload']) }
  }, [load])

  const act = async (work) => {
    setBusy(true)
    setActionError(null)
    try {
      await work()
      await load()
    } catch (failure) {
      setActionError(failure)
    } finally {
      setBusy(false)
    }
  }
  const start = () => act(() => post('/api/v1/workloads'))
  const stop = (id) => act(() => del(`/api/v1/workloads/${encodeURIComponent(id)}`))

  if (error && error.code === 'not_found') {
    return <section><h1>Workloads</h1><Empty title="Workloads are not enabled on this server">
      An operator can enable the workloads plugin with an orchestrator.</Empty></section>
  }
  return (
    <section>
      <div className="title-row">
        <h1>Workloads</h1>
        {admin && (
          <div className="segmented" role="group" aria-label="Whose workloads">
            <button className={scope === 'mine' ? 'on' : ''} onClick={() => setScope('mine')}>Mine</button>
            <button className={scope === 'all' ? 'on' : ''} onClick={() => setScope('all')}>Everyone's</button>
          </div>
        )}
        <button onClick={start} disabled={busy} data-testid="start-workload">
          {busy ? 'Working…' : 'Start my workload'}</button>
      </div>
      <Problem error={actionError} />
      {error ? <Problem error={error} onRetry={load} /> : !items ? <Loading what="workloads" /> : items.length === 0 ? (
        <Empty title="No workloads yet">Start yours: it runs in a sandboxed container of its own, and stops by
          itself when you leave it idle.</Empty>
      ) : (
        <table data-testid="workloads">
          <thead><tr><th>Workload</th>{admin && <th>Owner</th>}<th>State</th><th>Started</th><th>Last used</th><th /></tr></thead>
          <tbody>{items.map((w) => (
            <tr key={w.id} data-state={w.state}>
              <td className="mono">{w.id.slice(0, 12)}</td>
              {admin && <td>{w.owner}</td>}
              <td><Badge tone={stateTone(w.state)}>{w.state}</Badge>{w.reason && <span className="muted"> {w.reason}</span>}
                {w.message && <div className="muted small">{w.message}</div>}</td>
              <td>{when(w.created_at)}</td>
              <td>{when(w.last_used_at)}</td>
              <td className="actions">
                {w.state === 'running' && w.urls?.proxy && <a className="button secondary" href={w.urls.proxy}
                  target="_blank" rel="noreferrer">Open</a>}
                {(w.state === 'running' || w.state === 'starting') &&
                  <button className="secondary" onClick={() => stop(w.id)} disabled={busy}>Stop</button>}
              </td>
            </tr>))}
          </tbody>
        </table>
      )}
      <p className="muted small" data-testid="last-event">
        {lastEvent ? `Live: ${lastEvent.event_type} at ${when(lastEvent.timestamp)}` : 'Live updates: waiting for events'}
      </p>
    </section>
  )
}
