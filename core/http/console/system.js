// system: health, disk, node, uploads, policies and devices, from
// /healthz, /metrics, /api/system/policies and /api/system/devices. Fields are read defensively: what a
// server does not report shows as "not reported".
import { call } from './api.js';
import { fmtBytes } from './recordings.js';

const $ = (id) => document.getElementById(id);
const NONE = 'not reported';

// Prometheus text -> Map(name -> [{labels, value}]).
export function parseMetrics(text) {
  const out = new Map();
  for (const line of String(text).split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: Number(m[3]) });
  }
  return out;
}

const first = (metrics, name) => {
  const v = metrics.get(name);
  return v && v.length ? v[0].value : undefined;
};
const sum = (metrics, name) => {
  const v = metrics.get(name);
  return v ? v.reduce((a, b) => a + b.value, 0) : undefined;
};

function facts(dl, rows) {
  const frag = document.createDocumentFragment();
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v === undefined || v === null || v === '' ? NONE : String(v);
    frag.append(dt, dd);
  }
  dl.replaceChildren(frag);
}

// Looks for a value under several names a /healthz may use.
function pick(obj, ...paths) {
  for (const p of paths) {
    let v = obj;
    for (const k of p.split('.')) v = v && typeof v === 'object' ? v[k] : undefined;
    if (v !== undefined && v !== null) return v;
  }
  return undefined;
}

export class SystemView {
  async load() {
    const [health, metricsText, policies, devices] = await Promise.all([
      fetch('/healthz', { credentials: 'same-origin' }).then((r) => r.json()).catch(() => null),
      fetch('/metrics', { credentials: 'same-origin' }).then((r) => (r.ok ? r.text() : '')).catch(() => ''),
      call('GET', '/api/system/policies').catch((e) => ({ error: e.message })),
      call('GET', '/api/system/devices').catch((e) => ({ error: e.message })),
    ]);
    const m = parseMetrics(metricsText);
    this.health(health);
    this.disk(health, m);
    this.node(health, m);
    this.uploads(health, m);
    this.policies(policies);
    this.devices(devices);
  }

  health(h) {
    const box = $('sys-health');
    box.replaceChildren();
    if (!h) { box.textContent = 'unreachable'; return; }
    const s = document.createElement('p');
    s.className = 'status ' + (h.status === 'ok' ? 'completed' : h.status === 'degraded' ? 'paused' : 'failed');
    s.textContent = h.status || 'unknown';
    s.id = 'health-status';
    box.appendChild(s);
    const reasons = Array.isArray(h.reasons) ? h.reasons : [];
    if (reasons.length) {
      const ul = document.createElement('ul');
      for (const r of reasons) ul.appendChild(Object.assign(document.createElement('li'),
        { textContent: typeof r === 'string' ? r : JSON.stringify(r) }));
      box.appendChild(ul);
    }
    if (h.checks && typeof h.checks === 'object') {
      const dl = document.createElement('dl');
      dl.className = 'facts';
      facts(dl, Object.entries(h.checks).map(([k, c]) =>
        [k, c && typeof c === 'object' ? (c.ok === false ? 'failing' : c.degraded ? 'degraded' : 'ok') +
          (c.detail ? ': ' + c.detail : '') : String(c)]));
      box.appendChild(dl);
    }
  }

  disk(h, m) {
    const box = $('sys-disk');
    const free = first(m, 'edgerec_disk_free_bytes') ?? pick(h, 'disk.free_bytes', 'checks.disk.free_bytes');
    const total = first(m, 'edgerec_disk_total_bytes') ?? pick(h, 'disk.total_bytes', 'checks.disk.total_bytes');
    box.replaceChildren();
    if (typeof free !== 'number' || typeof total !== 'number' || total <= 0) {
      box.textContent = 'Disk figures: ' + NONE;
      return;
    }
    const used = total - free;
    const label = document.createElement('label');
    label.htmlFor = 'disk-gauge';
    label.textContent = 'Used ' + fmtBytes(used) + ' of ' + fmtBytes(total) + ' (' + fmtBytes(free) + ' free)';
    const meter = document.createElement('meter');
    meter.id = 'disk-gauge';
    meter.className = 'gauge';
    meter.min = 0; meter.max = total; meter.value = used;
    meter.high = total * 0.85; meter.optimum = 0;
    box.append(label, meter);
  }

