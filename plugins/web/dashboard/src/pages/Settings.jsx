// Runtime settings grouped by namespace, each with where its value comes from. Admins edit: the
// edit starts from the setting's ETag and saves with If-Match, so a change made meanwhile by
// someone else is shown instead of overwritten.
import { useCallback, useEffect, useMemo, useState } from 'react'
import { get, put } from '../api.js'
import { Badge, Empty, Loading, Problem } from '../components.jsx'

const sourceTone = { env: 'warn', database: 'good', config: 'neutral', default: 'neutral' }
const sourceLabel = { env: 'environment', database: 'stored', config: 'company.yaml', default: 'default' }

function show(setting) {
  if (setting.sensitive) return '********'
  if (setting.value === null || setting.value === undefined) return '—'
  return typeof setting.value === 'object' ? JSON.stringify(setting.value) : String(setting.value)
}

// What the editor starts from: nothing for a secret, a list one item a line.
function editable(setting) {
  if (setting.sensitive || show(setting) === '—') return ''
  if (setting.type === 'list' && Array.isArray(setting.value)) return setting.value.join('\n')
  return show(setting)
}

// The API's type names (str, int, float, bool, enum, json, list).
function parse(setting, text) {
  switch (setting.type) {
    case 'bool': return text === 'true'
    case 'int': {
      if (!/^-?\d+$/.test(text.trim())) throw new Error('Enter a whole number.')
      return Number(text)
    }
    case 'float': {
      const n = Number(text)
      if (text.trim() === '' || Number.isNaN(n)) throw new Error('Enter a number.')
      return n
    }
    case 'json':
      try { return JSON.parse(text) } catch { throw new Error('Enter valid JSON.') }
    case 'list': // one item a line; the server checks each
      return text.split('\n').map((item) => item.trim()).filter((item) => item !== '')
    default: return text
  }
}

function Editor({ setting, onSaved, onCancel }) {
  const [etag, setEtag] = useState(null)
  const [text, setText] = useState(editable(setting))
  const [error, setError] = useState(null)
  const [conflict, setConflict] = useState(null)
  const [busy, setBusy] = useState(false)
  const path = `/api/v1/settings/${encodeURIComponent(setting.namespace)}/${encodeURIComponent(setting.key)}`

  useEffect(() => {
    get(path).then((r) => setEtag(r.etag)).catch(setError)
  }, [path])

  const save = async (event) => {
    event.preventDefault()
    setError(null)
    let value
    try {
      value = parse(setting, text)
    } catch (invalid) {
      setError({ status: 422, code: 'invalid_value', message: invalid.message })
      return
    }
    setBusy(true)
    try {
      const { data } = await put(path, { value }, { headers: etag ? { 'if-match': etag } : {} })
      onSaved(data)
    } catch (failure) {
      if (failure.code === 'etag_mismatch') {
        const fresh = await get(path).catch(() => null)
        setConflict(fresh?.data || null)
        if (fresh) setEtag(fresh.etag)
      } else setError(failure)
    } finally {
      setBusy(false)
    }
  }

  return (
    <form className="editor" onSubmit={save} aria-label={`Edit ${setting.namespace}.${setting.key}`}>
      {setting.type === 'bool' ? (
        <select value={text} onChange={(e) => setText(e.target.value)} name="value">
          <option value="true">true</option><option value="false">false</option>
        </select>
      ) : setting.type === 'json' || setting.type === 'list' ? (
        <textarea value={text} onChange={(e) => setText(e.target.value)} name="value" rows={3}
          placeholder={setting.type === 'list' ? 'one item a line' : ''} />
      ) : (
        <input name="value" value={text} onChange={(e) => setText(e.target.value)}
          type={setting.sensitive ? 'password' : 'text'} placeholder={setting.sensitive ? 'new value' : ''}
          inputMode={setting.type === 'int' || setting.type === 'float' ? 'decimal' : undefined} autoFocus />
      )}
      <button type="submit" disabled={busy || (!etag && !error)}>{busy ? 'Saving…' : 'Save'}</button>
      <button type="button" className="secondary" onClick={onCancel}>Cancel</button>
      {conflict && (
        <div className="problem" role="alert"><strong>Changed by someone else meanwhile</strong>
          <p>It is now <code>{show(conflict)}</code> ({sourceLabel[conflict.source] || conflict.source}). Save again to
            replace it with your value, or cancel.</p></div>
      )}
      <Problem error={error} />
    </form>
  )
}

export function Settings({ me }) {
  const [settings, setSettings] = useState(null)
  const [error, setError] = useState(null)
  const [editing, setEditing] = useState(null)
  const [filter, setFilter] = useState('')
  const admin = me.role === 'admin'

  const load = useCallback(async () => {
    try {
      setSettings((await get('/api/v1/settings')).data.settings)
      setError(null)
    } catch (failure) {
      setError(failure)
    }
  }, [])
  useEffect(() => { load() }, [load])

  const groups = useMemo(() => {
    const byNamespace = new Map()
    for (const s of settings || []) {
      if (filter && !`${s.namespace}.${s.key} ${s.description}`.toLowerCase().includes(filter.toLowerCase())) continue
      if (!byNamespace.has(s.namespace)) byNamespace.set(s.namespace, [])
      byNamespace.get(s.namespace).push(s)
    }
    return [...byNamespace.entries()].sort(([a], [b]) => a.localeCompare(b))
  }, [settings, filter])

  if (error) return <section><h1>Settings</h1><Problem error={error} onRetry={load} /></section>
  if (!settings) return <Loading what="settings" />
  return (
    <section>
      <div className="title-row">
        <h1>Settings</h1>
        <input className="search" type="search" placeholder="Filter settings" value={filter}
          onChange={(e) => setFilter(e.target.value)} aria-label="Filter settings" />
      </div>
      {!admin && <p className="muted">Only administrators can change settings.</p>}
      {groups.length === 0 ? <Empty title={filter ? 'No setting matches' : 'No settings are registered'} /> :
        groups.map(([namespace, list]) => (
          <div className="group" key={namespace}>
            <h2>{namespace}</h2>
            <table>
              <thead><tr><th>Key</th><th>Value</th><th>Source</th><th /></tr></thead>
              <tbody>{list.map((s) => {
                const id = `${s.namespace}.${s.key}`
                return (
                  <tr key={id} data-setting={id}>
                    <td><strong className="mono">{s.key}</strong><div className="muted small">{s.description}</div>
                      {s.restart_required && <div className="small"><Badge tone="warn">restart required</Badge></div>}</td>
                    <td>{editing === id ? (
                      <Editor setting={s} onCancel={() => setEditing(null)}
                        onSaved={(saved) => {
                          setSettings((all) => all.map((x) => (x.namespace === saved.namespace && x.key === saved.key ? saved : x)))
                          setEditing(null)
                        }} />
                    ) : <code data-testid="value">{show(s)}</code>}</td>
                    <td><Badge tone={sourceTone[s.source]}>{sourceLabel[s.source] || s.source}</Badge>
                      {s.source === 'env' && <div className="muted small">{s.env}</div>}</td>
                    <td className="actions">{admin && editing !== id && (
                      <button className="secondary" disabled={s.source === 'env'}
                        title={s.source === 'env' ? `Pinned by ${s.env}` : undefined}
                        onClick={() => setEditing(id)}>Edit</button>)}</td>
                  </tr>
                )
              })}</tbody>
            </table>
          </div>
        ))}
    </section>
  )
}
