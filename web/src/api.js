// fetch() for the JSON API: sends the CSRF token, sends the user to the
// login page when the session has ended, turns error answers into Errors
// that carry the body ({error, help, ...}).
const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? '';

export class ApiError extends Error {
  constructor(status, data) {
    super(data.error || `HTTP ${status}`);
    this.status = status;
    this.data = data;
  }
}

export async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    window.location.href = '/login';
    throw new ApiError(401, { error: 'logged out' });
  }
  const type = response.headers.get('content-type') || '';
  // ctm answers in JSON; the web framework refuses a malformed request
  // in plain text, which is still the message to show.
  const data = type.includes('json') ? await response.json()
    : (response.ok ? {} : { error: (await response.text()) || `HTTP ${response.status}` });
  if (!response.ok) {
    throw new ApiError(response.status, data);
  }
  return data;
}
