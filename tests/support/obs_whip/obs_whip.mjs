// Publishes H.264 + Opus to a WHIP endpoint the way OBS Studio's WHIP
// output does, with the same WebRTC stack (libdatachannel, here through
// node-datachannel):
//   node obs_whip.mjs <whip-url> <token> <seconds>
// As OBS: one PeerConnection with a sendonly Opus audio track (pt 111) and
// a sendonly H.264 video track (pt 96, packetization-mode=1), no trickle:
// the offer is taken right after setLocalDescription, without candidates,
// POSTed, the 201 answer applied (no PATCH ever); the media are
// packetized by libdatachannel (H264RtpPacketizer, RtpPacketizer for
// Opus, RTCP sender reports, NACK responder), then DELETE on the Location.
// The media are real encodings made first by ffmpeg: libx264 (baseline,
// a keyframe every second, Annex-B with access unit delimiters) and
// libopus (20 ms frames in Ogg), sent in real time.
// Prints one JSON line: {"status", "location", "recording_id",
// "offer_candidates_gathered", "offer_candidates_sent", "connected_ms", "published_ms",
// "video_frames", "audio_frames", "width", "height", "delete_status",
// "error"} and exits 0 when the publish ran, 1 otherwise.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import nodeDataChannel from 'node-datachannel';

const [url, token, secondsArg] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: node obs_whip.mjs <whip-url> <token> <seconds>');
  process.exit(2);
}
const seconds = Number(secondsArg || 5);
const WIDTH = 640;
const HEIGHT = 360;
const FPS = 30;

// ---- the media, encoded first --------------------------------------------------------

