// Direct calls (protocol §5) with real Socket.IO clients on one instance, dev mode, on memory +
// SQLite and again on Redis + PostgreSQL (skipped with a message when those are unreachable):
// every client event and its ack, INVALID_PAYLOAD / OFFLINE / BUSY / CONFLICT with canRetry,
// ringing every callee device, acceptance into a direct room with answered_elsewhere, reject,
// cancel, the ring timeout with its missed-call notification, push delivery to a sleeping
// device that then connects and answers, a dropped caller's rings cancelled, and the call
// history on the socket and over HTTP.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  backendsSkipReason,
  closeAllSockets,
  connect,
  createTestDatabase,
  dev,
  emitAck,
  eventsOf,
  eventually,
  expectNone,
  failed,
  http,
  mintToken,
  ok,
  randomId,
  REDIS_URL,
  redisCleanup,
  sleep,
  startServer,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

const RING_SECS = 2;
const SECRET = 'e2e-secret-calls-0123456789abcdef';
const T = { timeout: 90_000 };

const ack = (socket, event, payload) => emitAck(socket, event, payload, 10_000);

const forCall = (callId) => (d) => d?.callId === callId;

let redisSkip = null;
let redisError = null;
try {
  redisSkip = await backendsSkipReason();
} catch (e) {
  redisError = e;
}
if (redisSkip) console.log(`# skipping the Redis + PostgreSQL calls suite: ${redisSkip}`);

const BACKENDS = [
  { label: 'memory store, SQLite', redis: false },
  { label: 'Redis store, PostgreSQL', redis: true },
];

