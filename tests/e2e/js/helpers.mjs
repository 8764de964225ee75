// Shared helpers for the Switchboard end-to-end tests (Node's built-in test runner).
//
// Everything here talks to a real `switchboard serve` process over real sockets:
// - startServer() spawns the binary and waits for its "listening" line;
// - connect() / connectError() open real socket.io-client connections;
// - emitAck() sends an event and waits for its acknowledgement;
// - mintToken() signs HS256 JWTs like an application backend would;
// - backends() finds Redis and PostgreSQL for the multi-instance tests.

import { spawn, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Manager } from 'socket.io-client';
import assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = process.env.SWITCHBOARD_BIN || join(REPO_ROOT, 'target', 'debug', 'switchboard');

const READY_LINE = /^switchboard listening on (http:\/\/127\.0\.0\.1:(\d+))\s*$/;
const STDERR_KEEP = 64 * 1024;

/** Every server that is still running, so an aborted test file never leaks one. */
const liveServers = new Set();
/** Every socket opened by connect()/connectError(), closed by closeAllSockets(). */
const liveSockets = new Set();

process.on('exit', () => {
  for (const s of liveServers) {
    try {
      s.proc.kill('SIGKILL');
    } catch {
      /* already gone */
    }
    try {
      rmSync(s.dataDir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
});

export function randomId(prefix = 'u') {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Environment inherited by the server: the parent's, minus any SWITCHBOARD_* setting. */
function baseEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('SWITCHBOARD_')) env[k] = v;
  }
  if (!env.RUST_LOG) env.RUST_LOG = 'info';
  env.NO_COLOR = '1';
  return env;
}

/**
 * Starts `switchboard serve` on a free port.
 *
 * @param {object} [o]
 * @param {boolean} [o.dev=true] pass --dev
 * @param {Record<string,string>} [o.env] extra environment (SWITCHBOARD_* settings)
 * @param {string[]} [o.args] extra command-line arguments
 * @param {number} [o.timeoutMs=30000] how long to wait for the listening line
 * @param {string} [o.dataDir] reuse a data directory (default: a fresh temp dir, removed on stop)
 * @returns {Promise<{url:string, port:number, proc:import('node:child_process').ChildProcess,
 *   stop:(o?:{signal?:string, timeoutMs?:number})=>Promise<{code:number|null, signal:string|null}>,
 *   stderr:()=>string, exited:Promise<{code:number|null, signal:string|null}>, dataDir:string}>}
 */
export async function startServer({ dev = true, env = {}, args = [], timeoutMs = 30000, dataDir } = {}) {
  if (!existsSync(BIN)) {
    throw new Error(
      `switchboard binary not found at ${BIN}: build it with "cargo build -p switchboard-server" ` +
        'or point SWITCHBOARD_BIN at it',
    );
  }
  const ownDataDir = !dataDir;
  const dir = dataDir || mkdtempSync(join(tmpdir(), 'switchboard-e2e-'));
  const fullEnv = {
    ...baseEnv(),
    SWITCHBOARD_DATA_DIR: dir,
    SWITCHBOARD_SERVER__DATA_DIR: dir,
    SWITCHBOARD_STORE__PREFIX: `e2e-${randomBytes(5).toString('hex')}:`,
    ...env,
  };
  const argv = ['serve', ...(dev ? ['--dev'] : []), '--bind', '127.0.0.1:0', ...args];
  const proc = spawn(BIN, argv, { cwd: dir, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });

  let stderrBuf = '';
  let stdoutBuf = '';
  const stderr = () => stderrBuf;
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    stderrBuf += chunk;
    if (stderrBuf.length > STDERR_KEEP * 2) stderrBuf = stderrBuf.slice(-STDERR_KEEP);
  });

  const exited = new Promise((res) => {
    proc.on('exit', (code, signal) => res({ code, signal }));
  });
  const cleanupDir = () => {
    if (ownDataDir) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        /* best effort */
      }
    }
  };

  const handle = {
    proc,
    dataDir: dir,
    stderr,
    exited,
    env: fullEnv,
    url: '',
    port: 0,
    async stop({ signal = 'SIGTERM', timeoutMs: killAfter = 10000 } = {}) {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill(signal);
        const timer = setTimeout(() => proc.kill('SIGKILL'), killAfter);
        const r = await exited;
        clearTimeout(timer);
        liveServers.delete(handle);
        cleanupDir();
        return r;
      }
      liveServers.delete(handle);
      cleanupDir();
      return exited;
    },
  };
  liveServers.add(handle);

  try {
    const url = await new Promise((res, rej) => {
      const timer = setTimeout(
        () => rej(new Error(`server did not print its listening line within ${timeoutMs} ms`)),
        timeoutMs,
      );
      proc.on('error', (e) => {
        clearTimeout(timer);
        rej(new Error(`cannot spawn ${BIN}: ${e.message}`));
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        rej(new Error(`server exited before it was ready (code ${code}, signal ${signal})`));
      });
      proc.stdout.setEncoding('utf8');
      proc.stdout.on('data', (chunk) => {
        stdoutBuf += chunk;
        let nl;
        while ((nl = stdoutBuf.indexOf('\n')) >= 0) {
          const line = stdoutBuf.slice(0, nl);
          stdoutBuf = stdoutBuf.slice(nl + 1);
          const m = READY_LINE.exec(line);
          if (m) {
            clearTimeout(timer);
            res(m[1]);
          }
        }
      });
    });
    handle.url = url;
    handle.port = Number(new URL(url).port);
    // Keep draining stdout so the pipe never fills.
    proc.stdout.resume();
    return handle;
  } catch (e) {
    await handle.stop({ signal: 'SIGKILL' });
    e.message += `\n--- argv: ${argv.join(' ')}\n--- server stderr (tail) ---\n${tail(stderrBuf)}`;
    throw e;
  }
}

