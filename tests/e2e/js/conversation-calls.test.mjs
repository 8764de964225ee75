// Conversation calls (protocol §7, seed 004) with real Socket.IO clients: every `call:*`
// client event with its ack (and `call:error` on failures), every server event, on memory +
// SQLite (one instance) and on Redis + PostgreSQL with two instances sharing them, where the
// two participants sit on different instances so that signalling, joins, toggles and the
// end cross instances. Also: CALL_ALREADY_ACTIVE and force-leave, the no-join timeout, the
// reconnect window, guests from tokens with a conversationId claim, TURN credentials per
// recipient, the call history, and the move to an SFU room when a third participant joins
// (call:mode-changed; the room is joined with joinRoom; the call's end ends it).
// The Redis suite is skipped with a message when Redis or PostgreSQL is unreachable, unless
// SWITCHBOARD_REQUIRE_BACKENDS=1, when it fails instead.
import assert from 'node:assert/strict';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  backendsSkipReason,
  closeAllSockets,
  connect,
  createTestDatabase,
  emitAck,
  eventsOf,
  expectNone,
  failed,
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
const RECONNECT_SECS = 2;
const SECRET = 'e2e-secret-convcalls-0123456789abcdef';
const TURN_SECRET = 'e2e-turn-secret';
const T = { timeout: 90_000 };

const ack = (socket, event, payload) => emitAck(socket, event, payload, 10_000);
const forCall = (callId) => (d) => d?.callId === callId;

/** A failed `call:*` ack also comes as `call:error {code, message, callId?}`. */
async function failedWithCallError(socket, event, payload, code, callId) {
  const reply = failed(await ack(socket, event, payload), code, event);
  const report = await waitForEvent(socket, 'call:error', { predicate: (e) => e?.code === code });
  assert.equal(report.message, reply.error);
  assert.equal(report.callId, callId);
  return reply;
}

/** The TURN REST credential a coturn with the same secret expects for `username`. */
function turnCredential(username) {
  return createHmac('sha1', TURN_SECRET).update(username).digest('base64');
}

function checkIce(iceServers, peerId) {
  assert.deepEqual(iceServers[0], { urls: ['stun:stun.e2e.test:3478'] });
  const turn = iceServers[1];
  assert.deepEqual(turn.urls, ['turn:turn.e2e.test:3478']);
  const [expiry, who] = turn.username.split(':');
  assert.equal(who, peerId);
  assert.ok(Number(expiry) > Date.now() / 1000 + 3000, 'valid for the configured hour');
  assert.equal(turn.credential, turnCredential(turn.username));
}

let skipReason = null;
let backendError = null;
try {
  skipReason = await backendsSkipReason();
} catch (e) {
  backendError = e;
}
if (skipReason) console.log(`# skipping the Redis + PostgreSQL conversation-call suite: ${skipReason}`);

const BACKENDS = [
  { label: 'memory store, SQLite, one instance', redis: false },
  { label: 'Redis store, PostgreSQL, two instances', redis: true },
];

