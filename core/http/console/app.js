// app: the console's entry: sign-in, the three pages (by the URL's hash),
// live updates (room WebSockets, and a slow poll for rooms nobody here
// subscribed to yet).
import { Rooms, session, signIn, signOut, whenSignedOut } from './api.js';
import { Recordings } from './recordings.js';
import { RoomsView } from './rooms.js';
import { SystemView } from './system.js';

const $ = (id) => document.getElementById(id);
const PAGES = ['recordings', 'rooms', 'system'];
const POLL_MS = 15000;
const LIVE = new Set(['pending', 'recording', 'paused', 'processing']);

class App {
  constructor() {
    this.rooms = new Rooms((ev) => this.onEvent(ev), () => this.showLive());
    this.recordings = new Recordings(this);
    this.roomsView = new RoomsView(this);
    this.system = new SystemView();
    this.timer = null;
    this.events = 0;
    whenSignedOut(() => this.signedOut());
    $('signin-form').addEventListener('submit', (e) => { e.preventDefault(); this.signIn(); });
    $('signout').addEventListener('click', async () => { await signOut().catch(() => {}); this.signedOut(); });
    window.addEventListener('hashchange', () => this.route());
  }

  async boot() {
    let s = null;
    try { s = await session(); } catch (e) { this.notice('The server did not answer: ' + e.message, true); }
    if (s) await this.signedIn(); else this.signedOut();
    performance.mark('console-ready');
    document.body.dataset.ready = 'true';
  }

  notice(text, error) {
    const n = $('notice');
    n.textContent = text;
    n.classList.toggle('error', !!error);
  }

  async signIn() {
    $('signin-error').textContent = '';
    try {
      await signIn($('signin-user').value, $('signin-password').value);
      $('signin-password').value = '';
      await this.signedIn();
    } catch (e) {
      $('signin-error').textContent = e.status === 429 ? e.message : e.status === 401
        ? 'Wrong user name or password.' : 'Sign-in failed: ' + e.message;
    }
  }

  async signedIn() {
    $('signin').hidden = true;
    $('nav').hidden = false;
    $('who').hidden = false;
    this.route();
    try { await this.recordings.load(); } catch (e) { this.notice('Recordings: ' + e.message, true); }
    clearInterval(this.timer);
    this.timer = setInterval(() => this.poll(), POLL_MS);
  }

  signedOut() {
    clearInterval(this.timer);
    this.rooms.closeAll();
    for (const p of PAGES) $('page-' + p).hidden = true;
    $('nav').hidden = true;
    $('who').hidden = true;
    $('signin').hidden = false;
    $('signin-password').focus();
  }

  async poll() {
    if (document.hidden) return;
    try {
      await this.recordings.load();
      if (this.page === 'system') await this.system.load();
    } catch { /* the next poll tries again */ }
  }

  // Subscribes to every room with something live in it (processing too:
  // its completion is an event), and to the room of the start form.
  roomsChanged() {
    const wanted = new Set();
    const room = $('start-room').value.trim();
    if (room) wanted.add(room);
    for (const rec of this.recordings.list()) if (LIVE.has(rec.status)) wanted.add(rec.room_id);
    this.rooms.sync(wanted);
    this.roomsView.render();
  }

  onEvent(ev) {
    if (!ev || !ev.type) return;
    if (ev.type === 'subscribed' || ev.type === 'lagged') {
      if (ev.type === 'lagged') this.recordings.load().catch(() => {});
      return;
    }
    this.events++;
    document.body.dataset.events = String(this.events);
    this.recordings.apply(ev);
    this.roomsView.event(ev);
  }

  showLive() {
    const n = this.rooms.openCount;
    $('live').textContent = n ? 'live: ' + n + ' room' + (n === 1 ? '' : 's') : 'not live';
  }

  route() {
    const want = location.hash.replace('#', '');
    this.page = PAGES.includes(want) ? want : 'recordings';
    for (const p of PAGES) $('page-' + p).hidden = p !== this.page;
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.page === this.page) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (this.page === 'system') this.system.load().catch((e) => this.notice('System: ' + e.message, true));
    if (this.page === 'rooms') this.roomsView.render();
  }
}

new App().boot();
