// Token lifetime while connected: auth:refresh and auth:expired (protocol §2).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  closeAllSockets,
  connect,
  emitAck,
  mintToken,
  randomId,
  sleep,
  startServer,
  waitForDisconnect,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

const SECRET = 'e2e-secret-refresh-abcdef0123456789';
const SHORT_SECS = 3;

/** A token that expires SHORT_SECS seconds from now (whole seconds, so 2–3 s of life). */
function shortToken(sub, extra = {}) {
  const exp = Math.floor(Date.now() / 1000) + SHORT_SECS;
  return { exp, token: mintToken(SECRET, { sub, name: sub, exp, ...extra }) };
}

/** Sleeps until `ms` after the token's expiry. */
async function sleepPastExpiry(expSecs, ms) {
  const wait = expSecs * 1000 + ms - Date.now();
  if (wait > 0) await sleep(wait);
}

describe('auth:refresh and auth:expired', { concurrency: true }, () => {
  let server;
  before(async () => {
    server = await startServer({ dev: false, env: { SWITCHBOARD_AUTH__JWT_SECRET: SECRET } });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;

  test(
    'a token that expires while connected: auth:expired, then disconnect',
    withStderr(srv, async () => {
      const userId = randomId('exp');
      const { exp, token } = shortToken(userId);
      const socket = await connect(server.url, { token });
      await waitForEvent(socket, 'session');
      const expired = await waitForEvent(socket, 'auth:expired', { timeoutMs: SHORT_SECS * 1000 + 4000 });
      const expiredAt = socket.received.find((r) => r.event === 'auth:expired').at;
      assert.ok(expiredAt >= exp * 1000 - 1000, `auth:expired came ${exp * 1000 - expiredAt} ms before the token expired`);
      assert.ok(expired === undefined || typeof expired === 'object', `auth:expired payload ${JSON.stringify(expired)}`);
      const reason = await waitForDisconnect(socket, 3000);
      assert.equal(reason, 'io server disconnect', 'the server closed the socket');
    }),
  );

  test(
    'auth:refresh with a fresh token for the same user keeps the socket',
    withStderr(srv, async () => {
      const userId = randomId('ref');
      const { exp, token } = shortToken(userId, { device: 'dev-r' });
      const socket = await connect(server.url, { token }, { transports: ['polling'] });
      await waitForEvent(socket, 'session');
      const fresh = mintToken(SECRET, { sub: userId, name: userId, device: 'dev-r' });
      const ack = await emitAck(socket, 'auth:refresh', { token: fresh });
      assert.equal(ack?.success, true, `ack ${JSON.stringify(ack)}`);
      await sleepPastExpiry(exp, 2000);
      assert.equal(socket.connected, true, 'still connected after the first token expired');
      assert.ok(!socket.received.some((r) => r.event === 'auth:expired'), 'no auth:expired');
      const usersAck = await emitAck(socket, 'users:get', { userIds: [userId] });
      assert.equal(usersAck.success, true, 'the refreshed socket still works');
      socket.close();
    }),
  );

  test(
    'auth:refresh without an ack callback is still processed',
    withStderr(srv, async () => {
      const userId = randomId('refnoack');
      const { exp, token } = shortToken(userId);
      const socket = await connect(server.url, { token });
      await waitForEvent(socket, 'session');
      socket.emit('auth:refresh', { token: mintToken(SECRET, { sub: userId, name: userId }) });
      await sleepPastExpiry(exp, 2000);
      assert.equal(socket.connected, true, 'still connected: the no-ack refresh took effect');
      assert.ok(!socket.received.some((r) => r.event === 'auth:expired'), 'no auth:expired');
      socket.close();
    }),
  );

  test(
    'auth:refresh with a token for another user is refused and does not extend the session',
    withStderr(srv, async () => {
      const userId = randomId('refother');
      const { token } = shortToken(userId);
      const socket = await connect(server.url, { token });
      await waitForEvent(socket, 'session');
      const other = mintToken(SECRET, { sub: randomId('someone-else') });
      const ack = await emitAck(socket, 'auth:refresh', { token: other });
      assert.equal(ack?.success, false, `ack ${JSON.stringify(ack)}`);
      assert.equal(ack.code, 'UNAUTHORIZED');
      assert.equal(typeof ack.error, 'string');
      assert.equal(socket.connected, true, 'a refused refresh does not disconnect by itself');
      await waitForEvent(socket, 'auth:expired', { timeoutMs: SHORT_SECS * 1000 + 4000 });
      await waitForDisconnect(socket, 3000);
    }),
  );

  test(
    'auth:refresh with bad tokens or payloads is refused, the socket keeps working',
    withStderr(srv, async () => {
      const userId = randomId('refbad');
      const socket = await connect(server.url, { token: mintToken(SECRET, { sub: userId }) });
      await waitForEvent(socket, 'session');

      const forged = await emitAck(socket, 'auth:refresh', { token: mintToken('wrong-secret', { sub: userId }) });
      assert.deepEqual([forged?.success, forged?.code], [false, 'UNAUTHORIZED'], `forged: ${JSON.stringify(forged)}`);

      const expiredTok = mintToken(SECRET, { sub: userId, exp: Math.floor(Date.now() / 1000) - 5 });
      const expired = await emitAck(socket, 'auth:refresh', { token: expiredTok });
      assert.deepEqual([expired?.success, expired?.code], [false, 'UNAUTHORIZED'], `expired: ${JSON.stringify(expired)}`);

      for (const [label, payload] of [
        ['no payload', undefined],
        ['empty object', {}],
        ['token is a number', { token: 5 }],
        ['a string', 'token'],
      ]) {
        const ack = await emitAck(socket, 'auth:refresh', payload);
        assert.deepEqual([ack?.success, ack?.code], [false, 'INVALID_PAYLOAD'], `${label}: ${JSON.stringify(ack)}`);
      }
      assert.equal(socket.connected, true);
      const ok = await emitAck(socket, 'auth:refresh', { token: mintToken(SECRET, { sub: userId }) });
      assert.equal(ok?.success, true);
      socket.close();
    }),
  );
});
