// reference_client: the reference system's TypeScript client snippet (start
// with quality=high, stop, list), run unchanged under Node 20 against an
// edgerec server. Only what a browser supplies is added: the base URL
// (Node's fetch needs absolute URLs) and a report of what came back.
//
// Environment: EDGEREC_URL (https://127.0.0.1:port), EDGEREC_TOKEN,
// EDGEREC_ROOM. TLS: run with NODE_EXTRA_CA_CERTS=<server cert.pem> (or
// NODE_TLS_REJECT_UNAUTHORIZED=0). Prints one JSON object on stdout.
const base = process.env.EDGEREC_URL;
const token = process.env.EDGEREC_TOKEN;
const roomId = process.env.EDGEREC_ROOM || 'lobby';
const report = {};
const nodeFetch = globalThis.fetch;
const fetch = async (path, init) => {
  const res = await nodeFetch(new URL(path, base), init);
  const copy = res.clone();
  report[`${(init && init.method) || 'GET'} ${path}`] = { status: res.status, body: await copy.json() };
  return res;
};

// --- the reference snippet, as published ---------------------------------
// Start recording
const response = await fetch(
  `/api/webrtc/rooms/${roomId}/recording/start?quality=high`,
  {
    method: 'POST',
    headers: { 'Authorization': `Bearer ${token}` }
  }
);
const { recording_id } = await response.json();

// Stop recording
await fetch(
  `/api/webrtc/rooms/${roomId}/recording/${recording_id}/stop`,
  {
    method: 'POST',
    headers: { 'Authorization': `Bearer ${token}` }
  }
);

// Get recordings
const recordings = await fetch(
  `/api/webrtc/rooms/${roomId}/recordings`,
  {
    headers: { 'Authorization': `Bearer ${token}` }
  }
);
// ---------------------------------------------------------------------------

console.log(JSON.stringify({ recording_id, list: await recordings.json(), calls: report }));