  node(h, m) {
    const bi = (m.get('edgerec_build_info') || [{ labels: {} }])[0].labels;
    const up = first(m, 'edgerec_uptime_seconds') ?? pick(h, 'uptime_seconds');
    facts($('sys-node'), [
      ['Version', bi.version ?? pick(h, 'version', 'build.version')],
      ['Node', bi.node ?? bi.node_id ?? pick(h, 'node', 'node_id')],
      ['Uptime', typeof up === 'number' ? Math.round(up) + ' s' : undefined],
      ['Redis', first(m, 'edgerec_redis_up') === undefined ? undefined : first(m, 'edgerec_redis_up') ? 'up' : 'down'],
    ]);
  }

  uploads(h, m) {
    facts($('sys-upload'), [
      ['S3', pick(h, 's3.status', 'checks.s3.detail', 'checks.s3.ok', 's3')],
      ['Upload queue', first(m, 'edgerec_upload_queue') ?? first(m, 'edgerec_s3_upload_queue') ?? pick(h, 'uploads.queued', 's3.queue')],
      ['Upload failures', sum(m, 'edgerec_s3_upload_failures_total') ?? sum(m, 'edgerec_upload_failures_total')],
      ['Processing queued', first(m, 'edgerec_processing_jobs_queued')],
      ['Processing running', first(m, 'edgerec_processing_jobs_running')],
    ]);
  }

  policies(p) {
    const box = $('sys-policies');
    box.replaceChildren();
    if (!p || p.error || !Array.isArray(p.policies)) {
      box.textContent = 'Policies: ' + (p && p.error ? p.error : NONE);
      return;
    }
    const t = document.createElement('table');
    t.className = 'policy-table';
    t.innerHTML = '<caption class="sr">Policies in force</caption><thead><tr><th scope="col">Policy</th>' +
      '<th scope="col">SHA-256</th><th scope="col">Loaded</th><th scope="col">Last error</th></tr></thead>';
    const tb = document.createElement('tbody');
    for (const pol of p.policies) {
      const tr = document.createElement('tr');
      for (const v of [pol.file || pol.name, pol.sha256 ? pol.sha256.slice(0, 16) : 'none',
        pol.loaded_at || '—', pol.last_error ? pol.last_error + ' (' + (pol.last_error_at || '') + ')' : 'none']) {
        tr.appendChild(Object.assign(document.createElement('td'), { textContent: v }));
      }
      tr.dataset.policy = pol.name;
      tb.appendChild(tr);
    }
    t.appendChild(tb);
    box.appendChild(t);
  }
  // What a room can be wired to (sources.lua): each camera with its stable
  // links and, per pixel format, its sizes with their highest rate; each
  // microphone with its channels and rates.
  devices(d) {
    const box = $('sys-devices');
    box.replaceChildren();
    if (!d || d.error) {
      box.textContent = 'Devices: ' + (d && d.error ? d.error : NONE);
      return;
    }
    const table = (caption, head, rows) => {
      const t = document.createElement('table');
      t.className = 'policy-table';
      const cap = Object.assign(document.createElement('caption'), { className: 'sr', textContent: caption });
      const tr = document.createElement('tr');
      for (const h of head) tr.appendChild(Object.assign(document.createElement('th'), { scope: 'col', textContent: h }));
      const th = document.createElement('thead');
      th.appendChild(tr);
      const tb = document.createElement('tbody');
      for (const r of rows) {
        const row = document.createElement('tr');
        for (const v of r) row.appendChild(Object.assign(document.createElement('td'), { textContent: v }));
        tb.appendChild(row);
      }
      t.append(cap, th, tb);
      return t;
    };
    const cams = Array.isArray(d.cameras) ? d.cameras : [];
    const mics = Array.isArray(d.microphones) ? d.microphones : [];
    const modes = (c) => (Array.isArray(c.formats) ? c.formats : []).filter((f) => f.supported).map((f) =>
      f.pixel_format + ': ' + (f.sizes || []).map((s) => s.width + 'x' + s.height + '@' +
        Math.max(0, ...(s.fps || []))).join(', ')).join('; ');
    box.append(cams.length
      ? table('Cameras', ['Device', 'Stable links', 'Card', 'Modes'], cams.map((c) => [c.path,
        (c.ids || []).join(' ') || 'none', c.busy ? 'in use' : (c.card || '') + ' (' + (c.driver || '') + ')',
        c.busy ? '' : modes(c) || 'none the source takes']))
      : Object.assign(document.createElement('p'), { textContent: 'No camera found.' }));
    box.append(mics.length
      ? table('Microphones', ['PCM', 'Name', 'Channels', 'Rates (Hz)'], mics.map((m) => [m.id, m.name,
        m.channels_min + '-' + m.channels_max, m.rate_min + '-' + m.rate_max]))
      : Object.assign(document.createElement('p'), { textContent: d.microphones_detail || 'No microphone found.' }));
  }
}
