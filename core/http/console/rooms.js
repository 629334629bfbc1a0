// rooms: every room that has recordings, with its live state as its
// WebSocket events arrive, and the latest events themselves.
const $ = (id) => document.getElementById(id);
const LIVE = new Set(['pending', 'recording', 'paused']);
const MAX_EVENTS = 60;

export class RoomsView {
  constructor(app) {
    this.app = app;
    this.last = new Map(); // room -> last event type and time
  }

  event(ev) {
    this.last.set(ev.room_id, { type: ev.type, at: ev.timestamp });
    const li = document.createElement('li');
    const id = ev.data && ev.data.recording_id ? ev.data.recording_id.slice(0, 8) : '';
    const when = ev.timestamp ? new Date(ev.timestamp).toLocaleTimeString() : '';
    li.textContent = when + ' ' + ev.room_id + ' ' + ev.type + (id ? ' ' + id : '');
    li.dataset.type = ev.type;
    const list = $('events');
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
    this.render();
  }

  render() {
    const rooms = new Map();
    for (const rec of this.app.recordings.list()) {
      const r = rooms.get(rec.room_id) || { live: null, count: 0 };
      r.count++;
      if (LIVE.has(rec.status) && !r.live) r.live = rec;
      rooms.set(rec.room_id, r);
    }
    const frag = document.createDocumentFragment();
    for (const [name, r] of [...rooms.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      const li = document.createElement('li');
      li.dataset.room = name;
      const h = document.createElement('h3');
      h.textContent = name;
      const state = document.createElement('p');
      state.className = 'status ' + (r.live ? r.live.status : 'idle');
      state.textContent = r.live ? r.live.status + ' (' + r.live.recording_id.slice(0, 8) + ')' : 'idle';
      const facts = document.createElement('p');
      facts.className = 'muted';
      const last = this.last.get(name);
      const sub = this.app.rooms.sockets.get(name);
      facts.textContent = r.count + ' recording' + (r.count === 1 ? '' : 's') +
        (last ? ' · last event ' + last.type : '') + (sub && sub.open ? ' · live' : '');
      li.append(h, state, facts);
      frag.appendChild(li);
    }
    $('rooms-list').replaceChildren(frag);
  }
}
