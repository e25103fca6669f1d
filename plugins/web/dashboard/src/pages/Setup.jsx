// First run: create the admin. The API refuses (409 already_set_up) once any user exists.
import { useState } from 'react'
import { post } from '../api.js'
import { Problem } from '../components.jsx'

// `minLength`: the server's password rule (GET /api/v1/auth/setup), so the form never allows
// what the server then refuses.
export function Setup({ onDone, minLength = 12 }) {
  const [username, setUsername] = useState('admin')
  const [password, setPassword] = useState('')
  const [confirm, setConfirm] = useState('')
  const [error, setError] = useState(null)
  const [done, setDone] = useState(false)
  const [busy, setBusy] = useState(false)

  const submit = async (event) => {
    event.preventDefault()
    if (password !== confirm) {
      setError({ status: 400, code: 'mismatch', message: 'The two passwords differ.' })
      return
    }
    setBusy(true)
    setError(null)
    try {
      await post('/api/v1/auth/setup', { username, password })
      setDone(true)
    } catch (failure) {
      setError(failure)
    } finally {
      setBusy(false)
    }
  }

  return (
    <main className="centered">
      <form className="card narrow" onSubmit={submit} aria-label="First-run setup">
        <h1>Welcome to SynthOrg</h1>
        <ol className="steps">
          <li className={done ? 'done' : 'current'}>Create the administrator</li>
          <li className={done ? 'current' : ''}>Sign in</li>
        </ol>
        {done ? (
          <>
            <p>The administrator <strong>{username}</strong> was created.</p>
            <button type="button" onClick={onDone}>Continue to sign in</button>
          </>
        ) : (
          <>
            <p className="muted">This account can manage users, settings and every workload.</p>
            <label>Username<input name="username" autoComplete="username" value={username}
              onChange={(e) => setUsername(e.target.value)} required /></label>
            <label>Password<input name="password" type="password" autoComplete="new-password" value={password}
              onChange={(e) => setPassword(e.target.value)} required minLength={minLength} /></label>
            <p className="muted">At least {minLength} characters.</p>
            <label>Password again<input name="confirm" type="password" autoComplete="new-password" value={confirm}
              onChange={(e) => setConfirm(e.target.value)} required /></label>
            {error && error.code === 'already_set_up' ? (
              <div className="problem" role="alert"><strong>Already set up</strong>
                <p>An administrator exists. Sign in instead.</p>
                <button type="button" className="secondary" onClick={onDone}>Go to sign in</button></div>
            ) : <Problem error={error} />}
            <button type="submit" disabled={busy}>{busy ? 'Creating…' : 'Create administrator'}</button>
          </>
        )}
      </form>
    </main>
  )
}
