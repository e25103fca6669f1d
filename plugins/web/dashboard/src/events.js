// One live connection to /api/v1/ws for the whole app. Browsers cannot send headers on a
// WebSocket handshake, so each connect asks for a one-time ticket first; a dropped connection is
// retried with a growing delay (1 s to 15 s) and the channels are subscribed again.
import { post } from './api.js'

const listeners = new Set()
const statusListeners = new Set()
let socket = null
let channels = new Set()
let status = 'idle'
let retry = 0
let timer = null
let wanted = false

function setStatus(next, detail) {
  status = next
  for (const listener of statusListeners) listener(next, detail)
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message))
}

async function connect() {
  clearTimeout(timer)
  if (!wanted) return
  setStatus('connecting')
  let ticket
  try {
    ticket = (await post('/api/v1/auth/ws-ticket')).data.ticket
  } catch (error) {
    return scheduleRetry(error.message)
  }
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  const ws = new WebSocket(`${scheme}//${location.host}/api/v1/ws?ticket=${encodeURIComponent(ticket)}`)
  socket = ws
  ws.onopen = () => {
    retry = 0
    setStatus('open')
    if (channels.size) send({ action: 'subscribe', channels: [...channels] })
  }
  ws.onmessage = (message) => {
    let frame
    try {
      frame = JSON.parse(message.data)
    } catch {
      return
    }
    for (const listener of listeners) listener(frame)
  }
  ws.onclose = (event) => {
    if (socket !== ws) return
    socket = null
    scheduleRetry(event.reason || `closed (${event.code})`)
  }
}

function scheduleRetry(reason) {
  if (!wanted) return setStatus('idle')
  const delay = Math.min(15000, 1000 * 2 ** retry)
  retry += 1
  setStatus('reconnecting', `${reason}; retrying in ${Math.round(delay / 1000)} s`)
  timer = setTimeout(connect, delay)
}

export const live = {
  start() {
    if (wanted) return
    wanted = true
    connect()
  },
  stop() {
    wanted = false
    clearTimeout(timer)
    if (socket) socket.close(1000, 'signed out')
    socket = null
    setStatus('idle')
  },
  reconnect() {
    if (socket) socket.close(1000, 'reconnect')
    socket = null
    retry = 0
    connect()
  },
  subscribe(list) {
    const added = list.filter((c) => !channels.has(c))
    for (const c of added) channels.add(c)
    if (added.length) send({ action: 'subscribe', channels: added })
  },
  unsubscribe(list) {
    const removed = list.filter((c) => channels.has(c))
    for (const c of removed) channels.delete(c)
    if (removed.length) send({ action: 'unsubscribe', channels: removed })
  },
  onFrame(listener) {
    listeners.add(listener)
    return () => listeners.delete(listener)
  },
  onStatus(listener) {
    statusListeners.add(listener)
    listener(status)
    return () => statusListeners.delete(listener)
  },
}