export function tail(text, n = 4000) {
  return text.length > n ? `…${text.slice(-n)}` : text;
}

/**
 * Wraps an async test body so a failure carries the server's stderr (tail).
 * Usage: test('x', withStderr(() => server, async () => { ... }))
 */
export function withStderr(getServers, fn) {
  return async (...a) => {
    try {
      return await fn(...a);
    } catch (e) {
      const servers = [getServers()].flat().filter(Boolean);
      for (const s of servers) {
        if (typeof s.stderr === 'function') {
          e.message += `\n--- server ${s.url} stderr (tail) ---\n${tail(s.stderr(), 3000)}`;
        }
      }
      throw e;
    }
  };
}

function newSocket(url, auth, opts = {}) {
  const { transports = ['websocket'], timeoutMs = 8000, ...rest } = opts;
  // One Manager per socket (like io(url, {forceNew: true})), so that the raw packets of
  // this connection can be observed before the socket handles them.
  const manager = new Manager(url, { transports, reconnection: false, timeout: timeoutMs, ...rest });
  manager.rawConnectError = undefined;
  manager.on('packet', (packet) => {
    if (packet.type === 4 /* CONNECT_ERROR */ && packet.nsp === '/') manager.rawConnectError = packet.data;
  });
  const socket = manager.socket('/', { auth });
  // Record every incoming event from the very start: the server may emit `session`
  // in the same network read as the CONNECT packet.
  socket.received = [];
  socket.waiters = [];
  socket.onAny((event, ...args) => {
    const rec = { event, args, at: Date.now(), consumed: false };
    socket.received.push(rec);
    for (const w of [...socket.waiters]) {
      if (w.event === event && w.predicate(...args)) {
        rec.consumed = true;
        w.resolve(args[0]);
        socket.waiters.splice(socket.waiters.indexOf(w), 1);
        break;
      }
    }
  });
  socket.disconnectedPromise = new Promise((res) => socket.once('disconnect', (reason) => res(reason)));
  liveSockets.add(socket);
  return socket;
}

/**
 * Connects a socket.io-client and resolves once connected; rejects with the
 * connect_error (whose `.data` holds the server's data) otherwise.
 * opts: { transports: ['websocket'] | ['polling'] | ..., timeoutMs, ...io options }
 */
