import { useState } from 'react'
import { post } from '../api.js'
import { Problem } from '../components.jsx'

export function Login({ onSignedIn }) {
  const [username, setUsername] = useState('')
  const [password, setPassword] = useState('')
  const [error, setError] = useState(null)
  const [busy, setBusy] = useState(false)

  const submit = async (event) => {
    event.preventDefault()
    setBusy(true)
    setError(null)
    try {
      const { data } = await post('/api/v1/auth/login', { username, password })
      onSignedIn({ id: data.user.id, username: data.user.username, role: data.user.role })
    } catch (failure) {
      setError(failure)
    } finally {
      setBusy(false)
    }
  }

  const message = error && {
    invalid_credentials: 'That username and password do not match.',
    locked_out: 'Too many attempts: wait a little, then try again.',
  }[error.code]

  return (
    <main className="centered">
      <form className="card narrow" onSubmit={submit} aria-label="Sign in">
        <h1>Sign in</h1>
        <label>Username<input name="username" autoComplete="username" value={username}
          onChange={(e) => setUsername(e.target.value)} required autoFocus /></label>
        <label>Password<input name="password" type="password" autoComplete="current-password" value={password}
          onChange={(e) => setPassword(e.target.value)} required /></label>
        {message ? <div className="problem" role="alert"><strong>{message}</strong></div> : <Problem error={error} />}
        <button type="submit" disabled={busy}>{busy ? 'Signing in…' : 'Sign in'}</button>
        <p className="muted">First run? <a href="/setup">Create the administrator</a>.</p>
      </form>
    </main>
  )
}
