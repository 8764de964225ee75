// Direct calls (protocol §5) across two instances sharing Redis (same key prefix) and one
// PostgreSQL database, the caller on one instance and the callee on the other: ringing,
// accept with answered_elsewhere, reject, cancel, BUSY, races between instances (accept vs
// cancel, two devices accepting at once), the ring timeout fired exactly once across the
// instances, and a push-rung device waking up on the other instance.
// Skipped with a message when Redis or PostgreSQL is unreachable, unless
// SWITCHBOARD_REQUIRE_BACKENDS=1, when it fails instead.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, test } from 'node:test';
import {
  describeTwoInstances,
  dev,
  emitAck,
  eventsOf,
  eventually,
  failed,
  http,
  ok,
  randomId,
  sleep,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

const RING_SECS = 2;
const T = { timeout: 120_000 };

const ack = (socket, event, payload) => emitAck(socket, event, payload, 10_000);
const forCall = (callId) => (d) => d?.callId === callId;

const ENV = {
  SWITCHBOARD_TIMERS__RING_TIMEOUT_SECS: String(RING_SECS),
  SWITCHBOARD_RATE_LIMITS__CALL__LIMIT: '100000',
};

await describeTwoInstances(`direct calls across two instances (Redis + PostgreSQL, ring ${RING_SECS} s)`, { name: 'calls-multi', env: ENV }, (pair) => {
  let a;
  let b;
  before(() => ({ a, b } = pair));
  const srv = () => [a, b];

  test('caller on A, callee devices on A and B: both ring, B answers, A hears it, the other device stops', T, withStderr(srv, async () => {
    const x = randomId('mx');
    const y = randomId('my');
    const sx = await dev(a, x, 'Xia');
    const yB = await dev(b, y, 'Yves', 'phone');
    const yA = await dev(a, y, 'Yves', 'laptop');
    const callId = randomUUID();
    assert.equal(ok(await ack(sx, 'callUser', { callId, targetUserId: y }), 'callUser').delivery, 'ringing');
    await waitForEvent(yB, 'incomingCallNew', { predicate: forCall(callId) });
    await waitForEvent(yA, 'incomingCallNew', { predicate: forCall(callId) });
    const requests = ok(await ack(yB, 'getCallRequests', {}), 'getCallRequests on B');
    assert.deepEqual(requests.incoming.map((r) => r.callId), [callId]);
    const accepted = ok(await ack(yB, 'acceptCallNew', { callId }), 'accept on B');
    const told = await waitForEvent(sx, 'callAcceptedNew', { predicate: forCall(callId) });
    assert.equal(told.roomId, accepted.roomId);
    assert.equal((await waitForEvent(yA, 'callCancelled', { predicate: forCall(callId) })).reason, 'answered_elsewhere');
    // Busy on both instances.
    const z = randomId('mz');
    const sz = await dev(b, z, 'Zoe');
    assert.equal(failed(await ack(sz, 'callUser', { callId: randomUUID(), targetUserId: x }), 'BUSY', 'busy caller across').canRetry, true);
    ok(await ack(sx, 'endCall', { roomId: accepted.roomId }), 'endCall');
  }));

  test('reject on B reaches the caller on A; cancel on A reaches the callee on B', T, withStderr(srv, async () => {
    const x = randomId('rx');
    const y = randomId('ry');
    const sx = await dev(a, x, 'Xia');
    const sy = await dev(b, y, 'Yves');
    const first = randomUUID();
    ok(await ack(sx, 'callUser', { callId: first, targetUserId: y }), 'callUser');
    await waitForEvent(sy, 'incomingCallNew', { predicate: forCall(first) });
    ok(await ack(sy, 'rejectCallNew', { callId: first, reason: 'later' }), 'reject on B');
    assert.equal((await waitForEvent(sx, 'callRejectedNew', { predicate: forCall(first) })).reason, 'later');
    const second = randomUUID();
    ok(await ack(sx, 'callUser', { callId: second, targetUserId: y }), 'callUser again');
    await waitForEvent(sy, 'incomingCallNew', { predicate: forCall(second) });
    ok(await ack(sx, 'cancelCall', { callId: second }), 'cancel on A');
    await waitForEvent(sy, 'callCancelled', { predicate: forCall(second) });
    failed(await ack(sy, 'acceptCallNew', { callId: second }), 'CONFLICT', 'late accept on B');
  }));

  test('races across instances: accept on B vs cancel on A, and two devices accepting at once', T, withStderr(srv, async () => {
    const x = randomId('cx');
    const y = randomId('cy');
    const sx = await dev(a, x, 'Xia');
    const yB = await dev(b, y, 'Yves', 'phone');
    const yA = await dev(a, y, 'Yves', 'laptop');
    for (let i = 0; i < 4; i++) {
      const callId = randomUUID();
      ok(await ack(sx, 'callUser', { callId, targetUserId: y }), 'callUser');
      await waitForEvent(yB, 'incomingCallNew', { predicate: forCall(callId) });
      await waitForEvent(yA, 'incomingCallNew', { predicate: forCall(callId) });
      const racers = i % 2 === 0
        ? [ack(yB, 'acceptCallNew', { callId }), ack(sx, 'cancelCall', { callId })]
        : [ack(yB, 'acceptCallNew', { callId }), ack(yA, 'acceptCallNew', { callId })];
      const results = await Promise.all(racers);
      const winners = results.filter((r) => r.success);
      assert.equal(winners.length, 1, `round ${i}: exactly one winner: ${JSON.stringify(results)}`);
      assert.equal(results.find((r) => !r.success).code, 'CONFLICT');
      const room = winners[0].roomId;
      if (room) ok(await ack(sx, 'endCall', { roomId: room }), 'endCall');
      await eventually(async () => {
        const r = await ack(sx, 'getCallRequests', {});
        assert.deepEqual(r.outgoing, []);
      });
    }
  }));

  test('the ring timeout fires exactly once across the instances', T, withStderr(srv, async () => {
    const x = randomId('tx');
    const y = randomId('ty');
    const sx = await dev(a, x, 'Xia');
    const yB = await dev(b, y, 'Yves', 'phone');
    const yA = await dev(a, y, 'Yves', 'laptop');
    const callId = randomUUID();
    ok(await ack(sx, 'callUser', { callId, targetUserId: y }), 'callUser');
    await waitForEvent(sx, 'callTimeout', { predicate: forCall(callId), timeoutMs: RING_SECS * 1000 + 4000 });
    await waitForEvent(yB, 'callTimeout', { predicate: forCall(callId) });
    await waitForEvent(yA, 'callTimeout', { predicate: forCall(callId) });
    await sleep(1500);
    for (const s of [sx, yA, yB]) assert.equal(eventsOf(s, 'callTimeout', forCall(callId)).length, 1);
    const n = await http(`${b.url}/api/users/${y}/notifications`);
    const missed = n.json.notifications.filter((m) => m.kind === 'missed_call' && m.data.callId === callId);
    assert.equal(missed.length, 1, 'one missed-call notification');
    const call = await http(`${a.url}/api/calls/${callId}`);
    assert.equal(call.json.outcome, 'missed');
  }));

  test('a push-rung callee wakes up on the other instance and answers', T, withStderr(srv, async () => {
    const x = randomId('px');
    const y = randomId('py');
    const sx = await dev(a, x, 'Xia');
    const asleep = await dev(a, y, 'Yves', 'phone');
    asleep.close();
    await eventually(async () => {
      const p = ok(await ack(sx, 'presence:get', { userIds: [y] }), 'presence:get');
      assert.equal(p.presence[y]?.devices ?? 0, 0);
    });
    const callId = randomUUID();
    assert.equal(ok(await ack(sx, 'callUser', { callId, targetUserId: y }), 'callUser').delivery, 'push');
    const woken = await dev(b, y, 'Yves', 'phone');
    await waitForEvent(woken, 'incomingCallNew', { predicate: forCall(callId) });
    const accepted = ok(await ack(woken, 'acceptCallNew', { callId }), 'accept on B');
    await waitForEvent(sx, 'callAcceptedNew', { predicate: forCall(callId) });
    ok(await ack(woken, 'endCall', { roomId: accepted.roomId }), 'endCall');
  }));
});
