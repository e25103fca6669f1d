// The shell: who is signed in, a path-based router (the web plugin falls back to index.html for
// every page path), navigation and sign-out.
import { useCallback, useEffect, useState } from 'react'
import { get, post } from './api.js'
import { live } from './events.js'
import { Loading, Problem } from './components.jsx'
import { Setup } from './pages/Setup.jsx'
import { Login } from './pages/Login.jsx'
import { Overview } from './pages/Overview.jsx'
import { Workloads } from './pages/Workloads.jsx'
import { FineTune } from './pages/FineTune.jsx'
import { Settings } from './pages/Settings.jsx'
import { Events } from './pages/Events.jsx'

const pages = [
  { path: '/', title: 'Overview', component: Overview },
  { path: '/workloads', title: 'Workloads', component: Workloads },
  { path: '/fine-tune', title: 'Fine-tuning', component: FineTune },
  { path: '/settings', title: 'Settings', component: Settings },
  { path: '/events', title: 'Events', component: Events },
]

export function navigate(path) {
  if (location.pathname !== path) history.pushState(null, '', path)
  window.dispatchEvent(new Event('synthorg:navigate'))
}

function usePath() {
  const [path, setPath] = useState(location.pathname)
  useEffect(() => {
    const update = () => setPath(location.pathname)
    window.addEventListener('popstate', update)
    window.addEventListener('synthorg:navigate', update)
    return () => {
      window.removeEventListener('popstate', update)
      window.removeEventListener('synthorg:navigate', update)
    }
  }, [])
  return path
}

function Link({ to, children, current }) {
  return (
    <a href={to} aria-current={current ? 'page' : undefined}
      onClick={(event) => { event.preventDefault(); navigate(to) }}>
      {children}
    </a>
  )
}

function LiveStatus() {
  const [status, setStatus] = useState('idle')
  const [detail, setDetail] = useState('')
  useEffect(() => live.onStatus((next, why) => { setStatus(next); setDetail(why || '') }), [])
  const label = { open: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…', idle: 'Offline' }[status]
  return <span className={`live ${status}`} title={detail} data-testid="live-status">{label}</span>
}

export function App() {
  const path = usePath()
  const [me, setMe] = useState(undefined) // undefined: asking; null: signed out
  const [setup, setSetup] = useState({ needed: false, password_min_length: 12 })
  const [error, setError] = useState(null)

  const refresh = useCallback(async () => {
    setError(null)
    try {
      setMe((await get('/api/v1/auth/me')).data)
    } catch (failure) {
      if (failure.status !== 401) return setError(failure)
      // Signed out: on a fresh install the setup wizard comes first, as the guide promises.
      try {
        const state = (await get('/api/v1/auth/setup')).data
        setSetup(state)
        if (state.needed) navigate('/setup')
      } catch { /* an older server without the route: the login page links to setup */ }
      setMe(null)
    }
  }, [])
  useEffect(() => { refresh() }, [refresh])
  useEffect(() => {
    if (me) live.start()
    else live.stop()
  }, [me])

  const signOut = async () => {
    try { await post('/api/v1/auth/logout') } catch { /* signed out either way */ }
    live.stop()
    setMe(null)
    navigate('/login')
  }

  if (error) return <main className="centered"><Problem error={error} onRetry={refresh} /></main>
  if (me === undefined) return <main className="centered"><Loading what="the dashboard" /></main>
  if (!me) {
    if (path === '/setup') return <Setup minLength={setup.password_min_length} onDone={() => navigate('/login')} />
    return <Login onSignedIn={(user) => { setMe(user); navigate(path === '/login' ? '/' : path) }} />
  }
  const page = pages.find((p) => p.path === path) || (path === '/login' || path === '/setup' ? pages[0] : null)
  const Page = page ? page.component : null
  return (
    <div className="shell">
      <header>
        <span className="brand">SynthOrg</span>
        <nav>
          {pages.map((p) => <Link key={p.path} to={p.path} current={page === p}>{p.title}</Link>)}
        </nav>
        <LiveStatus />
        <span className="who" data-testid="who">{me.username || me.id} <small>{me.role}</small></span>
        <button className="secondary" onClick={signOut}>Sign out</button>
      </header>
      <main>
        {Page ? <Page me={me} /> : (
          <div className="empty"><strong>There is no page at {path}</strong>
            <p><Link to="/">Go to the overview</Link></p></div>
        )}
      </main>
    </div>
  )
}