for (const backend of BACKENDS) describe(`conversation calls (${backend.label})`, { skip: backend.redis && skipReason ? `backends unavailable: ${skipReason}` : false }, () => {
  let a;
  let b;
  let db;
  const prefix = `e2e-convcalls-${randomBytes(5).toString('hex')}:`;

  before(async () => {
    const args = [];
    const env = {
      SWITCHBOARD_AUTH__JWT_SECRET: SECRET,
      SWITCHBOARD_TIMERS__RING_TIMEOUT_SECS: String(RING_SECS),
      SWITCHBOARD_TIMERS__RECONNECT_WINDOW_SECS: String(RECONNECT_SECS),
      SWITCHBOARD_RATE_LIMITS__CALL__LIMIT: '100000',
      SWITCHBOARD_ICE__STUN_URLS: '["stun:stun.e2e.test:3478"]',
      SWITCHBOARD_ICE__TURN_URLS: '["turn:turn.e2e.test:3478"]',
      SWITCHBOARD_ICE__TURN_SECRET: TURN_SECRET,
      SWITCHBOARD_ICE__TURN_CREDENTIAL_TTL_SECS: '3600',
    };
    if (backend.redis) {
      if (backendError) throw backendError;
      db = await createTestDatabase();
      args.push('--redis-url', REDIS_URL, '--database-url', db.url);
      env.SWITCHBOARD_STORE__PREFIX = prefix;
    }
    a = await startServer({ dev: true, env, args });
    // One after the other: both run the database migrations at start-up.
    b = backend.redis ? await startServer({ dev: true, env, args }) : a;
  });

  after(async () => {
    closeAllSockets();
    await Promise.allSettled([a?.stop(), b !== a ? b?.stop() : null]);
    if (db) await db.drop().catch((e) => console.log(`# could not drop ${db.name}: ${e.message}`));
    if (backend.redis) redisCleanup(prefix);
  });
  const srv = () => (a === b ? [a] : [a, b]);

  async function user(server, userId, deviceId = 'd1') {
    const socket = await connect(server.url, { userId, name: userId.toUpperCase(), deviceId }, { timeoutMs: 10_000 });
    await waitForEvent(socket, 'session', { timeoutMs: 10_000 });
    return socket;
  }

  /** ann and cat on A, bob on B, in one group conversation. */
  async function team() {
    const ids = { ann: randomId('ann'), bob: randomId('bob'), cat: randomId('cat') };
    const ann = await user(a, ids.ann);
    const bob = await user(b, ids.bob);
    const cat = await user(a, ids.cat);
    const created = ok(await ack(ann, 'conversation:create', { type: 'group', memberIds: [ids.bob, ids.cat], name: 'team' }), 'conversation:create');
    return { ids, ann, bob, cat, conv: created.conversation.id };
  }

  test('every §7 event: initiate, join, signal, toggles, quality, connected, leave, ended, history', T, withStderr(srv, async () => {
    const { ids, ann, bob, cat, conv } = await team();
    const started = ok(await ack(ann, 'call:initiate', { conversationId: conv, type: 'video', settings: { resolution: '720p' } }), 'call:initiate');
    const callId = started.callId;
    assert.equal(started.call.id, callId);
    assert.equal(started.call.status, 'ringing', 'members are connected: their devices were rung');
    assert.equal(started.call.mode, 'p2p');
    checkIce(started.iceServers, ids.ann);
    for (const s of [bob, cat, ann]) {
      const initiated = await waitForEvent(s, 'call:initiated', { predicate: forCall(callId) });
      assert.equal(initiated.conversationId, conv);
      assert.equal(initiated.initiator, ids.ann);
      assert.equal(initiated.type, 'video');
      assert.equal(initiated.participants[0].userId, ids.ann);
    }

    const joined = ok(await ack(bob, 'call:join', { callId }), 'call:join');
    assert.equal(joined.call.status, 'active');
    checkIce(joined.iceServers, ids.bob);
    const annHears = await waitForEvent(ann, 'call:participant-joined', { predicate: forCall(callId) });
    const bobHears = await waitForEvent(bob, 'call:participant-joined', { predicate: forCall(callId) });
    assert.equal(annHears.participant.userId, ids.bob);
    assert.equal(annHears.mode, 'p2p');
    checkIce(annHears.iceServers, ids.ann);
    checkIce(bobHears.iceServers, ids.bob);
    const bobRecord = annHears.participant.id;

    // Offer / answer / ICE, across instances on Redis; `from` is the real sender.
    ok(await ack(ann, 'call:signal', { callId, signal: { type: 'offer', from: 'someone-else', to: ids.bob, sdp: { type: 'offer', sdp: 'v=0\r\n' } } }), 'offer');
    const offer = await waitForEvent(bob, 'call:signal', { predicate: forCall(callId) });
    assert.deepEqual(offer.signal, { type: 'offer', from: ids.ann, to: ids.bob, sdp: { type: 'offer', sdp: 'v=0\r\n' } });
    ok(await ack(bob, 'call:signal', { callId, signal: { type: 'answer', to: ids.ann, sdp: 'v=0\r\n' } }), 'answer');
    assert.equal((await waitForEvent(ann, 'call:signal', { predicate: forCall(callId) })).signal.type, 'answer');
    const candidate = { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host', sdpMid: '0', sdpMLineIndex: 0 };
    ok(await ack(ann, 'call:signal', { callId, signal: { type: 'ice-candidate', to: ids.bob, candidate } }), 'ice a→b');
    ok(await ack(bob, 'call:signal', { callId, signal: { type: 'ice-candidate', to: ids.ann, candidate } }), 'ice b→a');
    assert.deepEqual((await waitForEvent(bob, 'call:signal', { predicate: (e) => e?.signal?.type === 'ice-candidate' })).signal.candidate, candidate);
    await waitForEvent(ann, 'call:signal', { predicate: (e) => e?.signal?.type === 'ice-candidate' });
    // Signals only between participants, within the limits.
    await failedWithCallError(cat, 'call:signal', { callId, signal: { type: 'offer', to: ids.bob, sdp: 'v=0' } }, 'FORBIDDEN', callId);
    await failedWithCallError(ann, 'call:signal', { callId, signal: { type: 'offer', to: ids.cat, sdp: 'v=0' } }, 'NOT_FOUND', callId);
    await failedWithCallError(ann, 'call:signal', { callId, signal: { type: 'offer', to: ids.bob, sdp: 'x'.repeat(70_000) } }, 'TOO_LARGE', callId);
    await failedWithCallError(ann, 'call:signal', { callId, signal: { type: 'ice-candidate', to: ids.bob, candidate: { candidate: 'y'.repeat(3000) } } }, 'TOO_LARGE', callId);
    await failedWithCallError(ann, 'call:signal', { callId, signal: { type: 'offer', to: ids.bob } }, 'INVALID_PAYLOAD', callId);
    await expectNone(cat, 'call:signal');

    ok(await ack(bob, 'call:toggle-audio', { callId, enabled: false }), 'toggle-audio');
    const toggled = await waitForEvent(ann, 'call:media-toggled', { predicate: forCall(callId) });
    assert.deepEqual(toggled, { callId, participantId: bobRecord, userId: ids.bob, mediaType: 'audio', enabled: false });
    ok(await ack(ann, 'call:toggle-video', { callId, enabled: false }), 'toggle-video');
    assert.equal((await waitForEvent(bob, 'call:media-toggled', { predicate: (e) => e?.mediaType === 'video' })).userId, ids.ann);
    await failedWithCallError(bob, 'call:toggle-audio', { callId, enabled: 'no' }, 'INVALID_PAYLOAD', callId);
    ok(await ack(bob, 'call:quality', { callId, stats: { rtt: 21, packetsLost: 0 } }), 'quality');
    await failedWithCallError(bob, 'call:quality', { callId, stats: { blob: 'z'.repeat(5000) } }, 'TOO_LARGE', callId);
    ok(await ack(ann, 'call:connected', { callId }), 'call:connected');

    await sleep(1100);
    ok(await ack(bob, 'call:leave', { callId }), 'bob leaves');
    assert.deepEqual(await waitForEvent(ann, 'call:participant-left', { predicate: forCall(callId) }), { callId, participantId: bobRecord, userId: ids.bob });
    ok(await ack(ann, 'call:leave', { callId }), 'ann leaves');
    for (const s of [ann, bob, cat]) {
      const ended = await waitForEvent(s, 'call:ended', { predicate: forCall(callId) });
      assert.equal(ended.endedBy, ids.ann);
      assert.ok(ended.duration >= 1, `duration from connectedAt: ${ended.duration}`);
    }
    await failedWithCallError(bob, 'call:join', { callId }, 'CONFLICT', callId);

    const history = ok(await ack(bob, 'getCallHistory', {}), 'getCallHistory');
    const call = history.calls.find((c) => c.id === callId);
    assert.ok(call, `the call is in bob's history: ${JSON.stringify(history).slice(0, 300)}`);
    assert.equal(call.outcome, 'completed');
    assert.equal(call.conversationId, conv);
    const bobRow = call.participants.find((p) => p.userId === ids.bob);
    assert.equal(bobRow.id, bobRecord);
    assert.ok(bobRow.leftAt >= bobRow.joinedAt);
    assert.equal(bobRow.isAudioEnabled, false);
    assert.ok(call.connectedAt, 'connectedAt recorded');
  }));

  test('a third participant moves the call to an SFU room; joinRoom; the call ending ends the room', T, withStderr(srv, async () => {
    const { ids, ann, bob, cat, conv } = await team();
    const callId = ok(await ack(ann, 'call:initiate', { conversationId: conv, type: 'audio' }), 'call:initiate').callId;
    ok(await ack(bob, 'call:join', { callId }), 'bob joins');
    const third = ok(await ack(cat, 'call:join', { callId }), 'cat joins');
    assert.equal(third.call.mode, 'sfu');
    const roomId = third.call.roomId;
    assert.equal(typeof roomId, 'string');
    for (const s of [ann, bob, cat]) {
      const changed = await waitForEvent(s, 'call:mode-changed', { predicate: forCall(callId) });
      assert.deepEqual(changed, { callId, mode: 'sfu', roomId });
    }
    assert.equal((await waitForEvent(ann, 'call:participant-joined', { predicate: (d) => d?.participant?.userId === ids.cat })).mode, 'sfu');

    // The room: private to the conversation's members, hosted by the initiator; call
    // participants join it (bob from the other instance on Redis) although in the call.
    const catRoom = ok(await ack(cat, 'joinRoom', { roomId }), 'cat joinRoom').room;
    assert.equal(catRoom.hostId, ids.ann);
    assert.equal(catRoom.isPrivate, true);
    ok(await ack(bob, 'joinRoom', { roomId }), 'bob joinRoom');
    ok(await ack(ann, 'joinRoom', { roomId }), 'the host joins from her socket');
    await waitForEvent(ann, 'userJoined', { predicate: (d) => d?.userId === ids.bob });
    const stranger = await user(b, randomId('zed'));
    failed(await ack(stranger, 'joinRoom', { roomId }), 'FORBIDDEN', 'a non-member joinRoom');

    // Back to two: still on the SFU, and no second room.
    ok(await ack(cat, 'call:leave', { callId }), 'cat leaves the call');
    await waitForEvent(ann, 'call:participant-left', { predicate: forCall(callId) });
    const back = ok(await ack(cat, 'call:join', { callId }), 'cat back');
    assert.equal(back.call.mode, 'sfu');
    assert.equal(back.call.roomId, roomId);
    ok(await ack(cat, 'call:leave', { callId }), 'cat leaves again');
    await expectNone(ann, 'call:mode-changed', { predicate: (d) => d?.callId === callId && d.roomId !== roomId, ms: 200 });
    assert.equal(eventsOf(bob, 'call:mode-changed', forCall(callId)).length, 1, 'one switch');

    // The call ends with its last participant, and its room with it.
    ok(await ack(bob, 'call:leave', { callId }), 'bob leaves');
    ok(await ack(ann, 'call:leave', { callId }), 'ann leaves');
    await waitForEvent(ann, 'call:ended', { predicate: forCall(callId) });
    for (const s of [ann, bob]) {
      const ended = await waitForEvent(s, 'callEnded', { predicate: (d) => d?.roomId === roomId });
      assert.equal(ended.reason, 'call_ended');
    }
    failed(await ack(cat, 'joinRoom', { roomId }), 'CONFLICT', 'the ended room');
    // Everyone is free for the next call.
    ok(await ack(cat, 'call:initiate', { conversationId: conv, type: 'audio' }), 'a new call');
  }));

  test('one live call per conversation; force-leave ends it; guests and bad payloads', T, withStderr(srv, async () => {
    const { ids, ann, bob, cat, conv } = await team();
    const callId = ok(await ack(ann, 'call:initiate', { conversationId: conv, type: 'audio' }), 'initiate').callId;
    await failedWithCallError(bob, 'call:initiate', { conversationId: conv, type: 'audio' }, 'CALL_ALREADY_ACTIVE', undefined);
    await failedWithCallError(bob, 'call:initiate', { conversationId: conv, type: 'fax' }, 'INVALID_PAYLOAD', undefined);
    await failedWithCallError(bob, 'call:join', { callId: '' }, 'INVALID_PAYLOAD', undefined);
    const unknown = randomUUID();
    await failedWithCallError(bob, 'call:join', { callId: unknown }, 'NOT_FOUND', unknown);
    const outsider = await user(b, randomId('out'));
    await failedWithCallError(outsider, 'call:join', { callId }, 'FORBIDDEN', callId);
    await failedWithCallError(outsider, 'call:initiate', { conversationId: conv, type: 'audio' }, 'FORBIDDEN', undefined);

    // A guest of this conversation joins (on the other instance) under an anonymous id.
    const guestId = randomId('anon');
    const guest = await connect(b.url, { token: mintToken(SECRET, { sub: guestId, name: 'Guest', guest: true, conversationId: conv }) }, { timeoutMs: 10_000 });
    await waitForEvent(guest, 'session');
    const joined = ok(await ack(guest, 'call:join', { callId }), 'guest joins');
    checkIce(joined.iceServers, guestId);
    const seen = await waitForEvent(ann, 'call:participant-joined', { predicate: forCall(callId) });
    assert.equal(seen.participant.anonymousId, guestId);
    assert.equal(seen.participant.userId, undefined);
    await failedWithCallError(guest, 'call:initiate', { conversationId: conv, type: 'audio' }, 'FORBIDDEN', undefined);
    ok(await ack(guest, 'call:signal', { callId, signal: { type: 'offer', to: ids.ann, sdp: 'v=0' } }), 'guest offer');
    assert.equal((await waitForEvent(ann, 'call:signal', { predicate: forCall(callId) })).signal.from, guestId);
    ok(await ack(guest, 'call:leave', { callId }), 'guest leaves');
    const left = await waitForEvent(ann, 'call:participant-left', { predicate: forCall(callId) });
    assert.deepEqual(left, { callId, participantId: seen.participant.id, anonymousId: guestId });
    // A guest of another conversation is refused.
    const stranger = await connect(a.url, { token: mintToken(SECRET, { sub: randomId('anon'), name: 'G2', guest: true, conversationId: randomUUID() }) }, { timeoutMs: 10_000 });
    await waitForEvent(stranger, 'session');
    await failedWithCallError(stranger, 'call:join', { callId }, 'FORBIDDEN', callId);
    await failedWithCallError(stranger, 'call:force-leave', { conversationId: conv }, 'FORBIDDEN', undefined);

    // Force-leave: the initiator leaves the call, which ends as it is left empty.
    const forced = ok(await ack(ann, 'call:force-leave', { conversationId: conv }), 'force-leave');
    assert.deepEqual(forced.endedCallIds, [callId]);
    assert.equal((await waitForEvent(cat, 'call:ended', { predicate: forCall(callId) })).reason, 'left');
    assert.deepEqual(ok(await ack(bob, 'call:force-leave', { conversationId: conv }), 'nothing to leave').endedCallIds, []);
    ok(await ack(bob, 'call:initiate', { conversationId: conv, type: 'video' }), 'a new call once the old one ended');
  }));

  test('nobody joins: the call ends after the ring timeout as missed', T, withStderr(srv, async () => {
    const { ids, ann, bob, conv } = await team();
    const callId = ok(await ack(ann, 'call:initiate', { conversationId: conv, type: 'audio' }), 'initiate').callId;
    const ended = await waitForEvent(bob, 'call:ended', { predicate: forCall(callId), timeoutMs: (RING_SECS + 8) * 1000 });
    assert.deepEqual(ended, { callId, duration: 0, endedBy: 'system', reason: 'timeout' });
    await waitForEvent(ann, 'call:ended', { predicate: forCall(callId) });
    await sleep(300);
    assert.equal(eventsOf(ann, 'call:ended', forCall(callId)).length, 1, 'ended once');
    assert.equal(eventsOf(bob, 'call:ended', forCall(callId)).length, 1, 'ended once');
    const call = ok(await ack(bob, 'getCallHistory', {}), 'history').calls.find((c) => c.id === callId);
    assert.equal(call.outcome, 'missed');
    assert.equal(call.initiator, ids.ann);
  }));

  test('a dropped participant is reconnecting, resumes on rejoin, and leaves after the window', T, withStderr(srv, async () => {
    const { ids, ann, bob, conv } = await team();
    const callId = ok(await ack(ann, 'call:initiate', { conversationId: conv, type: 'video' }), 'initiate').callId;
    ok(await ack(bob, 'call:join', { callId }), 'join');
    const record = (await waitForEvent(ann, 'call:participant-joined', { predicate: forCall(callId) })).participant.id;
    bob.disconnect();
    assert.deepEqual(await waitForEvent(ann, 'call:participant-reconnecting', { predicate: forCall(callId) }), { callId, userId: ids.bob });
    // Back on a new socket of the same device, on the other instance: the same record.
    const back = await user(a, ids.bob);
    const resumed = ok(await ack(back, 'call:join', { callId }), 'rejoin');
    assert.deepEqual(resumed.call.participants.filter((p) => p.userId === ids.bob).map((p) => p.id), [record]);
    await waitForEvent(ann, 'call:participant-joined', { predicate: forCall(callId) });
    await expectNone(ann, 'call:participant-left', { predicate: forCall(callId), ms: (RECONNECT_SECS + 1) * 1000 });
    // Gone for good this time.
    back.disconnect();
    await waitForEvent(ann, 'call:participant-reconnecting', { predicate: forCall(callId) });
    const left = await waitForEvent(ann, 'call:participant-left', { predicate: forCall(callId), timeoutMs: (RECONNECT_SECS + 8) * 1000 });
    assert.equal(left.participantId, record);
    ok(await ack(ann, 'call:leave', { callId }), 'the last one leaves');
    await waitForEvent(ann, 'call:ended', { predicate: forCall(callId) });
  }));
});
