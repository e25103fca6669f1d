// Health at a glance: liveness, readiness with each check, uptime and version; the plugins the
// kernel loaded and, for admins, every service and its provider.
import { useCallback, useEffect, useState } from 'react'
import { get } from '../api.js'
import { Badge, Empty, Loading, Problem, duration, stateTone } from '../components.jsx'

export function Overview({ me }) {
  const [data, setData] = useState(null)
  const [error, setError] = useState(null)

  const load = useCallback(async () => {
    setError(null)
    try {
      const [health, ready, capabilities, plugins, services] = await Promise.all([
        get('/api/v1/healthz'),
        get('/api/v1/readyz', { allow: [503] }),
        get('/api/v1/capabilities'),
        get('/api/v1/plugins').catch(() => ({ data: null })),
        me.role === 'admin' ? get('/api/v1/services').catch(() => ({ data: null })) : Promise.resolve({ data: null }),
      ])
      setData({ health: health.data, ready: ready.data, readyStatus: ready.status, capabilities: capabilities.data,
        plugins: plugins.data?.plugins, services: services.data?.services })
    } catch (failure) {
      setError(failure)
    }
  }, [me.role])
  useEffect(() => {
    load()
    const timer = setInterval(load, 10000)
    return () => clearInterval(timer)
  }, [load])

  if (error) return <Problem error={error} onRetry={load} />
  if (!data) return <Loading what="health" />
  const ready = data.readyStatus === 200
  const checks = data.ready?.checks || []
  // What turns a feature on, for the ones an operator switches with one variable.
  const offHint = {
    tracing: 'set SYNTHORG_TRACE_OTLP_ENDPOINT to send traces',
    metrics: 'enable the telemetry plugin for /metrics with process figures',
  }
  const features = Object.entries(data.capabilities || {}).filter(([k]) => k !== 'version')
  return (
    <section>
      <h1>Overview</h1>
      <div className="tiles">
        <div className="tile" data-testid="status"><span>Status</span>
          <Badge tone={stateTone(data.health.status)}>{data.health.status === 'ok' ? 'Healthy' : data.health.status}</Badge></div>
        <div className="tile" data-testid="readiness"><span>Readiness</span>
          <Badge tone={ready ? 'good' : 'bad'}>{ready ? 'Ready' : 'Not ready'}</Badge></div>
        <div className="tile"><span>Uptime</span><strong>{duration(data.health.uptime_seconds)}</strong></div>
        <div className="tile"><span>Version</span><strong>{data.health.version}</strong></div>
      </div>

      <h2>Health checks</h2>
      {checks.length === 0 ? <Empty title="No health checks are registered" /> : (
        <table>
          <thead><tr><th>Check</th><th>Status</th><th>Critical</th><th>Detail</th></tr></thead>
          <tbody>{checks.map((c) => (
            <tr key={c.name}><td>{c.name}</td><td><Badge tone={stateTone(c.status)}>{c.status}</Badge></td>
              <td>{c.critical ? 'yes' : 'no'}</td><td className="muted">{c.detail || c.message || ''}</td></tr>))}
          </tbody>
        </table>
      )}

      <h2>Features</h2>
      <ul className="features">{features.map(([name, on]) => (
        <li key={name} data-feature={name}><Badge tone={on ? 'good' : 'neutral'}>{on ? 'on' : 'off'}</Badge>{' '}
          {name.replace('_', ' ')}{!on && offHint[name] ? <span className="muted"> — {offHint[name]}</span> : null}</li>))}
      </ul>

      <h2>Plugins</h2>
      {!data.plugins ? <Empty title="The plugin list is not available" /> : data.plugins.length === 0 ?
        <Empty title="No plugins are loaded" /> : (
        <table>
          <thead><tr><th>Plugin</th><th>Version</th><th>State</th><th>Provides</th></tr></thead>
          <tbody>{data.plugins.map((p) => (
            <tr key={p.name}><td><strong>{p.name}</strong><div className="muted">{p.description}</div></td>
              <td>{p.version}</td><td><Badge tone={stateTone(p.state)}>{p.state}</Badge></td>
              <td className="mono">{(p.provides || []).join(', ')}</td></tr>))}
          </tbody>
        </table>
      )}

      {data.services && (
        <>
          <h2>Services</h2>
          <table>
            <thead><tr><th>Service</th><th>Provider</th></tr></thead>
            <tbody>{data.services.map((s, i) => (
              <tr key={i}><td className="mono">{s.id || s.service}</td><td>{s.provider || s.plugin || s.owner}</td></tr>))}
            </tbody>
          </table>
        </>
      )}
    </section>
  )
}
