// Rooms (protocol §6, seed 002) with real socket.io-client sockets against the binary, on
// memory + SQLite and again on Redis + PostgreSQL (skipped with a message when those are
// unreachable): every client event and its ack, INVALID_PAYLOAD for malformed payloads,
// every server event (incomingCall, invitationExpired, callAccepted, callRejected,
// callEnded, userJoined, userLeft, newMessage, messageReactionUpdated,
// participantMediaStateUpdated, roomListUpdated, roomHostless, hostReconnected), the
// permission rules, BUSY, host grace / hostless, the reconnect window on a socket drop,
// GET /api/rooms and /api/rooms/{roomId}, and (Redis) a room surviving a restart.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  backendsSkipReason,
  call,
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
  ok,
  randomId,
  REDIS_URL,
  redisCleanup,
  sleep,
  startServer,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

const GRACE_SECS = 2;
const RECONNECT_SECS = 3;
const INVITE_SECS = 2;
const T = { timeout: 60_000 };

async function refused(socket, event, payload, code, what = `${event} ${JSON.stringify(payload)}`) {
  return failed(await emitAck(socket, event, payload, 10_000), code, what);
}

const inRoom = (roomId) => (d) => d?.roomId === roomId;
const listHas = (roomId, pred = () => true) => (d) => (d?.rooms ?? []).some((r) => r.roomId === roomId && pred(r));
const listLacks = (roomId) => (d) => Array.isArray(d?.rooms) && !d.rooms.some((r) => r.roomId === roomId);

async function createGroup(socket, extra = {}) {
  const ack = await call(socket, 'createRoom', { roomType: 'group', roomName: 'Standup', ...extra });
  return ack.room;
}

function checkRoom(room, what) {
  for (const k of ['roomId', 'roomType', 'roomName', 'hostId', 'hostName', 'status']) {
    assert.equal(typeof room[k], 'string', `${what}: ${k}`);
  }
  assert.equal(typeof room.isPrivate, 'boolean', `${what}: isPrivate`);
  assert.equal(typeof room.isHostless, 'boolean', `${what}: isHostless`);
  assert.ok(Array.isArray(room.participants), `${what}: participants`);
  assert.ok(Array.isArray(room.invitedUserIds), `${what}: invitedUserIds`);
  assert.ok(Array.isArray(room.messages), `${what}: messages`);
  assert.ok(room.createdAt > 1.6e12, `${what}: createdAt in ms`);
  for (const p of room.participants) {
    for (const k of ['userId', 'name', 'socketId', 'status']) assert.equal(typeof p[k], 'string', `${what}: participant ${k}`);
    for (const k of ['isHost', 'isMuted', 'isVideoEnabled']) assert.equal(typeof p[k], 'boolean', `${what}: participant ${k}`);
    assert.ok(Array.isArray(p.producerIds) && Array.isArray(p.consumerIds), `${what}: producer/consumer ids`);
    assert.equal(typeof p.joinedAt, 'number');
    assert.equal(typeof p.mediaStateUpdatedAt, 'number');
  }
}

const ids = (room) => room.participants.map((p) => p.userId).sort();

// ---------------------------------------------------------------------------

let redisSkip = null;
let redisError = null;
try {
  redisSkip = await backendsSkipReason();
} catch (e) {
  redisError = e;
}
if (redisSkip) console.log(`# skipping the Redis + PostgreSQL rooms suite: ${redisSkip}`);

const BACKENDS = [
  { label: 'memory store, SQLite', redis: false },
  { label: 'Redis store, PostgreSQL', redis: true },
];

