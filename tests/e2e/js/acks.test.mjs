// Acknowledgement shapes, INVALID_PAYLOAD, events without acks, unknown events.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closeAllSockets, connect, emitAck, eventually, randomId, sleep, startServer, waitForEvent, withStderr } from './helpers.mjs';

function assertInvalidPayload(ack, label) {
  assert.equal(typeof ack, 'object', `${label}: ack is an object`);
  assert.equal(ack.success, false, `${label}: success is false`);
  assert.equal(ack.code, 'INVALID_PAYLOAD', `${label}: code is INVALID_PAYLOAD (got ${JSON.stringify(ack)})`);
  assert.equal(typeof ack.error, 'string', `${label}: error is a string`);
  assert.ok(ack.error.length > 0, `${label}: error is not empty`);
}

describe('acks and payload validation', () => {
  let server;
  let alice;
  let aliceId;
  let bobId;
  before(async () => {
    server = await startServer({ dev: true });
    aliceId = randomId('alice');
    bobId = randomId('bob');
    alice = await connect(server.url, { userId: aliceId, name: 'Alice', deviceId: 'a1' });
    // Bob connects once and leaves: users are upserted on connect and stay known.
    const bob = await connect(server.url, { userId: bobId, name: 'Bob', deviceId: 'b1' }, { transports: ['polling'] });
    await waitForEvent(bob, 'session');
    bob.close();
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;

  test(
    'users:get acks {success:true, users:[{userId,name}]} for known users only',
    withStderr(srv, async () => {
      let ack;
      let byId;
      await eventually(async () => {
        ack = await emitAck(alice, 'users:get', { userIds: [aliceId, bobId, randomId('never')] });
        assert.equal(ack.success, true, `ack ${JSON.stringify(ack)}`);
        assert.ok(Array.isArray(ack.users), 'users is an array');
        byId = Object.fromEntries(ack.users.map((u) => [u.userId, u]));
        assert.deepEqual(Object.keys(byId).sort(), [aliceId, bobId].sort(), 'only users that ever connected');
      });
      assert.equal(byId[aliceId].name, 'Alice');
      assert.equal(byId[bobId].name, 'Bob');
      for (const u of ack.users) {
        assert.equal(typeof u.userId, 'string');
        assert.equal(typeof u.name, 'string');
      }
    }),
  );

  test(
    'users:get with an empty list acks an empty list',
    withStderr(srv, async () => {
      const ack = await emitAck(alice, 'users:get', { userIds: [] });
      assert.deepEqual(ack, { success: true, users: [] });
    }),
  );

  test(
    'users:get accepts 500 ids',
    withStderr(srv, async () => {
      const ids = Array.from({ length: 499 }, (_, i) => `missing-${i}`);
      ids.push(aliceId);
      const ack = await emitAck(alice, 'users:get', { userIds: ids });
      assert.equal(ack.success, true, `ack ${JSON.stringify(ack).slice(0, 300)}`);
      assert.deepEqual(
        ack.users.map((u) => u.userId),
        [aliceId],
      );
    }),
  );

  test(
    'the name is updated on reconnect (upsert)',
    withStderr(srv, async () => {
      const userId = randomId('rename');
      const s1 = await connect(server.url, { userId, name: 'Old Name', deviceId: 'd' });
      await waitForEvent(s1, 'session');
      s1.close();
      const s2 = await connect(server.url, { userId, name: 'New Name', deviceId: 'd' });
      await waitForEvent(s2, 'session');
      await eventually(async () => {
        const ack = await emitAck(alice, 'users:get', { userIds: [userId] });
        assert.deepEqual(ack, { success: true, users: [{ userId, name: 'New Name' }] });
      });
      s2.close();
    }),
  );

  const malformed = [
    ['no payload at all', undefined],
    ['null payload', null],
    ['a string instead of an object', 'alice'],
    ['an array instead of an object', ['some-user']],
    ['an empty object', {}],
    ['userIds is a number', { userIds: 5 }],
    ['userIds is a string', { userIds: 'alice' }],
    ['userIds holds a number', { userIds: ['ok', 5] }],
    ['501 ids', { userIds: Array.from({ length: 501 }, (_, i) => `id-${i}`) }],
    ['an id of 129 chars', { userIds: ['x'.repeat(129)] }],
  ];
  for (const [label, payload] of malformed) {
    test(
      `users:get with ${label} → INVALID_PAYLOAD`,
      withStderr(srv, async () => {
        const ack = await emitAck(alice, 'users:get', payload);
        assertInvalidPayload(ack, label);
        assert.equal(alice.connected, true, 'the socket stays connected');
      }),
    );
  }

  test(
    'an id of exactly 128 chars is valid',
    withStderr(srv, async () => {
      const ack = await emitAck(alice, 'users:get', { userIds: ['y'.repeat(128)] });
      assert.deepEqual(ack, { success: true, users: [] });
    }),
  );

  test(
    'a valid request still works after the invalid ones, on the same socket and a new one',
    withStderr(srv, async () => {
      const ack = await emitAck(alice, 'users:get', { userIds: [aliceId] });
      assert.deepEqual(ack, { success: true, users: [{ userId: aliceId, name: 'Alice' }] });
      const carol = await connect(server.url, { userId: randomId('carol'), name: 'Carol' });
      const ack2 = await emitAck(carol, 'users:get', { userIds: [bobId] });
      assert.deepEqual(ack2, { success: true, users: [{ userId: bobId, name: 'Bob' }] });
      carol.close();
    }),
  );

  test(
    'unknown events are ignored: no crash, no disconnect, later acks still arrive',
    withStderr(srv, async () => {
      alice.emit('no:such:event', { a: 1 });
      alice.emit('anotherUnknown');
      // An ack callback on an unknown event: the server may never answer it; it must not break.
      alice.timeout(300).emit('unknown:with:ack', { x: 1 }, () => {});
      await sleep(400);
      assert.equal(alice.connected, true, 'still connected');
      const ack = await emitAck(alice, 'users:get', { userIds: [aliceId] });
      assert.equal(ack.success, true);
      assert.equal(server.proc.exitCode, null, 'server still running');
    }),
  );

  test(
    'events without an ack callback are processed; a later acked request is answered',
    withStderr(srv, async () => {
      // users:get has no side effect: what matters is that the server neither breaks nor
      // answers out of order. auth-refresh.test.mjs checks a no-ack event's side effect.
      alice.emit('users:get', { userIds: [aliceId] });
      alice.emit('users:get', { userIds: 5 });
      alice.emit('users:get');
      const ack = await emitAck(alice, 'users:get', { userIds: [bobId] });
      assert.deepEqual(ack, { success: true, users: [{ userId: bobId, name: 'Bob' }] });
      assert.equal(alice.connected, true);
    }),
  );

  test(
    'presence:status without an ack callback takes effect (read back with presence:get)',
    withStderr(srv, async () => {
      const userId = randomId('presence');
      const s = await connect(server.url, { userId, name: 'Pres', deviceId: 'p1' });
      await waitForEvent(s, 'session');
      s.emit('presence:status', { status: 'away' });
      await eventually(async () => {
        const ack = await emitAck(alice, 'presence:get', { userIds: [userId] }, 1500);
        assert.equal(ack.success, true, `presence:get ack ${JSON.stringify(ack)}`);
        assert.equal(ack.presence?.[userId]?.status, 'away', JSON.stringify(ack.presence));
      });
      s.close();
    }),
  );
});
