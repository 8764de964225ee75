// Redis outage and recovery (docs/protocol.md "Backends down", docs/operations.md "When a
// backend goes away"): while Redis is unreachable, handshakes are refused with `unavailable`
// and /health answers 503 naming the store; when Redis returns, the same server process
// recovers by itself, including cross-socket delivery through the Socket.IO Redis adapter.
//
// Uses a private `redis-server` on a free port (never the shared one on 6379), killed and
// restarted by the test. Skipped with a message when `redis-server` is not on PATH, unless
// SWITCHBOARD_REQUIRE_BACKENDS=1, when it fails instead.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  REQUIRE_BACKENDS,
  assertRefused,
  closeAllSockets,
  connect,
  connectError,
  emitAck,
  eventually,
  http,
  randomId,
  redisPing,
  sleep,
  startServer,
  tail,
  waitForDisconnect,
  waitForEvent,
  withStderr,
  withTimeout,
} from './helpers.mjs';

const REDIS_BIN = process.env.SWITCHBOARD_TEST_REDIS_SERVER || 'redis-server';

/** How long a refused handshake may take while Redis is down (the server must not hang). */
const REFUSAL_WITHIN_MS = 5000;
/** How long the server may take to notice that Redis is back. */
const RECOVERY_WITHIN_MS = 15000;

function redisServerMissing() {
  const r = spawnSync(REDIS_BIN, ['--version'], { encoding: 'utf8', timeout: 5000 });
  if (r.error) return `${REDIS_BIN} is not runnable (${r.error.code || r.error.message})`;
  if (r.status !== 0) return `${REDIS_BIN} --version exited with ${r.status}: ${r.stderr}`;
  return null;
}

