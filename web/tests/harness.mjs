// Browser end-to-end harness: a real `switchboard serve --dev` serving the built client
// (web/dist), and Debian's Chromium driven by playwright-core with fake camera and
// microphone. One browser per test file; one context (a separate person: own storage,
// own socket) per user.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const WEB_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = resolve(WEB_DIR, '..');
export const BIN = process.env.SWITCHBOARD_BIN || join(REPO_ROOT, 'target', 'debug', 'switchboard');
export const DIST = join(WEB_DIR, 'dist');
export const ARTIFACTS = join(WEB_DIR, 'test-results');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const READY_LINE = /switchboard listening on (http:\/\/127\.0\.0\.1:\d+)/;

/** Starts the server on a free port with the client at `/`. `env` adds SWITCHBOARD_* settings. */
export async function startServer(env = {}) {
  // Against a server someone already runs (e.g. `npm run dev`'s proxy), for trying scenarios by hand.
  if (process.env.SWITCHBOARD_WEB_TEST_URL) {
    return { url: process.env.SWITCHBOARD_WEB_TEST_URL, log: () => '', stop: async () => undefined };
  }
  assert.ok(existsSync(BIN), `switchboard binary not found at ${BIN} (cargo build -p switchboard-server)`);
  assert.ok(existsSync(join(DIST, 'index.html')), `web client not built at ${DIST} (make web)`);
  const dataDir = mkdtempSync(join(tmpdir(), 'switchboard-web-'));
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_')));
  const proc = spawn(BIN, ['serve', '--dev', '--bind', '127.0.0.1:0'], {
    cwd: dataDir,
    env: {
      ...clean,
      RUST_LOG: process.env.RUST_LOG || 'warn,switchboard_server=info',
      NO_COLOR: '1',
      SWITCHBOARD_SERVER__DATA_DIR: dataDir,
      SWITCHBOARD_STORE__PREFIX: `web-${randomBytes(4).toString('hex')}:`,
      SWITCHBOARD_WEB__STATIC_DIR: DIST,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const url = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`server did not start:\n${log}`)), 30_000);
    const onData = (chunk) => {
      log += chunk;
      const m = log.match(READY_LINE);
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
    };
    proc.stdout.setEncoding('utf8').on('data', onData);
    proc.stderr.setEncoding('utf8').on('data', (c) => {
      log += c;
      if (log.length > 200_000) log = log.slice(-100_000);
      onData('');
    });
    proc.on('exit', (code) => rej(new Error(`server exited (${code}):\n${log}`)));
  });
  return {
    url,
    log: () => log,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => proc.once('exit', r));
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection',
      // Plain host candidates: the test machine has no mDNS responder.
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      '--no-sandbox',
      '--mute-audio',
    ],
  });
}

/**
 * A person at a browser: their own context, signed in by name (dev mode). Console errors and
 * uncaught exceptions are collected so a test can assert the app logged none.
 */
export async function signIn(browser, url, name, { viewport = { width: 1280, height: 800 } } = {}) {
  const context = await browser.newContext({ viewport, permissions: ['camera', 'microphone'] });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  page.on('pageerror', (err) => errors.push(String(err)));
  await page.goto(url);
  await page.getByPlaceholder('e.g. Alice').fill(name);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('connection-state').filter({ hasText: 'Connected' }).waitFor();
  return { name, userId: name.toLowerCase(), context, page, errors };
}

export async function screenshot(person, file) {
  await person.page.screenshot({ path: join(ARTIFACTS, file) });
}

/** Waits until the <video> in `selector` has decoded frames and keeps decoding. */
export async function expectVideoDecoding(page, selector, what) {
  const frames = () =>
    page.locator(selector).evaluate((v) => (v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0) || 0);
  await page.locator(selector).waitFor({ timeout: 20_000 });
  await page.waitForFunction(
    (sel) => {
      const v = document.querySelector(sel);
      return !!v && v.videoWidth > 0 && (v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0) > 0;
    },
    selector,
    { timeout: 20_000 },
  ).catch(async (e) => {
    // Whether RTP arrives at all (a muted track has none) tells a media path from a decoding problem.
    const tracks = await page
      .locator(selector)
      .evaluate((v) => (v.srcObject?.getVideoTracks?.() ?? []).map((t) => `${t.readyState}${t.muted ? ' muted' : ''}`).join(', '))
      .catch(() => 'unknown');
    throw new Error(`${what}: no decoded video frames (video tracks: ${tracks || 'none'}; ${e.message})`);
  });
  const first = await frames();
  await page.waitForFunction(
    ([sel, n]) => (document.querySelector(sel)?.getVideoPlaybackQuality?.().totalVideoFrames ?? 0) > n,
    [selector, first],
    { timeout: 10_000 },
  );
}

export function toast(page, text) {
  return page.getByTestId('toast').filter({ hasText: text });
}