export function connect(url, auth, opts = {}) {
  const socket = newSocket(url, auth, opts);
  return new Promise((res, rej) => {
    socket.once('connect', () => res(socket));
    socket.once('connect_error', (err) => {
      socket.close();
      liveSockets.delete(socket);
      rej(err);
    });
  });
}

/** Expects the handshake to be refused; resolves with the connect_error (err.data). */
export function connectError(url, auth, opts = {}) {
  const socket = newSocket(url, auth, opts);
  return new Promise((res, rej) => {
    socket.once('connect', () => {
      socket.close();
      rej(new Error(`expected the handshake to be refused, but it connected (auth ${JSON.stringify(auth)})`));
    });
    socket.once('connect_error', (err) => {
      socket.close();
      liveSockets.delete(socket);
      // The manager's 'packet' listener runs after the socket's: read it on the next turn.
      setImmediate(() => {
        err.wire = socket.io.rawConnectError;
        res(err);
      });
    });
  });
}

/**
 * Asserts a refused handshake: the CONNECT_ERROR packet's data on the wire is exactly
 * {message} (what socket.io-client turns into err.message; err.data stays undefined).
 */
export function assertRefused(err, message) {
  assert.deepEqual(err.wire, { message }, `connect_error data on the wire (err.message ${JSON.stringify(err.message)})`);
  assert.equal(err.message, message);
}

/**
 * Waits for an event on a socket created by connect(); events received earlier and not
 * yet consumed count. Resolves with the first argument.
 */
export function waitForEvent(socket, event, { timeoutMs = 5000, predicate = () => true } = {}) {
  const rec = socket.received.find((r) => !r.consumed && r.event === event && predicate(...r.args));
  if (rec) {
    rec.consumed = true;
    return Promise.resolve(rec.args[0]);
  }
  return new Promise((res, rej) => {
    const w = {
      event,
      predicate,
      resolve: (v) => {
        clearTimeout(timer);
        res(v);
      },
    };
    const timer = setTimeout(() => {
      socket.waiters.splice(socket.waiters.indexOf(w), 1);
      const seen = socket.received.map((r) => r.event).join(', ') || 'none';
      rej(new Error(`no "${event}" event within ${timeoutMs} ms (events seen: ${seen})`));
    }, timeoutMs);
    socket.waiters.push(w);
  });
}

/** Resolves with the disconnect reason, or rejects after timeoutMs. */
export function waitForDisconnect(socket, timeoutMs = 5000) {
  return withTimeout(socket.disconnectedPromise, timeoutMs, 'the socket was not disconnected');
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what} within ${ms} ms`)), ms);
    }),
  ]);
}

/**
 * Emits an event with an ack callback and resolves with the ack's first argument.
 * payload === undefined sends the event with no payload at all.
 */
export function emitAck(socket, event, payload, timeoutMs = 5000) {
  const args = payload === undefined ? [] : [payload];
  return new Promise((res, rej) => {
    const timer = setTimeout(
      () => rej(new Error(`no ack for "${event}" within ${timeoutMs} ms (payload ${JSON.stringify(payload)?.slice(0, 200)})`)),
      timeoutMs,
    );
    socket.emit(event, ...args, (response) => {
      clearTimeout(timer);
      res(response);
    });
  });
}

/** Closes every socket opened by this module (use in after/afterEach). */
export function closeAllSockets() {
  for (const s of liveSockets) s.close();
  liveSockets.clear();
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

/**
 * Signs an HS256 JWT. claims: { sub, name?, exp? (seconds), device?, ... }.
 * exp defaults to one hour from now.
 */
export function mintToken(secret, claims) {
  const body = { exp: Math.floor(Date.now() / 1000) + 3600, ...claims };
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify(body));
  const sig = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${sig}`;
}

