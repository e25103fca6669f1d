// The live event log: pick channels, watch frames arrive, pause; reconnects by itself.
import { useEffect, useRef, useState } from 'react'
import { live } from '../events.js'
import { Empty, when } from '../components.jsx'

const channels = [
  { name: 'workload', role: 'viewer' },
  { name: 'fine_tune', role: 'viewer' },
  { name: 'plugin', role: 'operator' },
  { name: 'settings', role: 'admin' },
  { name: 'service', role: 'admin' },
]
const rank = { viewer: 0, operator: 1, admin: 2 }
const limit = 500

export function Events({ me }) {
  const allowed = channels.filter((c) => rank[me.role] >= rank[c.role]).map((c) => c.name)
  const [selected, setSelected] = useState(allowed)
  const [frames, setFrames] = useState([])
  const [paused, setPaused] = useState(false)
  const [status, setStatus] = useState('idle')
  const [detail, setDetail] = useState('')
  const pausedRef = useRef(paused)
  pausedRef.current = paused

  useEffect(() => live.onStatus((next, why) => { setStatus(next); setDetail(why || '') }), [])
  useEffect(() => {
    live.subscribe(selected)
    return () => live.unsubscribe(selected)
  }, [selected])
  useEffect(() => live.onFrame((frame) => {
    if (!frame.event_type || pausedRef.current) return
    setFrames((list) => [frame, ...list].slice(0, limit))
  }), [])

  const toggle = (name) => setSelected((list) => (list.includes(name) ? list.filter((c) => c !== name) : [...list, name]))
  const shown = frames.filter((f) => selected.includes(f.channel))

  return (
    <section>
      <div className="title-row">
        <h1>Events</h1>
        <span className={`live ${status}`}>{status === 'open' ? 'Connected' : status}</span>
        {status !== 'open' && <button className="secondary" onClick={() => live.reconnect()}>Reconnect now</button>}
        <button className="secondary" onClick={() => setPaused(!paused)}>{paused ? 'Resume' : 'Pause'}</button>
        <button className="secondary" onClick={() => setFrames([])}>Clear</button>
      </div>
      {detail && status !== 'open' && <p className="muted small">{detail}</p>}
      <fieldset className="channels"><legend>Channels</legend>
        {channels.map((c) => (
          <label key={c.name} className={allowed.includes(c.name) ? '' : 'disabled'}
            title={allowed.includes(c.name) ? '' : `Needs the ${c.role} role`}>
            <input type="checkbox" checked={selected.includes(c.name)} disabled={!allowed.includes(c.name)}
              onChange={() => toggle(c.name)} /> {c.name}
          </label>
        ))}
      </fieldset>
      {shown.length === 0 ? (
        <Empty title={paused ? 'Paused' : 'No events yet'}>
          {selected.length === 0 ? 'Pick a channel to listen to.' : 'Events appear here as they happen.'}</Empty>
      ) : (
        <ol className="log" data-testid="event-log">{shown.map((f, i) => (
          <li key={`${f.timestamp}-${i}`}>
            <time>{when(f.timestamp)}</time> <strong>{f.event_type}</strong>
            <code>{JSON.stringify(f.payload)}</code>
          </li>))}
        </ol>
      )}
    </section>
  )
}
