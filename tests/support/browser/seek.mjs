// Plays a recording in Debian's chromium and seeks to its middle:
//   node seek.mjs <video-url> [<video-url> ...]
// For each URL, a page holding one <video> element loads it (the URL
// carries ?access_token=, as a browser page would), waits for its
// metadata, seeks to half the duration and waits until a frame at that
// position is decoded. Prints one JSON line per URL:
//   {"url", "duration", "target", "currentTime", "readyState", "frame",
//    "mediaTime", "error"}
// and exits 0 when every URL was played, 1 otherwise.
import { launchChromium } from './chromium.mjs';

const urls = process.argv.slice(2);
if (urls.length === 0) {
  console.error('usage: node seek.mjs <video-url> ...');
  process.exit(2);
}

let failed = false;
let browser;
try {
  browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
  const { context } = browser;
  for (const url of urls) {
    const page = await context.newPage();
    const result = await page.evaluate(async (src) => {
      const out = { url: src.replace(/access_token=[^&]*/, 'access_token=...') };
      const v = document.createElement('video');
      v.muted = true;
      v.preload = 'auto';
      document.body.appendChild(v);
      const once = (name, ms) => new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no ' + name + ' within ' + ms + ' ms')), ms);
        v.addEventListener(name, () => { clearTimeout(t); resolve(); }, { once: true });
        v.addEventListener('error', () => {
          clearTimeout(t);
          reject(new Error('media error ' + (v.error ? v.error.code + ' ' + v.error.message : '?')));
        }, { once: true });
      });
      try {
        const meta = once('loadedmetadata', 15000);
        v.src = src;
        await meta;
        out.duration = v.duration;
        out.target = v.duration / 2;
        const seeked = once('seeked', 15000);
        v.currentTime = out.target;
        await seeked;
        // A frame at the new position is decoded and handed to the compositor.
        const frame = new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('no frame presented after the seek')), 10000);
          v.requestVideoFrameCallback((now, md) => { clearTimeout(t); resolve(md); });
        });
        await v.play();
        const md = await frame;
        v.pause();
        out.frame = true;
        out.mediaTime = md.mediaTime;
        out.width = md.width;
        out.height = md.height;
        out.currentTime = v.currentTime;
        out.readyState = v.readyState;
      } catch (e) {
        out.error = String(e && e.message ? e.message : e);
        out.readyState = v.readyState;
      }
      return out;
    }, url);
    console.log(JSON.stringify(result));
    if (result.error) {
      failed = true;
    }
    await page.close();
  }
} catch (e) {
  console.error('browser: ' + (e && e.stack ? e.stack : e));
  failed = true;
} finally {
  if (browser) {
    await browser.close();
  }
}
process.exit(failed ? 1 : 0);
