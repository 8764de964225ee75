// HTTP API on the same port: health, metrics, admin authentication (protocol §10).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAllSockets, connect, http, mintToken, randomId, startServer, waitForEvent, withStderr } from './helpers.mjs';

const SECRET = 'e2e-secret-http-0123456789abcdef';
const ADMIN_KEY = 'e2e-admin-key-0123456789';

function assertHealth(body, { store = 'memory', db = 'sqlite' } = {}) {
  assert.equal(body?.status, 'ok', `health ${JSON.stringify(body)}`);
  assert.equal(body.store?.backend, store);
  assert.equal(body.store.ok, true);
  assert.equal(typeof body.store.latencyMs, 'number');
  assert.equal(body.db?.backend, db);
  assert.equal(body.db.ok, true);
  assert.equal(typeof body.db.latencyMs, 'number');
}

function assertJsonError(r, status, code) {
  assert.equal(r.status, status, `status for ${r.text}`);
  assert.match(r.headers.get('content-type') || '', /application\/json/);
  assert.equal(r.json?.code, code, `body ${r.text}`);
  assert.equal(typeof r.json.error, 'string');
}

describe('HTTP in production mode (admin key set)', () => {
  let server;
  before(async () => {
    server = await startServer({
      dev: false,
      env: { SWITCHBOARD_AUTH__JWT_SECRET: SECRET, SWITCHBOARD_AUTH__ADMIN_KEY: ADMIN_KEY },
    });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;
  const admin = { authorization: `Bearer ${ADMIN_KEY}` };

  test(
    'GET /health and /redis/health are open and report memory + sqlite',
    withStderr(srv, async () => {
      for (const path of ['/health', '/redis/health']) {
        const r = await http(`${server.url}${path}`);
        assert.equal(r.status, 200, `${path}: ${r.text}`);
        assert.match(r.headers.get('content-type') || '', /application\/json/);
        assertHealth(r.json);
      }
    }),
  );

  test(
    'GET /metrics is open Prometheus text',
    withStderr(srv, async () => {
      const r = await http(`${server.url}/metrics`);
      assert.equal(r.status, 200, r.text.slice(0, 300));
      assert.match(r.headers.get('content-type') || '', /^(text\/plain|application\/openmetrics-text)/);
      assert.match(r.text, /^# (HELP|TYPE) \w+/m, 'has HELP/TYPE lines');
    }),
  );

  for (const path of ['/stats', '/online-users', '/redis/stats', '/redis/online-users', '/api/users/someone', '/api/users/someone/friends']) {
    test(
      `GET ${path} needs the admin key: 401 without, 401 with a wrong one`,
      withStderr(srv, async () => {
        assertJsonError(await http(`${server.url}${path}`), 401, 'UNAUTHORIZED');
        assertJsonError(await http(`${server.url}${path}`, { headers: { authorization: 'Bearer wrong-key' } }), 401, 'UNAUTHORIZED');
        assertJsonError(await http(`${server.url}${path}`, { headers: { authorization: ADMIN_KEY } }), 401, 'UNAUTHORIZED');
      }),
    );
  }

  test(
    'a user JWT is not an admin key',
    withStderr(srv, async () => {
      const token = mintToken(SECRET, { sub: randomId('notadmin') });
      assertJsonError(await http(`${server.url}/stats`, { headers: { authorization: `Bearer ${token}` } }), 401, 'UNAUTHORIZED');
    }),
  );

  test(
    'PUT friends without the key is 401 and changes nothing',
    withStderr(srv, async () => {
      const userId = randomId('nokey');
      const r = await http(`${server.url}/api/users/${userId}/friends`, { method: 'PUT', body: { friendIds: ['x'] } });
      assertJsonError(r, 401, 'UNAUTHORIZED');
    }),
  );

  test(
    'with the admin key: /stats, /online-users, /api/users/{id}, friends PUT/GET',
    withStderr(srv, async () => {
      const userId = randomId('http');
      const friendA = randomId('fa');
      const friendB = randomId('fb');
      const socket = await connect(server.url, { token: mintToken(SECRET, { sub: userId, name: 'Http User' }) });
      await waitForEvent(socket, 'session');

      const stats = await http(`${server.url}/stats`, { headers: admin });
      assert.equal(stats.status, 200, stats.text);
      assert.equal(typeof stats.json, 'object', 'stats is JSON');

      const online = await http(`${server.url}/online-users`, { headers: admin });
      assert.equal(online.status, 200, online.text);
      assert.ok(online.text.includes(userId), `online-users lists the connected user: ${online.text.slice(0, 500)}`);

      const user = await http(`${server.url}/api/users/${userId}`, { headers: admin });
      assert.equal(user.status, 200, user.text);
      assert.ok(user.text.includes(userId) && user.text.includes('Http User'), `user: ${user.text}`);

      const missing = await http(`${server.url}/api/users/${randomId('ghost')}`, { headers: admin });
      assertJsonError(missing, 404, 'NOT_FOUND');

      const put = await http(`${server.url}/api/users/${userId}/friends`, {
        method: 'PUT',
        headers: admin,
        body: { friendIds: [friendA, friendB] },
      });
      assert.ok(put.status >= 200 && put.status < 300, `PUT friends: ${put.status} ${put.text}`);

      const get = await http(`${server.url}/api/users/${userId}/friends`, { headers: admin });
      assert.equal(get.status, 200, get.text);
      assert.ok(get.text.includes(friendA) && get.text.includes(friendB), `friends: ${get.text}`);

      const bad = await http(`${server.url}/api/users/${userId}/friends`, { method: 'PUT', headers: admin, body: { friendIds: 5 } });
      assert.equal(bad.status, 400, `PUT friends with a bad body: ${bad.status} ${bad.text}`);
      assert.equal(bad.json?.code, 'INVALID_PAYLOAD', bad.text);
      socket.close();
    }),
  );

  test(
    'unknown paths are 404',
    withStderr(srv, async () => {
      const r = await http(`${server.url}/definitely/not/here`, { headers: admin });
      assert.equal(r.status, 404);
    }),
  );
});

describe('HTTP in dev mode', () => {
  let server;
  before(async () => {
    server = await startServer({ dev: true });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;

  test(
    'health is ok and admin endpoints are open without a key',
    withStderr(srv, async () => {
      const h = await http(`${server.url}/health`);
      assert.equal(h.status, 200, h.text);
      assertHealth(h.json);
      const userId = randomId('devhttp');
      const socket = await connect(server.url, { userId, name: 'Dev Http' });
      await waitForEvent(socket, 'session');
      for (const path of ['/stats', '/online-users', `/api/users/${userId}`, `/api/users/${userId}/friends`]) {
        const r = await http(`${server.url}${path}`);
        assert.equal(r.status, 200, `${path}: ${r.status} ${r.text}`);
      }
      socket.close();
    }),
  );
});
