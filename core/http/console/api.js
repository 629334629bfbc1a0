// api: the console's only way to the server: the session (cookie set by
// the server, CSRF token kept here), JSON calls, and room subscriptions
// over WebSocket. The cookie is HttpOnly: this code never sees it.

let csrf = null;
let onSignedOut = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || ('HTTP ' + status));
    this.status = status;
    this.code = body && body.code;
  }
}

export function whenSignedOut(fn) { onSignedOut = fn; }

async function parse(r) {
  const type = r.headers.get('Content-Type') || '';
  return type.startsWith('application/json') ? r.json() : r.text();
}

// Calls the API; resolves with the parsed body, rejects with ApiError.
export async function call(method, path, body) {
  const headers = {};
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await parse(r);
  if (r.status === 401 && path !== '/api/system/login') {
    csrf = null;
    onSignedOut();
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// The session of this browser, or null when signed out.
export async function session() {
  try {
    const s = await call('GET', '/api/system/session');
    csrf = s.csrf_token;
    return s;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

export async function signIn(user, password) {
  const s = await call('POST', '/api/system/login', { user, password });
  csrf = s.csrf_token;
  return s;
}

export async function signOut() {
  try { await call('POST', '/api/system/logout'); } finally { csrf = null; }
}

export const recordingPath = (rec) =>
  '/api/webrtc/rooms/' + encodeURIComponent(rec.room_id) + '/recording/' + rec.recording_id;

// Room subscriptions: one WebSocket per room (the server's hub is per
// room), reopened with backoff while the room is wanted.
export class Rooms {
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.sockets = new Map();
    this.max = 8;
  }

  want(room) {
    if (this.sockets.has(room) || this.sockets.size >= this.max) return;
    const entry = { ws: null, open: false, retry: 500, closed: false };
    this.sockets.set(room, entry);
    this.connect(room, entry);
  }

  connect(room, entry) {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +
      '/api/webrtc/ws?room_id=' + encodeURIComponent(room);
    const ws = new WebSocket(url);
    entry.ws = ws;
    ws.onopen = () => { entry.open = true; entry.retry = 500; this.onState(); };
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      this.onEvent(ev);
    };
    ws.onclose = () => {
      entry.open = false;
      this.onState();
      if (entry.closed) return;
      setTimeout(() => { if (!entry.closed) this.connect(room, entry); }, entry.retry);
      entry.retry = Math.min(entry.retry * 2, 15000);
    };
  }

  // Keeps exactly the rooms of 'wanted' (a Set) subscribed, at most
  // this.max of them: a room whose recordings all ended is let go.
  sync(wanted) {
    for (const [room, e] of this.sockets) {
      if (wanted.has(room)) continue;
      e.closed = true;
      if (e.ws) e.ws.close();
      this.sockets.delete(room);
    }
    for (const room of wanted) this.want(room);
    this.onState();
  }

  closeAll() {
    for (const e of this.sockets.values()) { e.closed = true; if (e.ws) e.ws.close(); }
    this.sockets.clear();
    this.onState();
  }

  get openCount() { let n = 0; for (const e of this.sockets.values()) if (e.open) n++; return n; }
  get size() { return this.sockets.size; }
}