function encode(dir) {
  const h264 = path.join(dir, 'v.h264');
  const ogg = path.join(dir, 'a.ogg');
  // A little longer than the publish, so that the sender never runs dry.
  const t = String(seconds + 2);
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${WIDTH}x${HEIGHT}:rate=${FPS}`,
    '-t', t, '-c:v', 'libx264', '-profile:v', 'baseline', '-preset', 'veryfast', '-tune', 'zerolatency',
    '-g', String(FPS), '-bf', '0', '-pix_fmt', 'yuv420p', '-x264-params', 'aud=1:repeat-headers=1',
    '-f', 'h264', '-y', h264]);
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', t,
    '-ac', '2', '-c:a', 'libopus', '-b:a', '64k', '-frame_duration', '20', '-f', 'ogg', '-y', ogg]);
  return { video: accessUnits(fs.readFileSync(h264)), audio: oggPackets(fs.readFileSync(ogg)).slice(2) };
}

// Annex-B into access units: each starts at an access unit delimiter (NAL
// type 9), which is left out (WebRTC senders do not send it).
function accessUnits(buf) {
  const starts = [];
  for (let i = 0; i + 3 < buf.length; i++) {
    if (buf[i] === 0 && buf[i + 1] === 0 && buf[i + 2] === 1) {
      starts.push(i + 3);
      i += 2;
    }
  }
  const nals = starts.map((s, k) => {
    let end = k + 1 < starts.length ? starts[k + 1] - 3 : buf.length;
    while (end > s && buf[end - 1] === 0) end--; // a 4-byte start code's leading zero
    return buf.subarray(s, end);
  });
  const units = [];
  let cur = null;
  for (const nal of nals) {
    if ((nal[0] & 0x1f) === 9) {
      cur = [];
      units.push(cur);
    } else if (cur) {
      cur.push(Buffer.concat([Buffer.from([0, 0, 0, 1]), nal]));
    }
  }
  return units.filter((u) => u.length).map((u) => Buffer.concat(u));
}

// Ogg pages into packets (RFC 3533: a lacing value of 255 continues the packet).
function oggPackets(buf) {
  const packets = [];
  let pending = [];
  for (let at = 0; at + 27 <= buf.length;) {
    if (buf.toString('latin1', at, at + 4) !== 'OggS') throw new Error('not an Ogg page at ' + at);
    const nseg = buf[at + 26];
    let data = at + 27 + nseg;
    for (let k = 0; k < nseg; k++) {
      const len = buf[at + 27 + k];
      pending.push(buf.subarray(data, data + len));
      data += len;
      if (len < 255) {
        packets.push(Buffer.concat(pending));
        pending = [];
      }
    }
    at = data;
  }
  return packets;
}

// ---- the publish ---------------------------------------------------------------------

const out = {};
let pc;
let ok = false;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'obs-whip-'));
try {
  const media = encode(tmp);
  out.width = WIDTH;
  out.height = HEIGHT;
  const t0 = performance.now();
  pc = new nodeDataChannel.PeerConnection('obs', { iceServers: [], disableAutoGathering: false });
  const state = { connected: false, failed: false };
  pc.onStateChange((s) => {
    if (s === 'connected') state.connected = true;
    if (s === 'failed' || s === 'closed') state.failed = true;
  });

  const audio = new nodeDataChannel.Audio('0', 'SendOnly');
  audio.addOpusCodec(111);
  audio.addSSRC(0x11111111, 'obs-audio', 'obs', 'obs-audio');
  const atrack = pc.addTrack(audio);
  const acfg = new nodeDataChannel.RtpPacketizationConfig(0x11111111, 'obs-audio', 111, 48000);
  const apack = new nodeDataChannel.RtpPacketizer(acfg);
  apack.addToChain(new nodeDataChannel.RtcpSrReporter(acfg));
  atrack.setMediaHandler(apack);

  const video = new nodeDataChannel.Video('1', 'SendOnly');
  video.addH264Codec(96, 'profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1');
  video.addSSRC(0x22222222, 'obs-video', 'obs', 'obs-video');
  const vtrack = pc.addTrack(video);
  const vcfg = new nodeDataChannel.RtpPacketizationConfig(0x22222222, 'obs-video', 96, 90000);
  const vpack = new nodeDataChannel.H264RtpPacketizer('LongStartSequence', vcfg, 1200);
  vpack.addToChain(new nodeDataChannel.RtcpSrReporter(vcfg));
  vpack.addToChain(new nodeDataChannel.RtcpNackResponder());
  vtrack.setMediaHandler(vpack);

  // OBS: the offer right after setLocalDescription, no trickle. The
  // server must find the publisher by its STUN checks alone, so the offer
  // goes without the host candidates libdatachannel may have gathered by
  // then (counted in offer_candidates_gathered).
  pc.setLocalDescription('offer');
  const gathered = pc.localDescription().sdp;
  out.offer_candidates_gathered = (gathered.match(/^a=candidate:/gm) || []).length;
  const offer = gathered.split('\r\n').filter((l) => !/^a=(candidate:|end-of-candidates)/.test(l)).join('\r\n');
  out.offer_candidates_sent = (offer.match(/^a=candidate:/gm) || []).length;
  const res = await fetch(url, {
    method: 'POST', body: offer,
    headers: { 'Content-Type': 'application/sdp', Authorization: 'Bearer ' + token },
  });
  out.status = res.status;
  const answer = await res.text();
  if (res.status !== 201) throw new Error('POST: ' + res.status + ' ' + answer);
  out.location = res.headers.get('Location');
  out.recording_id = res.headers.get('X-Recording-Id');
  pc.setRemoteDescription(answer, 'answer');

  const deadline = performance.now() + 15000;
  while (!(state.connected && vtrack.isOpen() && atrack.isOpen())) {
    if (state.failed || performance.now() > deadline)
      throw new Error('not connected within 15 s: ' + pc.state());
    await new Promise((r) => setTimeout(r, 10));
  }
  out.connected_ms = Math.round(performance.now() - t0);

  // Real time: video frame i at i/FPS s, audio packet j at j*20 ms.
  const v0 = 1000;
  const a0 = 5000;
  let vi = 0;
  let ai = 0;
  const t1 = performance.now();
  for (;;) {
    const now = (performance.now() - t1) / 1000;
    if (now >= seconds) break;
    while (vi < media.video.length && vi / FPS <= now) {
      vcfg.timestamp = (v0 + vi * (90000 / FPS)) >>> 0;
      vtrack.sendMessageBinary(media.video[vi++]);
    }
    while (ai < media.audio.length && ai * 0.02 <= now) {
      acfg.timestamp = (a0 + ai * 960) >>> 0;
      atrack.sendMessageBinary(media.audio[ai++]);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  out.published_ms = Math.round(performance.now() - t1);
  out.video_frames = vi;
  out.audio_frames = ai;
  const del = await fetch(new URL(out.location, url).toString(), {
    method: 'DELETE', headers: { Authorization: 'Bearer ' + token },
  });
  out.delete_status = del.status;
  ok = true;
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
} finally {
  if (pc) pc.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
nodeDataChannel.cleanup();
process.exit(ok ? 0 : 1);
