// Two server instances sharing Redis (same key prefix) and one PostgreSQL database.
// Skipped with a message when Redis or PostgreSQL is unreachable, unless
// SWITCHBOARD_REQUIRE_BACKENDS=1, when it fails instead.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  assertRefused,
  REDIS_URL,
  backendsSkipReason,
  closeAllSockets,
  connect,
  connectError,
  createTestDatabase,
  emitAck,
  eventually,
  http,
  randomId,
  redisCleanup,
  sleep,
  startServer,
  waitForDisconnect,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

let skipReason = null;
let backendError = null;
try {
  skipReason = await backendsSkipReason();
} catch (e) {
  backendError = e;
}
if (skipReason) console.log(`# skipping multi-instance tests: ${skipReason}`);

if (skipReason) {
  test('two instances sharing Redis and PostgreSQL', { skip: `backends unavailable: ${skipReason}` }, () => {});
} else describe('two instances sharing Redis and PostgreSQL', () => {
  let a;
  let b;
  let db;
  const prefix = `e2e-mi-${randomBytes(5).toString('hex')}:`;

  before(async () => {
    if (backendError) throw backendError;
    db = await createTestDatabase();
    const env = { SWITCHBOARD_STORE__PREFIX: prefix, SWITCHBOARD_AUTH__MAX_DEVICES_PER_USER: '2' };
    const args = ['--redis-url', REDIS_URL, '--database-url', db.url];
    a = await startServer({ dev: true, env, args });
    b = await startServer({ dev: true, env, args });
  });

  after(async () => {
    closeAllSockets();
    await Promise.allSettled([a?.stop(), b?.stop()]);
    if (db) await db.drop().catch((e) => console.log(`# could not drop ${db.name}: ${e.message}`));
    redisCleanup(prefix);
  });
  const srv = () => [a, b];

  test(
    'both report redis + postgres in /health',
    withStderr(srv, async () => {
      for (const s of [a, b]) {
        const r = await http(`${s.url}/health`);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json?.status, 'ok', r.text);
        assert.equal(r.json.store?.backend, 'redis', r.text);
        assert.equal(r.json.store.ok, true, r.text);
        assert.equal(r.json.db?.backend, 'postgres', r.text);
        assert.equal(r.json.db.ok, true, r.text);
      }
    }),
  );

  test(
    'a user connected on A is visible through users:get on B',
    withStderr(srv, async () => {
      const userId = randomId('mia');
      const onA = await connect(a.url, { userId, name: 'On A', deviceId: 'pa' });
      await waitForEvent(onA, 'session');
      const viewer = await connect(b.url, { userId: randomId('viewer'), name: 'Viewer' }, { transports: ['polling'] });
      await eventually(async () => {
        const ack = await emitAck(viewer, 'users:get', { userIds: [userId] });
        assert.deepEqual(ack, { success: true, users: [{ userId, name: 'On A' }] });
      });
      onA.close();
      viewer.close();
    }),
  );

  test(
    'same user and device on B replaces the socket on A',
    withStderr(srv, async () => {
      const userId = randomId('mirep');
      const onA = await connect(a.url, { userId, name: 'Rep', deviceId: 'phone' });
      await waitForEvent(onA, 'session');
      const onB = await connect(b.url, { userId, name: 'Rep', deviceId: 'phone' });
      await waitForEvent(onB, 'session');
      const replaced = await waitForEvent(onA, 'session:replaced', { timeoutMs: 5000 });
      assert.deepEqual(replaced, { deviceId: 'phone', reason: 'replaced' });
      await waitForDisconnect(onA, 5000);
      await sleep(300);
      assert.equal(onB.connected, true, 'the new socket on B stays connected');
      assert.ok(!onB.received.some((r) => r.event === 'session:replaced'));
      onB.close();
    }),
  );

  test(
    'the device cap counts devices on both instances',
    withStderr(srv, async () => {
      const userId = randomId('micap');
      const d1 = await connect(a.url, { userId, deviceId: 'd1' });
      const d2 = await connect(b.url, { userId, deviceId: 'd2' });
      await waitForEvent(d1, 'session');
      await waitForEvent(d2, 'session');
      const err = await connectError(a.url, { userId, deviceId: 'd3' });
      assertRefused(err, 'too_many_devices');
      d1.close();
      d2.close();
    }),
  );
});