/** A TCP port nobody listens on right now (the kernel's pick). */
function freePort() {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

/** Every redis-server this file started, killed on exit even if the run is aborted. */
const liveRedis = new Set();
process.on('exit', () => {
  for (const p of liveRedis) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

/**
 * A private, throw-away redis-server: no persistence, loopback only. start() can be called
 * again after kill() to bring it back on the same port.
 */
class PrivateRedis {
  constructor(port, dir) {
    this.port = port;
    this.dir = dir;
    this.url = `redis://127.0.0.1:${port}`;
    this.proc = null;
    this.log = '';
  }

  async start(timeoutMs = 5000) {
    const proc = spawn(
      REDIS_BIN,
      [
        '--port', String(this.port),
        '--bind', '127.0.0.1',
        '--save', '',
        '--appendonly', 'no',
        '--dir', this.dir,
        '--protected-mode', 'no',
        '--loglevel', 'warning',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = proc;
    liveRedis.add(proc);
    const keep = (chunk) => {
      this.log = (this.log + chunk).slice(-8000);
    };
    proc.stdout.setEncoding('utf8').on('data', keep);
    proc.stderr.setEncoding('utf8').on('data', keep);
    proc.exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
    proc.exited.then(() => liveRedis.delete(proc));
    proc.on('error', (e) => keep(`spawn error: ${e.message}\n`));

    const deadline = Date.now() + timeoutMs;
    while (!(await redisPing(this.url, 500))) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`redis-server on port ${this.port} exited at start:\n${tail(this.log, 2000)}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`redis-server on port ${this.port} did not answer PING within ${timeoutMs} ms:\n${tail(this.log, 2000)}`);
      }
      await sleep(50);
    }
  }

  /** SIGKILL (no clean shutdown) and wait until the process is gone and the port is closed. */
  async kill() {
    const proc = this.proc;
    if (!proc) return;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await withTimeout(proc.exited, 5000, 'redis-server did not exit after SIGKILL');
    this.proc = null;
  }
}

/** GET /health; resolves {status, json}. */
async function health(server) {
  const r = await http(`${server.url}/health`);
  return { status: r.status, json: r.json, text: r.text };
}

function assertAlive(server) {
  assert.equal(server.proc.exitCode, null, `the server exited (code ${server.proc.exitCode})`);
  assert.equal(server.proc.signalCode, null, `the server was killed (${server.proc.signalCode})`);
}

/**
 * Connects two sockets of one user with the same deviceId, one after the other, and checks
 * that the first one receives `session:replaced` and is disconnected. The notice is sent
 * with `io.to(deviceRoom).emit(...)`, i.e. through the Socket.IO Redis adapter (which
 * publishes to Redis before delivering locally), so this exercises the adapter's connection.
 */
async function assertReplacement(url, label) {
  const userId = randomId(`repl-${label}`);
  const deviceId = `dev-${label}`;
  const first = await connect(url, { userId, name: userId, deviceId });
  await waitForEvent(first, 'session');
  const second = await connect(url, { userId, name: userId, deviceId });
  const session = await waitForEvent(second, 'session');
  assert.equal(session.deviceId, deviceId);
  let notice;
  try {
    notice = await waitForEvent(first, 'session:replaced', { timeoutMs: 5000 });
  } catch (e) {
    e.message =
      `${label}: the displaced socket got no session:replaced. The notice goes through the ` +
      `Socket.IO Redis adapter (publish, then local delivery), so its Redis connection is ` +
      `not working. ${e.message}`;
    throw e;
  }
  assert.deepEqual(notice, { deviceId, reason: 'replaced' }, `${label}: session:replaced payload`);
  const reason = await waitForDisconnect(first, 5000);
  assert.equal(reason, 'io server disconnect', `${label}: the displaced socket is disconnected by the server`);
  assert.equal(second.connected, true, `${label}: the new socket stays connected`);
  second.close();
}

const missing = redisServerMissing();
if (missing && REQUIRE_BACKENDS) {
  test('Redis outage and recovery', () => {
    throw new Error(`SWITCHBOARD_REQUIRE_BACKENDS=1 but ${missing}`);
  });
} else if (missing) {
  console.log(`# skipping the Redis outage test: ${missing}`);
  test('Redis outage and recovery', { skip: `redis-server unavailable: ${missing}` }, () => {});
} else {
  describe('Redis outage and recovery (private redis-server)', () => {
    let redis;
    let redisDir;
    let server;
    let u1;
    let other;

    before(async () => {
      redisDir = mkdtempSync(join(tmpdir(), 'switchboard-e2e-redis-'));
      // The port is picked before redis binds it: retry if someone takes it meanwhile.
      for (let attempt = 1; ; attempt++) {
        redis = new PrivateRedis(await freePort(), redisDir);
        try {
          await redis.start();
          break;
        } catch (e) {
          await redis.kill().catch(() => {});
          if (attempt >= 3) throw e;
        }
      }
      server = await startServer({
        dev: true,
        args: ['--redis-url', redis.url],
        // The adapter's broadcast errors are logged at debug level by the outbox.
        env: { RUST_LOG: 'info,switchboard_server::outbox=debug,socketioxide_redis=debug' },
      });
    });

    after(async () => {
      closeAllSockets();
      try {
        await server?.stop({ signal: 'SIGKILL' });
      } finally {
        try {
          await redis?.kill();
        } finally {
          if (redisDir) rmSync(redisDir, { recursive: true, force: true });
        }
      }
    });
    const srv = () => server;

    test(
      'with Redis up: /health is ok, clients connect, device replacement reaches the old socket',
      withStderr(srv, async () => {
        const h = await health(server);
        assert.equal(h.status, 200, `/health ${h.status} ${h.text}`);
        assert.equal(h.json.status, 'ok');
        assert.equal(h.json.store.backend, 'redis', `store backend ${JSON.stringify(h.json.store)}`);
        assert.equal(h.json.store.ok, true);
        assert.equal(h.json.db.ok, true);

        u1 = await connect(server.url, { userId: 'u1', name: 'U1' });
        const s1 = await waitForEvent(u1, 'session');
        assert.equal(s1.userId, 'u1');
        other = await connect(server.url, { userId: randomId('other'), name: 'Other' });
        await waitForEvent(other, 'session');

        await assertReplacement(server.url, 'before');
      }),
    );

    test(
      'with Redis killed: /health 503 names the store, handshakes are refused with unavailable, the server stays up',
      withStderr(srv, async () => {
        await redis.kill();

        let h;
        await eventually(
          async () => {
            h = await health(server);
            assert.equal(h.status, 503, `/health ${h.status} ${h.text}`);
          },
          { timeoutMs: 6000, intervalMs: 200 },
        );
        assert.equal(h.json.status, 'degraded', `/health body ${h.text}`);
        assert.equal(h.json.store.backend, 'redis');
        assert.equal(h.json.store.ok, false, 'store.ok is false');
        assert.equal(typeof h.json.store.error, 'string', 'store.error says why');
        assert.equal(h.json.db.ok, true, 'db.ok stays true: only the store is down');

        const startedAt = Date.now();
        const err = await withTimeout(
          connectError(server.url, { userId: randomId('during'), name: 'During' }, { timeoutMs: REFUSAL_WITHIN_MS + 3000 }),
          REFUSAL_WITHIN_MS + 1000,
          'the handshake was neither accepted nor refused',
        );
        const took = Date.now() - startedAt;
        assertRefused(err, 'unavailable');
        assert.ok(took < REFUSAL_WITHIN_MS, `the refusal took ${took} ms (must be under ${REFUSAL_WITHIN_MS} ms)`);

        // An HTTP call that needs the store answers UNAVAILABLE (dev mode: admin is open).
        const online = await http(`${server.url}/api/users/online`);
        assert.equal(online.status, 503, `/api/users/online ${online.status} ${online.text}`);
        assert.equal(online.json?.code, 'UNAVAILABLE', `/api/users/online body ${online.text}`);

        // An event that needs only the database still works.
        assert.equal(u1.connected, true, 'u1 is still connected');
        const ack = await emitAck(u1, 'users:get', { userIds: ['u1'] });
        assert.equal(ack.success, true, `users:get during the outage: ${JSON.stringify(ack)}`);

        assertAlive(server);
      }),
    );

    test(
      'with Redis back: the same server recovers by itself, including the Socket.IO Redis adapter',
      withStderr(srv, async () => {
        await redis.start();
        const backAt = Date.now();

        let h;
        await eventually(
          async () => {
            h = await health(server);
            assert.equal(h.status, 200, `/health ${h.status} ${h.text}`);
          },
          { timeoutMs: RECOVERY_WITHIN_MS, intervalMs: 250 },
        );
        assert.equal(h.json.status, 'ok');
        assert.equal(h.json.store.ok, true);
        assert.equal(h.json.db.ok, true);

        // New handshakes are admitted again (the first one may still race the reconnect).
        const remaining = Math.max(1000, RECOVERY_WITHIN_MS - (Date.now() - backAt));
        const fresh = await eventually(
          async () => connect(server.url, { userId: randomId('after'), name: 'After' }),
          { timeoutMs: remaining, intervalMs: 250 },
        );
        await waitForEvent(fresh, 'session');
        fresh.close();

        const online = await http(`${server.url}/api/users/online`);
        assert.equal(online.status, 200, `/api/users/online ${online.status} ${online.text}`);

        // Sockets that lived through the outage still work.
        assert.equal(u1.connected, true, 'u1 survived the outage');
        assert.equal(other.connected, true, 'the second client survived the outage');

        // Cross-socket delivery through the Redis adapter works again (it did before, in
        // the first test, so a failure here is the adapter not recovering).
        await assertReplacement(server.url, 'after');

        assertAlive(server);
      }),
    );
  });
}
