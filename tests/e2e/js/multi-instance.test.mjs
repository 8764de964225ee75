// Two server instances sharing Redis (same key prefix) and one PostgreSQL database.
// Skipped with a message when Redis or PostgreSQL is unreachable, unless
// SWITCHBOARD_REQUIRE_BACKENDS=1, when it fails instead.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import {
  assertRefused,
  connect,
  connectError,
  describeTwoInstances,
  emitAck,
  eventually,
  http,
  randomId,
  sleep,
  waitForDisconnect,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

await describeTwoInstances('two instances sharing Redis and PostgreSQL', { name: 'mi', env: { SWITCHBOARD_AUTH__MAX_DEVICES_PER_USER: '2' } }, (pair) => {
  let a;
  let b;
  before(() => ({ a, b } = pair));
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
