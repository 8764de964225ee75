// Devices: same user + same device replaces the old socket; the per-user device cap.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  assertRefused,
  closeAllSockets,
  connect,
  connectError,
  emitAck,
  randomId,
  sleep,
  startServer,
  waitForDisconnect,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

describe('devices (cap = 2)', () => {
  let server;
  before(async () => {
    server = await startServer({ dev: true, env: { SWITCHBOARD_AUTH__MAX_DEVICES_PER_USER: '2' } });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;

  for (const [oldT, newT] of [
    ['websocket', 'websocket'],
    ['polling', 'websocket'],
  ]) {
    test(
      `same user and device replaces the old socket (${oldT} → ${newT})`,
      withStderr(srv, async () => {
        const userId = randomId('rep');
        const old = await connect(server.url, { userId, name: 'Rep', deviceId: 'phone' }, { transports: [oldT] });
        await waitForEvent(old, 'session');
        const fresh = await connect(server.url, { userId, name: 'Rep', deviceId: 'phone' }, { transports: [newT] });
        const replaced = await waitForEvent(old, 'session:replaced');
        assert.deepEqual(replaced, { deviceId: 'phone', reason: 'replaced' });
        await waitForDisconnect(old);
        assert.equal(old.connected, false, 'old socket disconnected');
        const session = await waitForEvent(fresh, 'session');
        assert.equal(session.deviceId, 'phone');
        await sleep(200);
        assert.equal(fresh.connected, true, 'new socket stays connected');
        assert.ok(!fresh.received.some((r) => r.event === 'session:replaced'), 'the new socket is not told it was replaced');
        const ack = await emitAck(fresh, 'users:get', { userIds: [userId] });
        assert.equal(ack.success, true, 'the new socket works');
        fresh.close();
      }),
    );
  }

  test(
    'the same deviceId for two different users replaces nothing',
    withStderr(srv, async () => {
      const u1 = randomId('iso1');
      const u2 = randomId('iso2');
      const a = await connect(server.url, { userId: u1, deviceId: 'same' });
      const b = await connect(server.url, { userId: u2, deviceId: 'same' });
      await sleep(300);
      assert.equal(a.connected, true, 'a different user with the same deviceId does not replace');
      assert.equal(b.connected, true);
      assert.ok(!a.received.some((r) => r.event === 'session:replaced'));
      a.close();
      b.close();
    }),
  );

  test(
    'a third device is refused with too_many_devices; a freed slot can be used again',
    withStderr(srv, async () => {
      const userId = randomId('cap');
      const d1 = await connect(server.url, { userId, deviceId: 'd1' });
      const d2 = await connect(server.url, { userId, deviceId: 'd2' }, { transports: ['polling'] });
      await waitForEvent(d1, 'session');
      await waitForEvent(d2, 'session');

      const err = await connectError(server.url, { userId, deviceId: 'd3' });
      assertRefused(err, 'too_many_devices');
      // A generated device id counts too.
      const err2 = await connectError(server.url, { userId });
      assertRefused(err2, 'too_many_devices');

      // Reconnecting an existing device is a replacement, not a new device.
      const d1b = await connect(server.url, { userId, deviceId: 'd1' });
      await waitForEvent(d1, 'session:replaced');
      assert.equal(d1b.connected, true);

      // Free a slot; the server may take a moment to see the disconnect.
      d2.close();
      let d3;
      let lastErr;
      for (let i = 0; i < 30 && !d3; i++) {
        try {
          d3 = await connect(server.url, { userId, deviceId: 'd3' });
        } catch (e) {
          lastErr = e;
          await sleep(100);
        }
      }
      assert.ok(d3, `d3 could not connect after d2 left: ${lastErr?.message}`);
      assert.equal(d3.connected, true);
      d1b.close();
      d3.close();
    }),
  );

  test(
    'the device cap is per user',
    withStderr(srv, async () => {
      const u1 = randomId('capA');
      const u2 = randomId('capB');
      const socks = [];
      for (const u of [u1, u2]) {
        for (const d of ['x', 'y']) socks.push(await connect(server.url, { userId: u, deviceId: d }));
      }
      assert.equal(socks.every((s) => s.connected), true);
      for (const s of socks) s.close();
    }),
  );
});