/** Runs `switchboard token ...` with the given environment; returns the printed token. */
export function cliToken(env, args) {
  const r = spawnSync(BIN, ['token', ...args], { env: { ...baseEnv(), ...env }, encoding: 'utf8', timeout: 20000 });
  if (r.status !== 0) {
    throw new Error(`switchboard token ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  }
  return r.stdout.trim();
}

/** Minimal HTTP helper: resolves {status, headers, text, json}. */
export async function http(url, { method = 'GET', headers = {}, body } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['content-type'] ??= 'application/json';
  }
  const r = await fetch(url, init);
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: r.headers, text, json };
}

// ---------------------------------------------------------------------------
// Backends (Redis + PostgreSQL) for the multi-instance tests.

export const REDIS_URL = process.env.SWITCHBOARD_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.SWITCHBOARD_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
export const REQUIRE_BACKENDS = process.env.SWITCHBOARD_REQUIRE_BACKENDS === '1';

/** Sends PING over RESP; resolves true on PONG (AUTH first when the URL has a password). */
export function redisPing(redisUrl = REDIS_URL, timeoutMs = 2000) {
  const u = new URL(redisUrl);
  return new Promise((res) => {
    const sock = net.connect({ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) });
    let buf = '';
    const done = (ok) => {
      clearTimeout(timer);
      sock.destroy();
      res(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.on('error', () => done(false));
    sock.on('connect', () => {
      let cmd = '';
      if (u.password) {
        const user = decodeURIComponent(u.username || '');
        const pass = decodeURIComponent(u.password);
        const parts = user ? ['AUTH', user, pass] : ['AUTH', pass];
        cmd += `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`;
      }
      cmd += '*1\r\n$4\r\nPING\r\n';
      sock.write(cmd);
    });
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('+PONG')) done(true);
      else if (buf.includes('-')) done(false);
    });
  });
}

/** Deletes every Redis key under a prefix (best effort, via redis-cli when present). */
export function redisCleanup(prefix, redisUrl = REDIS_URL) {
  const r = spawnSync('sh', ['-c', 'redis-cli -u "$U" --scan --pattern "$P*" | xargs -r redis-cli -u "$U" del >/dev/null'], {
    env: { ...process.env, U: redisUrl, P: prefix },
    timeout: 10000,
  });
  return r.status === 0;
}

async function pgClient(url) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  await client.connect();
  return client;
}

/** Resolves null when PostgreSQL answers, or an error message. */
export async function pgCheck(url = DATABASE_URL) {
  try {
    const c = await pgClient(url);
    await c.query('select 1');
    await c.end();
    return null;
  } catch (e) {
    return e.message;
  }
}

/** Creates a fresh database; resolves {url, drop()}. */
export async function createTestDatabase(adminUrl = DATABASE_URL) {
  const name = `sb_e2e_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const admin = await pgClient(adminUrl);
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    name,
    url: u.toString(),
    async drop() {
      const c = await pgClient(adminUrl);
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/**
 * Checks that Redis and PostgreSQL are reachable. Resolves a skip message when they are not
 * (or throws when SWITCHBOARD_REQUIRE_BACKENDS=1), and null when both are there.
 */
export async function backendsSkipReason() {
  const problems = [];
  if (!(await redisPing())) problems.push(`Redis not reachable at ${REDIS_URL} (set SWITCHBOARD_TEST_REDIS_URL)`);
  const pgErr = await pgCheck();
  if (pgErr) problems.push(`PostgreSQL not reachable at ${redact(DATABASE_URL)}: ${pgErr} (set SWITCHBOARD_TEST_DATABASE_URL)`);
  if (problems.length === 0) return null;
  const msg = problems.join('; ');
  if (REQUIRE_BACKENDS) throw new Error(`SWITCHBOARD_REQUIRE_BACKENDS=1 but ${msg}`);
  return msg;
}

function redact(url) {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * Retries an async assertion until it passes or timeoutMs elapses (then rethrows the
 * last failure). For state that other sockets or instances update asynchronously.
 */
export async function eventually(fn, { timeoutMs = 3000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() >= deadline) throw e;
      await sleep(intervalMs);
    }
  }
}

// ---------------------------------------------------------------------------
// Shared test vocabulary: handshakes, ack checks and the recorded event log.

/**
 * Dev-mode handshake, resolved once `session` arrived (the server's handlers are in place).
 * `deviceId: null` leaves the device id out of the handshake (the server picks one).
 */
export async function dev(server, userId, name, deviceId = 'd1', opts) {
  const auth = deviceId === null ? { userId, name } : { userId, name, deviceId };
  const socket = await connect(server.url, auth, opts);
  await waitForEvent(socket, 'session', { timeoutMs: 8000 });
  return socket;
}

/** Asserts a successful ack and returns it. */
export function ok(ack, what) {
  assert.equal(ack?.success, true, `${what}: expected success, got ${JSON.stringify(ack)?.slice(0, 400)}`);
  return ack;
}

/** Asserts a refusal `{success:false, code, error}` with this code and returns it. */
export function failed(ack, code, what) {
  assert.equal(ack?.success, false, `${what}: expected ${code}, got ${JSON.stringify(ack)?.slice(0, 400)}`);
  assert.equal(ack.code, code, `${what}: ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error, 'string', `${what}: error message`);
  return ack;
}

/** Emits with an ack (10 s) and asserts it succeeded. */
export async function call(socket, event, payload, what = event, timeoutMs = 10_000) {
  return ok(await emitAck(socket, event, payload, timeoutMs), what);
}

/** The first arguments of the `event`s a socket received, from index `since` of its log. */
export function eventsOf(socket, event, predicate = () => true, since = 0) {
  return socket.received
    .slice(since)
    .filter((r) => r.event === event && predicate(...r.args))
    .map((r) => r.args[0]);
}

/** Waits `ms`, then asserts the socket received none of `events` (one name or several). */
export async function expectNone(socket, events, { ms = 700, since = 0, predicate = () => true, why = '' } = {}) {
  if (ms > 0) await sleep(ms);
  for (const event of [events].flat()) {
    assert.deepEqual(eventsOf(socket, event, predicate, since), [], `unexpected "${event}" ${why}`);
  }
}

/**
 * A describe() over two instances sharing Redis (under a fresh key prefix) and a fresh
 * PostgreSQL database, or a skipped test when those backends are missing. The instances
 * start in before(), one after the other (both run the migrations), and stop in after().
 * Await it at the top level. `body(pair)` registers the tests; pair.a / pair.b (the
 * servers), pair.db, pair.env and pair.args are set once before() ran.
 */
export async function describeTwoInstances(title, { name, env = {} }, body) {
  const gate = await backendGate();
  const pair = { prefix: `e2e-${name}-${randomBytes(5).toString('hex')}:` };
  describe(title, { skip: gate.skip ? `backends unavailable: ${gate.skip}` : false }, () => {
    before(async () => {
      if (gate.error) throw gate.error;
      pair.db = await createTestDatabase();
      pair.env = { SWITCHBOARD_STORE__PREFIX: pair.prefix, ...env };
      pair.args = ['--redis-url', REDIS_URL, '--database-url', pair.db.url];
      pair.a = await startServer({ dev: true, env: pair.env, args: pair.args });
      pair.b = await startServer({ dev: true, env: pair.env, args: pair.args });
    });
    after(async () => {
      closeAllSockets();
      await Promise.allSettled([pair.a?.stop(), pair.b?.stop()]);
      if (pair.db) await pair.db.drop().catch((e) => console.log(`# could not drop ${pair.db.name}: ${e.message}`));
      redisCleanup(pair.prefix);
    });
    body(pair);
  });
}

/**
 * Whether Redis + PostgreSQL are here (see backendsSkipReason), checked once per test file;
 * a missing backend under SWITCHBOARD_REQUIRE_BACKENDS=1 fails the suite's before().
 */
let backendGateOnce;
function backendGate() {
  backendGateOnce ??= backendsSkipReason().then(
    (skip) => {
      if (skip) console.log(`# skipping the Redis + PostgreSQL suites: ${skip}`);
      return { skip, error: null };
    },
    (error) => ({ skip: null, error }),
  );
  return backendGateOnce;
}
