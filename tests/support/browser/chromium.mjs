// Debian's chromium as the browser tests start it: headless, a fresh
// profile in a temporary directory, the server's self-signed certificate
// accepted, nothing fetched in the background. 'extraArgs' add flags.
// Returns { context, close } where close() ends it and removes the profile.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export async function launchChromium(extraArgs = []) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'edgerec-chromium-'));
  const remove = () => fs.rmSync(profile, { recursive: true, force: true });
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      ignoreHTTPSErrors: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs],
    });
    return { context, close: async () => { await context.close(); remove(); } };
  } catch (e) {
    remove();
    throw e;
  }
}