for (const backend of BACKENDS) describe(`rooms on one instance (${backend.label}; grace ${GRACE_SECS} s, reconnect ${RECONNECT_SECS} s, invitations ${INVITE_SECS} s)`, { skip: backend.redis && redisSkip ? `backends unavailable: ${redisSkip}` : false }, () => {
  let server;
  let db;
  let args = [];
  let env = {};
  const prefix = `e2e-rooms-${randomBytes(5).toString('hex')}:`;
  before(async () => {
    env = {
      SWITCHBOARD_TIMERS__HOST_GRACE_PERIOD_SECS: String(GRACE_SECS),
      SWITCHBOARD_TIMERS__RECONNECT_WINDOW_SECS: String(RECONNECT_SECS),
      SWITCHBOARD_TIMERS__INVITATION_TTL_SECS: String(INVITE_SECS),
      SWITCHBOARD_RATE_LIMITS__ROOM_CREATE__LIMIT: '1000',
    };
    if (backend.redis) {
      if (redisError) throw redisError;
      db = await createTestDatabase();
      args = ['--redis-url', REDIS_URL, '--database-url', db.url];
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

  test(
    'INVALID_PAYLOAD for malformed payloads of every room event, and nothing changes',
    T,
    withStderr(srv, async () => {
      const a = randomId('inv');
      const sa = await dev(server, a, 'Ann');
      const room = await createGroup(sa);
      const long = 'x'.repeat(129);
      const cases = [
        ['createRoom', undefined],
        ['createRoom', { roomType: 'party' }],
        ['createRoom', { roomType: 'direct' }],
        ['createRoom', { roomType: 'group', targetUserId: 'x' }],
        ['createRoom', { roomType: 'group', roomName: long }],
        ['createRoom', { roomType: 'group', invitedUserIds: 'bob' }],
        ['createRoom', { roomType: 'direct', targetUserId: a }],
        ['joinRoom', {}],
        ['joinRoom', { roomId: 5 }],
        ['joinRoom', { roomId: long }],
        ['leaveRoom', 'room'],
        ['acceptCall', { roomId: '' }],
        ['rejectCall', null],
        ['endCall', { roomId: ['x'] }],
        ['sendMessage', { roomId: room.roomId }],
        ['sendMessage', { roomId: room.roomId, content: '   ' }],
        ['sendMessage', { roomId: room.roomId, content: 'x', replyTo: 7 }],
        ['reactToMessage', { roomId: room.roomId, messageId: 'm' }],
        ['reactToMessage', { roomId: room.roomId, messageId: 'm', emoji: 'x'.repeat(33) }],
        ['mediaStateChanged', { roomId: room.roomId, isMuted: 'yes', isVideoEnabled: false }],
      ];
      for (const [event, payload] of cases) await refused(sa, event, payload, 'INVALID_PAYLOAD');
      failed(await emitAck(sa, 'sendMessage', { roomId: room.roomId, content: 'x'.repeat(8 * 1024 + 1) }), 'TOO_LARGE', 'oversized content');
      const after = (await http(`${server.url}/api/rooms/${room.roomId}`)).json.room;
      assert.deepEqual(ids(after), [a]);
      assert.equal(after.messages.length, 0);
      await call(sa, 'endCall', { roomId: room.roomId });
    }),
  );

  test(
    'a public group room: list broadcast, join, media state, chat with replies and reactions, permissions, end',
    T,
    withStderr(srv, async () => {
      const [a, b, c] = [randomId('ga'), randomId('gb'), randomId('gc')];
      const sa = await dev(server, a, 'Ann');
      const sb = await dev(server, b, 'Ben');
      const sc = await dev(server, c, 'Cleo');
      const room = await createGroup(sa);
      checkRoom(room, 'createRoom');
      assert.equal(room.roomType, 'group');
      assert.equal(room.status, 'active');
      assert.equal(room.isPrivate, false);
      assert.equal(room.hostId, a);
      assert.equal(room.hostName, 'Ann');
      assert.deepEqual(ids(room), [a]);
      assert.equal(room.participants[0].isHost, true);
      assert.equal(room.participants[0].socketId, sa.id);

      // Everyone connected sees the new public room.
      const listed = await waitForEvent(sc, 'roomListUpdated', { predicate: listHas(room.roomId) });
      const summary = listed.rooms.find((r) => r.roomId === room.roomId);
      assert.deepEqual(summary, {
        roomId: room.roomId,
        roomName: 'Standup',
        roomType: 'group',
        hostId: a,
        hostName: 'Ann',
        participantCount: 1,
        isHostless: false,
        isPrivate: false,
        createdAt: room.createdAt,
      });
      const got = await call(sc, 'getRooms', {});
      assert.ok(got.rooms.some((r) => r.roomId === room.roomId));

      const joined = (await call(sb, 'joinRoom', { roomId: room.roomId })).room;
      checkRoom(joined, 'joinRoom');
      assert.deepEqual(ids(joined), [a, b].sort());
      const uj = await waitForEvent(sa, 'userJoined', { predicate: (d) => d.userId === b });
      assert.deepEqual(uj, { userId: b, userName: 'Ben', socketId: sb.id });
      await waitForEvent(sc, 'roomListUpdated', { predicate: listHas(room.roomId, (r) => r.participantCount === 2) });

      // Media state.
      ok(await emitAck(sb, 'mediaStateChanged', { roomId: room.roomId, isMuted: true, isVideoEnabled: true }), 'mediaStateChanged');
      const media = await waitForEvent(sa, 'participantMediaStateUpdated', { predicate: (d) => d.userId === b });
      assert.deepEqual(media, { userId: b, name: 'Ben', isMuted: true, isVideoEnabled: true });
      await refused(sc, 'mediaStateChanged', { roomId: room.roomId, isMuted: true, isVideoEnabled: false }, 'FORBIDDEN', 'media by a non-participant');

      // Chat: a message, a reply resolved to {messageId, userName, content}, reactions toggled.
      const m1 = (await call(sa, 'sendMessage', { roomId: room.roomId, content: 'hello room' })).message;
      assert.equal(m1.userId, a);
      assert.equal(m1.userName, 'Ann');
      assert.equal(m1.content, 'hello room');
      assert.deepEqual(m1.reactions, []);
      assert.equal(typeof m1.messageId, 'string');
      assert.equal(typeof m1.timestamp, 'number');
      const seen = await waitForEvent(sb, 'newMessage', { predicate: (d) => d.messageId === m1.messageId });
      assert.deepEqual(seen, m1);
      const m2 = (await call(sb, 'sendMessage', { roomId: room.roomId, content: 'hi Ann', replyTo: m1.messageId })).message;
      assert.deepEqual(m2.replyTo, { messageId: m1.messageId, userName: 'Ann', content: 'hello room' });
      assert.deepEqual((await waitForEvent(sa, 'newMessage', { predicate: (d) => d.messageId === m2.messageId })).replyTo, m2.replyTo);
      await refused(sb, 'sendMessage', { roomId: room.roomId, content: 'x', replyTo: 'nope' }, 'NOT_FOUND');
      await refused(sc, 'sendMessage', { roomId: room.roomId, content: 'let me in' }, 'FORBIDDEN', 'chat by a non-participant');

      const r1 = (await call(sb, 'reactToMessage', { roomId: room.roomId, messageId: m1.messageId, emoji: '👍' })).message;
      assert.deepEqual(r1.reactions, [{ emoji: '👍', userIds: [b], count: 1 }]);
      const upd = await waitForEvent(sa, 'messageReactionUpdated', { predicate: (d) => d.messageId === m1.messageId });
      assert.deepEqual(upd, { messageId: m1.messageId, reactions: [{ emoji: '👍', userIds: [b], count: 1 }] });
      await call(sa, 'reactToMessage', { roomId: room.roomId, messageId: m1.messageId, emoji: '👍' });
      const r3 = (await call(sb, 'reactToMessage', { roomId: room.roomId, messageId: m1.messageId, emoji: '👍' })).message;
      assert.deepEqual(r3.reactions, [{ emoji: '👍', userIds: [a], count: 1 }], 'toggled off');
      await refused(sc, 'reactToMessage', { roomId: room.roomId, messageId: m1.messageId, emoji: '👍' }, 'FORBIDDEN');

      // Only the host ends a group room; the second endCall loses.
      await refused(sb, 'endCall', { roomId: room.roomId }, 'FORBIDDEN', 'endCall by a participant');
      await call(sa, 'endCall', { roomId: room.roomId });
      for (const s of [sa, sb]) {
        const ended = await waitForEvent(s, 'callEnded', { predicate: inRoom(room.roomId) });
        assert.equal(ended.endedBy, a);
      }
      await refused(sa, 'endCall', { roomId: room.roomId }, 'CONFLICT', 'double endCall');
      await waitForEvent(sc, 'roomListUpdated', { predicate: listLacks(room.roomId) });
      const after = (await http(`${server.url}/api/rooms/${room.roomId}`)).json.room;
      assert.equal(after.status, 'ended');
      assert.equal(typeof after.endedAt, 'number');
      const all = (await http(`${server.url}/api/rooms`)).json.rooms;
      assert.ok(!all.some((r) => r.roomId === room.roomId));
      assert.equal((await http(`${server.url}/api/rooms/no-such-room`)).status, 404);
      // Ended: no more chat, and a user is free to join another room.
      await refused(sb, 'sendMessage', { roomId: room.roomId, content: 'late' }, 'CONFLICT');
      const next = await createGroup(sb);
      await call(sb, 'leaveRoom', { roomId: next.roomId });
    }),
  );

  test(
    'a private room: invitations (incomingCall), accept (callAccepted), reject (callRejected), expiry (invitationExpired), privacy',
    T,
    withStderr(srv, async () => {
      const [a, b, c, d, z] = ['pa', 'pb', 'pc', 'pd', 'pz'].map((p) => randomId(p));
      const sa = await dev(server, a, 'Ann');
      const sb = await dev(server, b, 'Ben');
      const sc = await dev(server, c, 'Cleo');
      const sd = await dev(server, d, 'Dee');
      const sz = await dev(server, z, 'Zed');
      const room = await createGroup(sa, { roomName: 'Secret', invitedUserIds: [b, c, d] });
      assert.equal(room.isPrivate, true);
      assert.deepEqual([...room.invitedUserIds].sort(), [a, b, c, d].sort());
      for (const s of [sb, sc, sd]) {
        const inv = await waitForEvent(s, 'incomingCall', { predicate: inRoom(room.roomId) });
        assert.deepEqual(inv, { roomId: room.roomId, roomType: 'group', fromUserId: a, fromUserName: 'Ann' });
        await waitForEvent(s, 'roomListUpdated', { predicate: listHas(room.roomId) });
      }
      // Outsiders neither see nor enter it.
      assert.ok(!(await call(sz, 'getRooms', {})).rooms.some((r) => r.roomId === room.roomId));
      await refused(sz, 'joinRoom', { roomId: room.roomId }, 'FORBIDDEN');
      await refused(sz, 'acceptCall', { roomId: room.roomId }, 'FORBIDDEN');
      await expectNone(sz, 'roomListUpdated', { predicate: listHas(room.roomId), ms: 0 });

      const accepted = (await call(sb, 'acceptCall', { roomId: room.roomId })).room;
      assert.deepEqual(ids(accepted), [a, b].sort());
      assert.deepEqual(await waitForEvent(sa, 'callAccepted', { predicate: inRoom(room.roomId) }), { userId: b, roomId: room.roomId });
      await waitForEvent(sa, 'userJoined', { predicate: (x) => x.userId === b });
      await refused(sb, 'acceptCall', { roomId: room.roomId }, 'CONFLICT', 'accepting twice');

      await call(sc, 'rejectCall', { roomId: room.roomId });
      for (const s of [sa, sb]) {
        assert.deepEqual(await waitForEvent(s, 'callRejected', { predicate: inRoom(room.roomId) }), { userId: c, userName: 'Cleo', roomId: room.roomId });
      }
      await refused(sc, 'rejectCall', { roomId: room.roomId }, 'FORBIDDEN', 'rejecting twice');

      // Dee never answers.
      const expired = await waitForEvent(sd, 'invitationExpired', { predicate: inRoom(room.roomId), timeoutMs: (INVITE_SECS + 3) * 1000 });
      assert.deepEqual(expired, { roomId: room.roomId });
      await refused(sd, 'acceptCall', { roomId: room.roomId }, 'FORBIDDEN', 'accepting an expired invitation');
      assert.equal(eventsOf(sb, 'invitationExpired', inRoom(room.roomId)).length, 0, 'no expiry for the one who accepted');
      // An invitee may still join by joinRoom.
      await call(sd, 'joinRoom', { roomId: room.roomId });
      await call(sa, 'endCall', { roomId: room.roomId });
      await waitForEvent(sd, 'callEnded', { predicate: inRoom(room.roomId) });
    }),
  );

  test(
    'a direct room: the target accepts, either side leaving ends it; declining ends it too; users in a room are BUSY',
    T,
    withStderr(srv, async () => {
      const [a, b, c] = [randomId('da'), randomId('db'), randomId('dc')];
      const sa = await dev(server, a, 'Ann');
      const sb = await dev(server, b, 'Ben');
      const sc = await dev(server, c, 'Cleo');
      const room = (await call(sa, 'createRoom', { roomType: 'direct', targetUserId: b })).room;
      assert.equal(room.roomType, 'direct');
      assert.equal(room.status, 'pending');
      assert.equal(room.isPrivate, true);
      await waitForEvent(sb, 'incomingCall', { predicate: inRoom(room.roomId) });
      await refused(sc, 'joinRoom', { roomId: room.roomId }, 'FORBIDDEN');
      const accepted = (await call(sb, 'acceptCall', { roomId: room.roomId })).room;
      assert.equal(accepted.status, 'active');
      assert.deepEqual(ids(accepted), [a, b].sort());
      await waitForEvent(sa, 'callAccepted', { predicate: inRoom(room.roomId) });

      // Both are busy now.
      const other = await createGroup(sc);
      await refused(sb, 'joinRoom', { roomId: other.roomId }, 'BUSY');
      await refused(sa, 'createRoom', { roomType: 'group' }, 'BUSY');

      await call(sb, 'leaveRoom', { roomId: room.roomId });
      assert.deepEqual(await waitForEvent(sa, 'userLeft', { predicate: inRoom(room.roomId) }), { userId: b, roomId: room.roomId });
      const ended = await waitForEvent(sa, 'callEnded', { predicate: inRoom(room.roomId) });
      assert.equal(ended.endedBy, b);
      await refused(sa, 'leaveRoom', { roomId: room.roomId }, 'CONFLICT');
      // Free again.
      await call(sb, 'joinRoom', { roomId: other.roomId });
      await call(sb, 'leaveRoom', { roomId: other.roomId });

      const declined = (await call(sa, 'createRoom', { roomType: 'direct', targetUserId: b })).room;
      await waitForEvent(sb, 'incomingCall', { predicate: inRoom(declined.roomId) });
      await call(sb, 'rejectCall', { roomId: declined.roomId });
      await waitForEvent(sa, 'callRejected', { predicate: inRoom(declined.roomId) });
      await waitForEvent(sa, 'callEnded', { predicate: inRoom(declined.roomId) });
      await refused(sa, 'createRoom', { roomType: 'direct', targetUserId: randomId('nobody') }, 'NOT_FOUND');
      await call(sc, 'endCall', { roomId: other.roomId });
    }),
  );

  test(
    'the host drops: back within the grace period (hostReconnected), or gone past it (roomHostless) and anyone may end',
    T,
    withStderr(srv, async () => {
      const [a, b] = [randomId('ha'), randomId('hb')];
      let sa = await dev(server, a, 'Ann');
      const sb = await dev(server, b, 'Ben');
      const room = await createGroup(sa);
      await call(sb, 'joinRoom', { roomId: room.roomId });

      sa.close();
      await sleep(500);
      sa = await dev(server, a, 'Ann');
      const back = (await call(sa, 'joinRoom', { roomId: room.roomId })).room;
      assert.equal(back.participants.find((p) => p.userId === a).socketId, sa.id);
      assert.deepEqual(await waitForEvent(sb, 'hostReconnected', { predicate: inRoom(room.roomId) }), { roomId: room.roomId, userId: a });
      await expectNone(sb, 'roomHostless', { predicate: inRoom(room.roomId), ms: (GRACE_SECS + 1) * 1000 });
      assert.equal((await http(`${server.url}/api/rooms/${room.roomId}`)).json.room.isHostless, false);

      // Gone for good this time.
      sa.close();
      const hostless = await waitForEvent(sb, 'roomHostless', { predicate: inRoom(room.roomId), timeoutMs: (GRACE_SECS + 3) * 1000 });
      assert.equal(typeof hostless.message, 'string');
      const after = (await http(`${server.url}/api/rooms/${room.roomId}`)).json.room;
      assert.equal(after.isHostless, true);
      assert.equal(after.hostDisconnectedAt, undefined);
      // The host's reconnect window runs out and the host leaves.
      assert.deepEqual(await waitForEvent(sb, 'userLeft', { predicate: (d) => d.userId === a, timeoutMs: (RECONNECT_SECS + 3) * 1000 }), { userId: a, roomId: room.roomId });
      await call(sb, 'endCall', { roomId: room.roomId });
      await waitForEvent(sb, 'callEnded', { predicate: inRoom(room.roomId) });
    }),
  );

  test(
    'a participant dropping from a direct room stays reconnecting for the window, then the call ends',
    T,
    withStderr(srv, async () => {
      const [a, b] = [randomId('ra'), randomId('rb')];
      const sa = await dev(server, a, 'Ann');
      let sb = await dev(server, b, 'Ben');
      const room = (await call(sa, 'createRoom', { roomType: 'direct', targetUserId: b })).room;
      await call(sb, 'acceptCall', { roomId: room.roomId });
      // A drop and a return within the window: nothing ends.
      sb.close();
      await sleep(1000);
      sb = await dev(server, b, 'Ben');
      await call(sb, 'joinRoom', { roomId: room.roomId });
      await expectNone(sa, 'callEnded', { predicate: inRoom(room.roomId), ms: (RECONNECT_SECS + 1) * 1000 });
      // A drop for good: the other side hears userLeft and callEnded after the window.
      sb.close();
      await sleep((RECONNECT_SECS - 1) * 1000);
      assert.equal(eventsOf(sa, 'callEnded', inRoom(room.roomId)).length, 0, 'still within the window');
      const ended = await waitForEvent(sa, 'callEnded', { predicate: inRoom(room.roomId), timeoutMs: 5000 });
      assert.equal(ended.endedBy, 'server');
      await eventually(async () => {
        assert.equal((await http(`${server.url}/api/rooms/${room.roomId}`)).json.room.status, 'ended');
      });
    }),
  );

  if (backend.redis) {
    test(
      'a room survives a restart in Redis mode: listed, joinable again, chat history kept',
      T,
      withStderr(srv, async () => {
        const [a, b, c] = [randomId('sa'), randomId('sb'), randomId('sc')];
        let sa = await dev(server, a, 'Ann');
        let sb = await dev(server, b, 'Ben');
        let sc = await dev(server, c, 'Cleo');
        const room = await createGroup(sa, { roomName: 'Durable' });
        await call(sb, 'joinRoom', { roomId: room.roomId });
        await call(sc, 'joinRoom', { roomId: room.roomId });
        const m = (await call(sa, 'sendMessage', { roomId: room.roomId, content: 'before the restart' })).message;
        closeAllSockets();
        await server.stop();
        server = await startServer({ dev: true, env, args });
        const listed = (await http(`${server.url}/api/rooms`)).json.rooms.find((r) => r.roomId === room.roomId);
        assert.ok(listed, 'the room is still there');
        assert.deepEqual(ids(listed), [a, b, c].sort());
        sa = await dev(server, a, 'Ann');
        sb = await dev(server, b, 'Ben');
        // Cleo's device comes back but does not join again: room events still reach it.
        sc = await dev(server, c, 'Cleo');
        const back = (await call(sa, 'joinRoom', { roomId: room.roomId })).room;
        assert.deepEqual(back.messages.map((x) => x.messageId), [m.messageId]);
        await call(sb, 'joinRoom', { roomId: room.roomId });
        await call(sb, 'sendMessage', { roomId: room.roomId, content: 'after the restart' });
        await waitForEvent(sa, 'newMessage', { predicate: (d) => d.content === 'after the restart' });
        await waitForEvent(sc, 'newMessage', { predicate: (d) => d.content === 'after the restart' });
        await call(sa, 'endCall', { roomId: room.roomId });
        await waitForEvent(sb, 'callEnded', { predicate: inRoom(room.roomId) });
        await waitForEvent(sc, 'callEnded', { predicate: inRoom(room.roomId) });
      }),
    );
  }
});
