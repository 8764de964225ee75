// Two headless Chromium pages with unmodified mediasoup-client (protocol §8): each joins
// one room, publishes its fake camera and microphone, and consumes the other's. getStats
// must show decoded video frames and received audio packets on both sides.
//
// Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium) is driven by playwright-core;
// no browser is downloaded. Media stays on loopback.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { startServer, randomId, sleep } from '../js/helpers.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const BUNDLE = join(HERE, 'dist', 'page.bundle.js');

let server;
let pages;
let browser;

function servePage() {
  const html = readFileSync(join(HERE, 'index.html'));
  const bundle = readFileSync(BUNDLE);
  const http = createServer((req, res) => {
    if (req.url === '/page.bundle.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end(bundle);
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(html);
  });
  return new Promise((resolve) => http.listen(0, '127.0.0.1', () => resolve(http)));
}

before(async () => {
  if (!existsSync(BUNDLE)) {
    execFileSync(join(HERE, 'node_modules', '.bin', 'esbuild'),
      ['page.js', '--bundle', '--format=esm', `--outfile=${BUNDLE}`], { cwd: HERE });
  }
  server = await startServer({
    env: {
      SWITCHBOARD_MEDIA__WORKERS: '1',
      SWITCHBOARD_MEDIA__PORT_BASE: '0',
      SWITCHBOARD_MEDIA__LISTEN_IP: '127.0.0.1',
    },
  });
  pages = await servePage();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection',
      '--no-sandbox',
      // Keep WebRTC on loopback: no mDNS host-name obfuscation, no other interfaces.
      '--disable-features=WebRtcHideLocalIpsWithMdns',
    ],
  });
});

after(async () => {
  await browser?.close();
  pages?.close();
  await server?.stop();
});

test('two browsers exchange audio and video through the SFU', { timeout: 120000 }, async () => {
  const origin = `http://127.0.0.1:${pages.address().port}/`;
  const context = await browser.newContext();
  const [a, b] = await Promise.all([context.newPage(), context.newPage()]);
  const errors = [];
  for (const page of [a, b]) {
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(origin);
    await page.waitForFunction(() => typeof window.joinCall === 'function');
  }
  const roomId = await a.evaluate((args) => window.joinCall(args), {
    url: server.url,
    userId: randomId('alice'),
  });
  await b.evaluate((args) => window.joinCall(args), { url: server.url, userId: randomId('bob'), roomId });

  const deadline = Date.now() + 60000;
  let stats;
  while (Date.now() < deadline) {
    stats = await Promise.all([a, b].map((p) => p.evaluate(() => window.mediaStats())));
    if (stats.every((s) => s.framesDecoded >= 10 && s.audioPackets >= 50)) break;
    await sleep(500);
  }
  assert.deepEqual(errors, []);
  for (const [who, s] of [['first', stats[0]], ['second', stats[1]]]) {
    assert.equal(s.consumers, 2, `${who} page consumes the other's audio and video: ${JSON.stringify(s)}`);
    assert.ok(s.framesDecoded >= 10, `${who} page decodes video: ${JSON.stringify(s)}\n${server.stderr().slice(-3000)}`);
    assert.ok(s.audioPackets >= 50, `${who} page receives audio: ${JSON.stringify(s)}`);
  }
  await context.close();
});
