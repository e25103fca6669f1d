// The API, same origin: the web plugin puts /api/* behind the dashboard's own port, so the
// session cookie (HttpOnly, SameSite=Strict) is all the credential the browser needs.
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || (status ? `HTTP ${status}` : 'The server cannot be reached'))
    this.status = status
    this.code = (problem && problem.code) || (status ? `http_${status}` : 'network')
    this.problem = problem
  }
}

export async function api(method, path, { body, headers = {}, allow = [] } = {}) {
  let response
  try {
    response = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch {
    throw new ApiError(0, null)
  }
  const text = await response.text()
  let data = null
  try {
    data = text ? JSON.parse(text) : null
  } catch {
    data = null
  }
  if (!response.ok && !allow.includes(response.status)) throw new ApiError(response.status, data)
  return { status: response.status, data, etag: response.headers.get('etag') }
}

export const get = (path, options) => api('GET', path, options)
export const post = (path, body, options) => api('POST', path, { ...options, body })
export const put = (path, body, options) => api('PUT', path, { ...options, body })
export const del = (path, options) => api('DELETE', path, options)
