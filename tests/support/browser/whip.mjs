// Publishes Debian chromium's fake camera and microphone to a WHIP endpoint:
//   node whip.mjs <whip-url> <token> <seconds> [vp8|h264|vp8-only|h264-only|any] [badfp]
// vp8/h264 put that codec first in the offer; vp8-only/h264-only offer no other video codec.
// 'badfp' sends the offer with a DTLS fingerprint that is not the
// browser's certificate's (the endpoint must refuse its media).
// The page lives on another origin (a plain HTTP server this script runs
// on 127.0.0.1), so the POST goes through CORS like a real web
// publisher's. It follows RFC 9725: POST the offer (non-trickle: after
// ICE gathering), apply the 201 answer, publish, DELETE the Location.
// Prints one JSON line: {"status", "location", "connected_ms",
// "video": {codec, framesEncoded, packetsSent, nackCount, pliCount,
// firCount, frameWidth, frameHeight, targetBitrate},
// "audio": {codec, packetsSent}, "delete_status", "video_frames_at_delete",
// "published_ms",
// "error"} and exits 0 when the publish ran, 1 otherwise.
import http from 'node:http';
import { launchChromium } from './chromium.mjs';

const [url, token, secondsArg, codec = 'any', mode = ''] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: node whip.mjs <whip-url> <token> <seconds> [vp8|h264|any]');
  process.exit(2);
}
const seconds = Number(secondsArg || 5);
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html' });
  res.end('<!doctype html><title>whip</title><body></body>');
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = 'http://127.0.0.1:' + server.address().port;
let browser;
let ok = false;
try {
  browser = await launchChromium(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection', '--ignore-certificate-errors']);
  const page = await browser.context.newPage();
  await page.goto(origin + '/publish.html');
  const result = await page.evaluate(async ({ url, token, seconds, codec, mode }) => {
    const out = {};
    const t0 = performance.now();
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: { width: 640, height: 360, frameRate: 30 }, audio: true,
      });
      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
      for (const track of stream.getTracks()) {
        const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
        if (track.kind === 'video' && codec !== 'any') {
          const caps = RTCRtpSender.getCapabilities('video').codecs;
          const name = codec.replace(/-only$/, '');
          const want = caps.filter((c) => c.mimeType.toLowerCase() === 'video/' + name);
          tr.setCodecPreferences(codec.endsWith('-only') ? want : want.concat(caps.filter((c) => !want.includes(c))));
        }
      }
      await pc.setLocalDescription(await pc.createOffer());
      // Non-trickle: wait for gathering (bounded), like OBS.
      await new Promise((resolve) => {
        if (pc.iceGatheringState === 'complete') return resolve();
        const t = setTimeout(resolve, 3000);
        pc.addEventListener('icegatheringstatechange', () => {
          if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
        });
      });
      let offer = pc.localDescription.sdp;
      if (mode === 'badfp') {
        // Same form, other bytes: flip the first hex pair of every fingerprint.
        offer = offer.replace(/a=fingerprint:sha-256 ([0-9A-F]{2})/g, (m, h) =>
          'a=fingerprint:sha-256 ' + ((parseInt(h, 16) ^ 0xff).toString(16).toUpperCase().padStart(2, '0')));
      }
      const res = await fetch(url, {
        method: 'POST', body: offer,
        headers: { 'Content-Type': 'application/sdp', Authorization: 'Bearer ' + token },
      });
      out.status = res.status;
      const text = await res.text();
      if (res.status !== 201) {
        out.error = 'POST: ' + res.status + ' ' + text;
        return out;
      }
      out.location = res.headers.get('Location');
      out.recording_id = res.headers.get('X-Recording-Id');
      await pc.setRemoteDescription({ type: 'answer', sdp: text });
      out.states = [];
      pc.addEventListener('connectionstatechange', () => out.states.push(pc.connectionState));
      await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('not connected within 15 s: ' + pc.connectionState)), 15000);
        const check = () => {
          if (pc.connectionState === 'connected') { clearTimeout(t); resolve(); }
          if (pc.connectionState === 'failed') { clearTimeout(t); reject(new Error('connection failed')); }
        };
        pc.addEventListener('connectionstatechange', check);
        check();
      });
      out.connected_ms = Math.round(performance.now() - t0);
      const t1 = performance.now();
      await new Promise((r) => setTimeout(r, seconds * 1000));
      out.published_ms = Math.round(performance.now() - t1);
      const stats = await pc.getStats();
      const codecs = {};
      stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
      stats.forEach((s) => {
        if (s.type !== 'outbound-rtp') return;
        if (s.kind === 'video') {
          out.video = {
            codec: codecs[s.codecId], framesEncoded: s.framesEncoded, packetsSent: s.packetsSent,
            nackCount: s.nackCount, pliCount: s.pliCount, firCount: s.firCount,
            frameWidth: s.frameWidth, frameHeight: s.frameHeight, targetBitrate: s.targetBitrate,
            retransmittedPacketsSent: s.retransmittedPacketsSent,
          };
        } else {
          out.audio = { codec: codecs[s.codecId], packetsSent: s.packetsSent };
        }
      });
      const loc = new URL(out.location, url).toString();
      // The camera stops before the DELETE, so the encoder's count read
      // after it is final (Chromium serves getStats from a short cache: a
      // read right after the one above could miss the last frames sent).
      pc.getSenders().forEach((sender) => { if (sender.track) sender.track.stop(); });
      await new Promise((r) => setTimeout(r, 300));
      const del = await fetch(loc, { method: 'DELETE', headers: { Authorization: 'Bearer ' + token } });
      out.delete_status = del.status;
      // Frames encoded until the DELETE was answered: no more can be in the file.
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video') out.video_frames_at_delete = s.framesEncoded;
      });
      pc.close();
    } catch (e) {
      out.error = String(e && e.message ? e.message : e);
    }
    return out;
  }, { url, token, seconds, codec, mode });
  console.log(JSON.stringify(result));
  ok = !result.error;
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.stack ? e.stack : e) }));
} finally {
  if (browser) await browser.close();
  server.close();
}
process.exit(ok ? 0 : 1);
