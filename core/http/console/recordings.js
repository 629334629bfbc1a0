// recordings: the table of recordings (admin: everyone's), its actions,
// in-page playback and the start form.
import { call, recordingPath } from './api.js';

const $ = (id) => document.getElementById(id);

export const fmtBytes = (n) => {
  if (typeof n !== 'number' || !isFinite(n) || n <= 0) return '—';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
};

export const fmtDuration = (s) => {
  if (typeof s !== 'number' || !isFinite(s)) return '—';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const two = (v) => String(v).padStart(2, '0');
  return (h ? h + ':' + two(m) : m) + ':' + two(sec);
};

const fmtTime = (iso) => {
  if (!iso) return '—';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
};

// Which buttons a status offers: [action label, method, suffix, style].
const ACTIONS = {
  pending: [['Cancel', 'DELETE', '', 'danger']],
  recording: [['Pause', 'POST', '/pause'], ['Stop', 'POST', '/stop'], ['Cancel', 'DELETE', '', 'danger']],
  paused: [['Resume', 'POST', '/resume'], ['Stop', 'POST', '/stop'], ['Cancel', 'DELETE', '', 'danger']],
  processing: [['Cancel', 'DELETE', '', 'danger']],
  completed: [['Delete', 'DELETE', '', 'danger']],
  failed: [['Delete', 'DELETE', '', 'danger']],
  cancelled: [],
};

export class Recordings {
  constructor(app) {
    this.app = app;
    this.byId = new Map();
    this.filter = '';
    $('status-filter').addEventListener('change', (e) => { this.filter = e.target.value; this.render(); });
    $('refresh').addEventListener('click', () => this.load());
    $('start-form').addEventListener('submit', (e) => { e.preventDefault(); this.start(); });
    $('start-room').addEventListener('change', () => this.app.roomsChanged());
    $('player-close').addEventListener('click', () => this.closePlayer());
    $('recordings-body').addEventListener('click', (e) => this.onClick(e));
  }

  // The whole list from the server (every page of it).
  async load() {
    const seen = new Map();
    let path = '/api/webrtc/recordings?limit=500';
    const r = await call('GET', path);
    for (const rec of r.recordings || []) seen.set(rec.recording_id, rec);
    this.byId = seen;
    this.render();
    this.app.roomsChanged();
  }

  // A room event: its data is the recording's state.
  apply(ev) {
    const rec = ev.data;
    if (!rec || !rec.recording_id) return;
    if (ev.type === 'recording_deleted') this.byId.delete(rec.recording_id);
    else this.byId.set(rec.recording_id, rec);
    this.render();
  }

  list() {
    return [...this.byId.values()].sort((a, b) =>
      (b.started_at || '').localeCompare(a.started_at || '') || a.recording_id.localeCompare(b.recording_id));
  }

  // Rows are rebuilt only for recordings whose shown facts changed, so an
  // event does not reload every thumbnail.
  render() {
    const body = $('recordings-body');
    const rows = this.list().filter((r) => !this.filter || r.status === this.filter);
    const kept = new Map();
    const trs = [];
    for (const rec of rows) {
      const key = [rec.status, rec.duration_seconds, rec.file_size_bytes, rec.error].join('|');
      const old = this.rows && this.rows.get(rec.recording_id);
      const tr = old && old.key === key ? old.tr : this.row(rec);
      kept.set(rec.recording_id, { key, tr });
      trs.push(tr);
    }
    this.rows = kept;
    // Untouched when nothing changed: a click or a download in progress
    // keeps its element.
    const now = body.children;
    if (now.length !== trs.length || trs.some((tr, i) => now[i] !== tr)) body.replaceChildren(...trs);
    $('recordings-empty').hidden = rows.length > 0;
  }