for (const backend of BACKENDS) describe(`direct calls (${backend.label}, dev mode)`, { skip: backend.redis && redisSkip ? `backends unavailable: ${redisSkip}` : false }, () => {
  let server;
  let db;
  const prefix = `e2e-calls-${randomBytes(5).toString('hex')}:`;
  before(async () => {
    const args = [];
    const env = {
      SWITCHBOARD_TIMERS__RING_TIMEOUT_SECS: String(RING_SECS),
      SWITCHBOARD_AUTH__JWT_SECRET: SECRET,
      SWITCHBOARD_RATE_LIMITS__CALL__LIMIT: '100000',
    };
    if (backend.redis) {
      if (redisError) throw redisError;
      db = await createTestDatabase();
      args.push('--redis-url', REDIS_URL, '--database-url', db.url);
      env.SWITCHBOARD_STORE__PREFIX = prefix;
    }
    server = await startServer({ dev: true, env, args });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
    if (db) await db.drop().catch((e) => console.log(`# could not drop ${db.name}: ${e.message}`));
    if (backend.redis) redisCleanup(prefix);
  });
  const srv = () => server;

  test('INVALID_PAYLOAD for malformed payloads, self calls and bad ids; nothing rings', T, withStderr(srv, async () => {
    const a = randomId('inv-a');
    const b = randomId('inv-b');
    const sa = await dev(server, a, 'Ann');
    const sb = await dev(server, b, 'Ben');
    const cases = [
      ['callUser', undefined],
      ['callUser', 'x'],
      ['callUser', { callId: 5, targetUserId: b }],
      ['callUser', { callId: randomUUID() }],
      ['callUser', { callId: randomUUID(), targetUserId: 'x'.repeat(129) }],
      ['callUser', { callId: 'not-a-uuid', targetUserId: b }],
      ['callUser', { callId: randomUUID(), targetUserId: a }],
      ['acceptCallNew', {}],
      ['acceptCallNew', { callId: 7 }],
      ['rejectCallNew', { callId: randomUUID(), reason: 'r'.repeat(300) }],
      ['rejectCallNew', []],
      ['cancelCall', { callId: null }],
      ['getCallHistory', { limit: 'ten' }],
      ['getCallHistory', { limit: 0 }],
    ];
    for (const [event, payload] of cases) {
      failed(await ack(sa, event, payload), 'INVALID_PAYLOAD', `${event} ${JSON.stringify(payload)?.slice(0, 60)}`);
    }
    await expectNone(sb, 'incomingCallNew');
    const requests = ok(await ack(sa, 'getCallRequests', {}), 'getCallRequests');
    assert.deepEqual(requests.incoming, []);
    assert.deepEqual(requests.outgoing, []);
  }));

  test('a call rings every callee device; accepting opens a direct room; the other device hears answered_elsewhere', T, withStderr(srv, async () => {
    const a = randomId('ring-a');
    const b = randomId('ring-b');
    const a1 = await dev(server, a, 'Ann', 'a-phone');
    const a2 = await dev(server, a, 'Ann', 'a-laptop');
    const phone = await dev(server, b, 'Ben', 'b-phone');
    const laptop = await dev(server, b, 'Ben', 'b-laptop');
    const callId = randomUUID();
    const placed = ok(await ack(a1, 'callUser', { callId, targetUserId: b }), 'callUser');
    assert.equal(placed.delivery, 'ringing');
    for (const s of [phone, laptop]) {
      const ring = await waitForEvent(s, 'incomingCallNew', { predicate: forCall(callId) });
      assert.deepEqual(ring, { callId, from: a, fromName: 'Ann' });
    }
    const incoming = ok(await ack(laptop, 'getCallRequests', {}), 'getCallRequests callee');
    assert.equal(incoming.incoming.length, 1);
    assert.equal(incoming.incoming[0].callId, callId);
    assert.equal(incoming.incoming[0].state, 'pending');
    assert.equal(incoming.incoming[0].fromName, 'Ann');
    assert.equal(incoming.incoming[0].toName, 'Ben');
    assert.equal(typeof incoming.incoming[0].timestamp, 'number');
    const outgoing = ok(await ack(a2, 'getCallRequests', {}), 'getCallRequests caller');
    assert.equal(outgoing.outgoing[0].callId, callId);

    const accepted = ok(await ack(laptop, 'acceptCallNew', { callId }), 'acceptCallNew');
    assert.equal(typeof accepted.roomId, 'string');
    assert.equal(accepted.room.roomType, 'direct');
    assert.equal(accepted.room.roomId, accepted.roomId);
    assert.deepEqual(accepted.room.participants.map((p) => p.userId).sort(), [a, b].sort());
    const told = await waitForEvent(a1, 'callAcceptedNew', { predicate: forCall(callId) });
    assert.equal(told.roomId, accepted.roomId);
    assert.equal(told.room.roomType, 'direct');
    const stop = await waitForEvent(phone, 'callCancelled', { predicate: forCall(callId) });
    assert.equal(stop.reason, 'answered_elsewhere');
    // The caller's other device and the answering device get neither.
    await expectNone(a2, 'callAcceptedNew', { predicate: forCall(callId), ms: 300 });
    await expectNone(laptop, 'callCancelled', { predicate: forCall(callId), ms: 0 });
    // A retry of the accept, from either device, is a lost race.
    failed(await ack(phone, 'acceptCallNew', { callId }), 'CONFLICT', 'second accept');
    failed(await ack(a1, 'cancelCall', { callId }), 'CONFLICT', 'cancel after accept');
    // Both are in a call now: a third user gets BUSY, with canRetry.
    const c = randomId('ring-c');
    const sc = await dev(server, c, 'Cid');
    const busy = failed(await ack(sc, 'callUser', { callId: randomUUID(), targetUserId: b }), 'BUSY', 'busy callee');
    assert.equal(busy.canRetry, true);
    failed(await ack(sc, 'callUser', { callId: randomUUID(), targetUserId: a }), 'BUSY', 'busy caller side');
    // No timeout follows an accepted call.
    await expectNone(a1, 'callTimeout', { predicate: forCall(callId), ms: RING_SECS * 1000 + 700 });
  }));

  test('OFFLINE, BUSY while ringing, CONFLICT on a reused callId', T, withStderr(srv, async () => {
    const a = randomId('ref-a');
    const b = randomId('ref-b');
    const c = randomId('ref-c');
    const sa = await dev(server, a, 'Ann');
    const sb = await dev(server, b, 'Ben');
    const sc = await dev(server, c, 'Cid');
    const offline = failed(await ack(sa, 'callUser', { callId: randomUUID(), targetUserId: randomId('nobody') }), 'OFFLINE', 'offline');
    assert.equal(offline.canRetry, true);
    const callId = randomUUID();
    ok(await ack(sa, 'callUser', { callId, targetUserId: b }), 'callUser');
    await waitForEvent(sb, 'incomingCallNew', { predicate: forCall(callId) });
    const busy = failed(await ack(sc, 'callUser', { callId: randomUUID(), targetUserId: b }), 'BUSY', 'callee ringing');
    assert.equal(busy.canRetry, true);
    failed(await ack(sc, 'callUser', { callId: randomUUID(), targetUserId: a }), 'BUSY', 'caller ringing');
    failed(await ack(sa, 'callUser', { callId: randomUUID(), targetUserId: c }), 'BUSY', 'caller already calling');
    await expectNone(sc, 'incomingCallNew');
    failed(await ack(sc, 'callUser', { callId, targetUserId: a }), 'CONFLICT', 'reused id');
    // Only the callee answers, only the caller cancels.
    failed(await ack(sa, 'acceptCallNew', { callId }), 'FORBIDDEN', 'caller accepts');
    failed(await ack(sc, 'rejectCallNew', { callId }), 'FORBIDDEN', 'stranger rejects');
    failed(await ack(sb, 'cancelCall', { callId }), 'FORBIDDEN', 'callee cancels');
    failed(await ack(sb, 'acceptCallNew', { callId: randomUUID() }), 'NOT_FOUND', 'unknown call');
    ok(await ack(sa, 'cancelCall', { callId }), 'cancel');
    failed(await ack(sc, 'callUser', { callId, targetUserId: b }), 'CONFLICT', 'reused id after the call');
  }));

  test('rejecting tells the caller with the reason and stops the other devices', T, withStderr(srv, async () => {
    const a = randomId('rej-a');
    const b = randomId('rej-b');
    const sa = await dev(server, a, 'Ann');
    const phone = await dev(server, b, 'Ben', 'phone');
    const laptop = await dev(server, b, 'Ben', 'laptop');
    const callId = randomUUID();
    ok(await ack(sa, 'callUser', { callId, targetUserId: b }), 'callUser');
    await waitForEvent(laptop, 'incomingCallNew', { predicate: forCall(callId) });
    const r = ok(await ack(phone, 'rejectCallNew', { callId, reason: 'in a meeting' }), 'reject');
    assert.equal(typeof r.message, 'string');
    assert.deepEqual(await waitForEvent(sa, 'callRejectedNew', { predicate: forCall(callId) }), { callId, reason: 'in a meeting' });
    const stop = await waitForEvent(laptop, 'callCancelled', { predicate: forCall(callId) });
    assert.equal(stop.reason, 'rejected_elsewhere');
    failed(await ack(laptop, 'acceptCallNew', { callId }), 'CONFLICT', 'accept after reject');
    // A reject without a reason gets the default one.
    const second = randomUUID();
    ok(await ack(sa, 'callUser', { callId: second, targetUserId: b }), 'callUser again');
    ok(await ack(laptop, 'rejectCallNew', { callId: second }), 'reject');
    assert.equal((await waitForEvent(sa, 'callRejectedNew', { predicate: forCall(second) })).reason, 'declined');
  }));

  test('cancelling stops every callee device; a late answer is CONFLICT', T, withStderr(srv, async () => {
    const a = randomId('can-a');
    const b = randomId('can-b');
    const sa = await dev(server, a, 'Ann');
    const phone = await dev(server, b, 'Ben', 'phone');
    const laptop = await dev(server, b, 'Ben', 'laptop');
    const callId = randomUUID();
    ok(await ack(sa, 'callUser', { callId, targetUserId: b }), 'callUser');
    await waitForEvent(phone, 'incomingCallNew', { predicate: forCall(callId) });
    ok(await ack(sa, 'cancelCall', { callId }), 'cancel');
    for (const s of [phone, laptop]) {
      const stop = await waitForEvent(s, 'callCancelled', { predicate: forCall(callId) });
      assert.equal(stop.reason, undefined);
    }
    failed(await ack(phone, 'acceptCallNew', { callId }), 'CONFLICT', 'late accept');
    failed(await ack(sa, 'cancelCall', { callId }), 'CONFLICT', 'double cancel');
  }));

  test('accept racing cancel: exactly one wins and the other is CONFLICT', T, withStderr(srv, async () => {
    const a = randomId('race-a');
    const b = randomId('race-b');
    const sa = await dev(server, a, 'Ann');
    const sb = await dev(server, b, 'Ben');
    for (let i = 0; i < 5; i++) {
      const callId = randomUUID();
      ok(await ack(sa, 'callUser', { callId, targetUserId: b }), 'callUser');
      await waitForEvent(sb, 'incomingCallNew', { predicate: forCall(callId) });
      const [acc, can] = await Promise.all([ack(sb, 'acceptCallNew', { callId }), ack(sa, 'cancelCall', { callId })]);
      assert.equal([acc, can].filter((r) => r.success).length, 1, `one winner: ${JSON.stringify([acc, can])}`);
      const loser = acc.success ? can : acc;
      assert.equal(loser.code, 'CONFLICT');
      if (acc.success) {
        // End the room so the next round can ring again.
        ok(await ack(sa, 'endCall', { roomId: acc.roomId }), 'endCall');
      }
      await eventually(async () => {
        const r = await ack(sa, 'getCallRequests', {});
        assert.deepEqual(r.outgoing, []);
      });
    }
  }));

  test('an unanswered call times out on both sides, with a missed-call notification and history', T, withStderr(srv, async () => {
    const a = randomId('to-a');
    const b = randomId('to-b');
    const sa = await dev(server, a, 'Ann');
    const sb = await dev(server, b, 'Ben');
    const callId = randomUUID();
    const started = Date.now();
    ok(await ack(sa, 'callUser', { callId, targetUserId: b }), 'callUser');
    await waitForEvent(sa, 'callTimeout', { predicate: forCall(callId), timeoutMs: RING_SECS * 1000 + 3000 });
    await waitForEvent(sb, 'callTimeout', { predicate: forCall(callId), timeoutMs: 2000 });
    assert.ok(Date.now() - started >= RING_SECS * 1000 - 100, 'not before the ring timeout');
    failed(await ack(sb, 'acceptCallNew', { callId }), 'CONFLICT', 'accept after timeout');
    await expectNone(sa, 'callTimeout', {
      predicate: (d) => d?.callId === callId && eventsOf(sa, 'callTimeout', forCall(callId)).length > 1,
      ms: 500,
    });
    assert.equal(eventsOf(sa, 'callTimeout', forCall(callId)).length, 1, 'exactly once');
    await eventually(async () => {
      const n = await http(`${server.url}/api/users/${b}/notifications`);
      assert.equal(n.status, 200);
      const missed = n.json.notifications.find((x) => x.kind === 'missed_call');
      assert.ok(missed, JSON.stringify(n.json));
      assert.equal(missed.priority, 'high');
      assert.equal(missed.data.callId, callId);
    });
    const hist = ok(await ack(sb, 'getCallHistory', {}), 'getCallHistory');
    const entry = hist.calls.find((c) => c.id === callId);
    assert.equal(entry.outcome, 'missed');
    assert.equal(entry.status, 'ended');
    assert.equal(entry.initiator, a);
    // Both are free again.
    ok(await ack(sb, 'callUser', { callId: randomUUID(), targetUserId: a }), 'call back');
  }));

  test('a callee with only a sleeping device is rung by push; the device connects and answers', T, withStderr(srv, async () => {
    const a = randomId('push-a');
    const b = randomId('push-b');
    const sa = await dev(server, a, 'Ann');
    const asleep = await dev(server, b, 'Ben', 'phone');
    asleep.close();
    await eventually(async () => {
      const p = ok(await ack(sa, 'presence:get', { userIds: [b] }), 'presence:get');
      assert.equal(p.presence[b]?.devices ?? 0, 0);
    });
    const callId = randomUUID();
    const placed = ok(await ack(sa, 'callUser', { callId, targetUserId: b }), 'callUser');
    assert.equal(placed.delivery, 'push');
    const n = await http(`${server.url}/api/users/${b}/notifications`);
    const push = n.json.notifications.find((x) => x.kind === 'incoming_call');
    assert.ok(push, JSON.stringify(n.json));
    assert.equal(push.priority, 'high');
    assert.equal(push.data.callId, callId);
    const woken = await dev(server, b, 'Ben', 'phone');
    const ring = await waitForEvent(woken, 'incomingCallNew', { predicate: forCall(callId) });
    assert.equal(ring.from, a);
    ok(await ack(woken, 'acceptCallNew', { callId }), 'accept from the woken phone');
    await waitForEvent(sa, 'callAcceptedNew', { predicate: forCall(callId) });
  }));

  test("a caller's device dropping cancels its rings", T, withStderr(srv, async () => {
    const a = randomId('drop-a');
    const b = randomId('drop-b');
    const sa = await dev(server, a, 'Ann');
    const sb = await dev(server, b, 'Ben');
    const callId = randomUUID();
    ok(await ack(sa, 'callUser', { callId, targetUserId: b }), 'callUser');
    await waitForEvent(sb, 'incomingCallNew', { predicate: forCall(callId) });
    sa.close();
    await waitForEvent(sb, 'callCancelled', { predicate: forCall(callId), timeoutMs: 5000 });
    const r = ok(await ack(sb, 'getCallRequests', {}), 'getCallRequests');
    assert.deepEqual(r.incoming, []);
    const call = await http(`${server.url}/api/calls/${callId}`);
    assert.equal(call.status, 200);
    assert.equal(call.json.outcome, 'cancelled');
    assert.equal(call.json.endReason, 'caller_disconnected');
  }));

  test('call history on the socket and over HTTP, newest first, paged', T, withStderr(srv, async () => {
    const a = randomId('hist-a');
    const b = randomId('hist-b');
    const sa = await dev(server, a, 'Ann');
    const sb = await dev(server, b, 'Ben');
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const callId = randomUUID();
      ok(await ack(sa, 'callUser', { callId, targetUserId: b }), 'callUser');
      if (i === 1) ok(await ack(sb, 'rejectCallNew', { callId }), 'reject');
      else ok(await ack(sa, 'cancelCall', { callId }), 'cancel');
      ids.push(callId);
      await sleep(5);
    }
    const page = ok(await ack(sa, 'getCallHistory', { limit: 2 }), 'getCallHistory');
    assert.deepEqual(page.calls.map((c) => c.id), [ids[2], ids[1]]);
    assert.equal(page.hasMore, true);
    assert.equal(page.calls[1].outcome, 'rejected');
    assert.equal(page.calls[1].endedBy, b);
    assert.equal(page.calls[0].kind, 'direct');
    const rest = ok(await ack(sa, 'getCallHistory', { limit: 2, before: ids[1] }), 'page 2');
    assert.deepEqual(rest.calls.map((c) => c.id), [ids[0]]);
    assert.equal(rest.hasMore, false);
    failed(await ack(sa, 'getCallHistory', { before: 'nope' }), 'NOT_FOUND', 'unknown cursor');

    const admin = await http(`${server.url}/api/calls/history?userId=${b}&limit=10`);
    assert.equal(admin.status, 200);
    assert.deepEqual(admin.json.calls.map((c) => c.id), [...ids].reverse());
    assert.equal((await http(`${server.url}/api/calls/history`)).status, 400);
    const one = await http(`${server.url}/api/calls/${ids[0]}`);
    assert.equal(one.status, 200);
    assert.equal(one.json.outcome, 'cancelled');
    assert.equal((await http(`${server.url}/api/calls/${randomUUID()}`)).status, 404);
    const token = mintToken(SECRET, { sub: b, name: 'Ben' });
    const mine = await http(`${server.url}/api/me/calls?limit=1`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(mine.status, 200, mine.text);
    assert.deepEqual(mine.json.calls.map((c) => c.id), [ids[2]]);
    assert.equal((await http(`${server.url}/api/me/calls`)).status, 401);
  }));
});