  row(rec) {
    const tr = document.createElement('tr');
    tr.dataset.id = rec.recording_id;
    tr.dataset.status = rec.status;
    const short = rec.recording_id.slice(0, 8);
    const cell = (label, content) => {
      const td = document.createElement('td');
      td.dataset.label = label;
      if (content instanceof Node) td.appendChild(content); else td.textContent = content;
      tr.appendChild(td);
      return td;
    };
    let thumb;
    if (rec.status === 'completed') {
      thumb = document.createElement('img');
      thumb.src = recordingPath(rec) + '/thumbnail';
      thumb.alt = 'Preview of recording ' + short + ' in room ' + rec.room_id;
      thumb.decoding = 'async';
      thumb.width = 96; thumb.height = 54;
      thumb.addEventListener('error', () => thumb.replaceWith(Object.assign(document.createElement('span'),
        { className: 'thumb-none', title: 'no preview' })), { once: true });
    } else {
      thumb = Object.assign(document.createElement('span'), { className: 'thumb-none' });
      thumb.setAttribute('aria-hidden', 'true');
    }
    cell('Preview', thumb);
    const badge = Object.assign(document.createElement('span'), { className: 'status ' + rec.status, textContent: rec.status });
    const st = cell('Status', badge);
    if (rec.error) st.title = rec.error;
    cell('Room', rec.room_id);
    cell('User', rec.user_id);
    cell('Started', fmtTime(rec.started_at));
    cell('Duration', fmtDuration(rec.duration_seconds));
    cell('Size', fmtBytes(rec.file_size_bytes));
    const acts = document.createElement('div');
    acts.className = 'actions';
    for (const [label, method, suffix, style] of ACTIONS[rec.status] || []) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = label;
      b.className = style || '';
      b.dataset.method = method;
      b.dataset.suffix = suffix;
      b.dataset.action = label.toLowerCase();
      b.setAttribute('aria-label', label + ' recording ' + short + ' in room ' + rec.room_id);
      acts.appendChild(b);
    }
    if (rec.status === 'completed') {
      const play = document.createElement('button');
      play.type = 'button';
      play.textContent = 'Play';
      play.className = 'quiet';
      play.dataset.action = 'play';
      play.setAttribute('aria-label', 'Play recording ' + short + ' in room ' + rec.room_id);
      acts.prepend(play);
      const dl = document.createElement('a');
      dl.className = 'button quiet';
      dl.href = recordingPath(rec) + '/download';
      dl.download = rec.file_name || '';
      dl.textContent = 'Download';
      dl.setAttribute('aria-label', 'Download recording ' + short + ' in room ' + rec.room_id);
      acts.insertBefore(dl, play.nextSibling);
    }
    cell('Actions', acts);
    return tr;
  }

  async onClick(e) {
    const b = e.target.closest('button');
    if (!b) return;
    const tr = b.closest('tr');
    const rec = this.byId.get(tr.dataset.id);
    if (!rec) return;
    if (b.dataset.action === 'play') { this.play(rec); return; }
    if (b.dataset.action === 'delete' &&
        !window.confirm('Delete recording ' + rec.recording_id.slice(0, 8) + ' for good?')) return;
    b.disabled = true;
    try {
      const out = await call(b.dataset.method, recordingPath(rec) + b.dataset.suffix);
      if (b.dataset.action === 'delete') this.byId.delete(rec.recording_id);
      else if (out && out.recording_id) this.byId.set(out.recording_id, out);
      this.app.notice(b.dataset.action + ': ' + rec.recording_id.slice(0, 8) + ' done');
      this.render();
    } catch (err) {
      this.app.notice(b.dataset.action + ' failed: ' + err.message, true);
      b.disabled = false;
    }
  }

  play(rec) {
    const v = $('player-video');
    $('player-title').textContent = 'Playback: ' + rec.room_id + ' ' + rec.recording_id.slice(0, 8);
    $('player').hidden = false;
    v.src = recordingPath(rec) + '/download';
    v.play().catch(() => {});
    $('player').scrollIntoView({ block: 'nearest' });
  }

  closePlayer() {
    const v = $('player-video');
    v.pause();
    v.removeAttribute('src');
    v.load();
    $('player').hidden = true;
  }

  async start() {
    const room = $('start-room').value.trim();
    const q = new URLSearchParams();
    if ($('start-format').value) q.set('recording_format', $('start-format').value);
    if ($('start-quality').value) q.set('quality', $('start-quality').value);
    const btn = $('start-button');
    btn.disabled = true;
    this.app.rooms.want(room);
    try {
      const rec = await call('POST', '/api/webrtc/rooms/' + encodeURIComponent(room) + '/recording/start' +
        (q.toString() ? '?' + q : ''));
      this.byId.set(rec.recording_id, rec);
      this.render();
      this.app.roomsChanged();
      this.app.notice('Recording ' + rec.recording_id.slice(0, 8) + ' started in ' + room);
    } catch (err) {
      this.app.notice('Start failed: ' + err.message, true);
    } finally {
      btn.disabled = false;
    }
  }
}
