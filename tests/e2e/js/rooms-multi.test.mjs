// Rooms (protocol §6) across two instances sharing Redis (same key prefix) and one
// PostgreSQL database: a host on A and participants on B see each other's joins, leaves,
// chat, reactions and media state; the room list reaches sockets of both instances; two
// leaves at once from both instances lose nobody; a double endCall from both ends the room
// once; the host grace timer fires once (roomHostless exactly once) wherever it is claimed;
// a host lost with a SIGKILLed instance is found by the presence reaper of the survivor.
// Skipped with a message when Redis or PostgreSQL is unreachable, unless
// SWITCHBOARD_REQUIRE_BACKENDS=1, when it fails instead.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import {
  call,
  describeTwoInstances,
  dev,
  emitAck,
  eventsOf,
  http,
  ok,
  randomId,
  sleep,
  startServer,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

const GRACE_SECS = 2;
const PRESENCE_TTL_SECS = 3;
const T = { timeout: 90_000 };

const inRoom = (roomId) => (d) => d?.roomId === roomId;
const listHas = (roomId, pred = () => true) => (d) => (d?.rooms ?? []).some((r) => r.roomId === roomId && pred(r));
const ids = (room) => room.participants.map((p) => p.userId).sort();

const ENV = {
  SWITCHBOARD_TIMERS__HOST_GRACE_PERIOD_SECS: String(GRACE_SECS),
  SWITCHBOARD_TIMERS__RECONNECT_WINDOW_SECS: '30',
  SWITCHBOARD_RATE_LIMITS__ROOM_CREATE__LIMIT: '1000',
  // A killed instance's users lapse after this (the reaper then treats them as gone).
  SWITCHBOARD_TIMERS__PRESENCE_TTL_SECS: String(PRESENCE_TTL_SECS),
};

await describeTwoInstances(`rooms across two instances (Redis + PostgreSQL, grace ${GRACE_SECS} s)`, { name: 'rooms-multi', env: ENV }, (pair) => {
  let a;
  let b;
  before(() => ({ a, b } = pair));
  const srv = () => [a, b];

  test(
    'a host on A and participants on B: list, joins, chat, reactions, media, leaves at once, double endCall',
    T,
    withStderr(srv, async () => {
      const [h, p, q, w] = [randomId('mh'), randomId('mp'), randomId('mq'), randomId('mw')];
      const sh = await dev(a, h, 'Hana');
      const sp = await dev(b, p, 'Pia');
      const sq = await dev(b, q, 'Quin');
      const sw = await dev(b, w, 'Watcher');
      const room = (await call(sh, 'createRoom', { roomType: 'group', roomName: 'Across' })).room;
      await waitForEvent(sw, 'roomListUpdated', { predicate: listHas(room.roomId) });
      assert.ok((await call(sw, 'getRooms', {})).rooms.some((r) => r.roomId === room.roomId), 'listed on B');

      await call(sp, 'joinRoom', { roomId: room.roomId });
      await call(sq, 'joinRoom', { roomId: room.roomId });
      await waitForEvent(sh, 'userJoined', { predicate: (d) => d.userId === p });
      await waitForEvent(sh, 'userJoined', { predicate: (d) => d.userId === q });
      await waitForEvent(sw, 'roomListUpdated', { predicate: listHas(room.roomId, (r) => r.participantCount === 3) });

      const m = (await call(sh, 'sendMessage', { roomId: room.roomId, content: 'from A' })).message;
      assert.equal((await waitForEvent(sp, 'newMessage', { predicate: (d) => d.messageId === m.messageId })).content, 'from A');
      await call(sp, 'reactToMessage', { roomId: room.roomId, messageId: m.messageId, emoji: '🎉' });
      const upd = await waitForEvent(sh, 'messageReactionUpdated', { predicate: (d) => d.messageId === m.messageId });
      assert.deepEqual(upd.reactions, [{ emoji: '🎉', userIds: [p], count: 1 }]);
      await call(sq, 'mediaStateChanged', { roomId: room.roomId, isMuted: true, isVideoEnabled: false });
      assert.equal((await waitForEvent(sh, 'participantMediaStateUpdated', { predicate: (d) => d.userId === q })).isMuted, true);

      // Two leaves at once, one handled by each instance (q joins A with a second device).
      const sqA = await dev(a, q, 'Quin', 'd2');
      await call(sqA, 'joinRoom', { roomId: room.roomId });
      const [l1, l2] = await Promise.all([
        emitAck(sp, 'leaveRoom', { roomId: room.roomId }, 10_000),
        emitAck(sqA, 'leaveRoom', { roomId: room.roomId }, 10_000),
      ]);
      ok(l1, 'leave on B');
      ok(l2, 'leave on A');
      const now = (await http(`${b.url}/api/rooms/${room.roomId}`)).json.room;
      assert.deepEqual(ids(now), [h]);
      await waitForEvent(sh, 'userLeft', { predicate: (d) => d.userId === p });
      await waitForEvent(sh, 'userLeft', { predicate: (d) => d.userId === q });

      // Pia rejoins; the host ends it from A and, at the same time, from a device on B.
      await call(sp, 'joinRoom', { roomId: room.roomId });
      const shB = await dev(b, h, 'Hana', 'd2');
      await call(shB, 'joinRoom', { roomId: room.roomId });
      const [e1, e2] = await Promise.all([
        emitAck(sh, 'endCall', { roomId: room.roomId }, 10_000),
        emitAck(shB, 'endCall', { roomId: room.roomId }, 10_000),
      ]);
      const outcomes = [e1, e2].map((x) => (x.success ? 'ok' : x.code)).sort();
      assert.deepEqual(outcomes, ['CONFLICT', 'ok'], JSON.stringify([e1, e2]));
      await waitForEvent(sp, 'callEnded', { predicate: inRoom(room.roomId) });
      await sleep(500);
      assert.equal(eventsOf(sp, 'callEnded', inRoom(room.roomId)).length, 1, 'callEnded once');
    }),
  );

  test(
    'the host on A drops; participants on B get roomHostless once, then end the room',
    T,
    withStderr(srv, async () => {
      const [h, p] = [randomId('gh'), randomId('gp')];
      const sh = await dev(a, h, 'Hana');
      const sp = await dev(b, p, 'Pia');
      const room = (await call(sh, 'createRoom', { roomType: 'group' })).room;
      await call(sp, 'joinRoom', { roomId: room.roomId });
      sh.close();
      await waitForEvent(sp, 'roomHostless', { predicate: inRoom(room.roomId), timeoutMs: (GRACE_SECS + 4) * 1000 });
      await sleep(1000);
      assert.equal(eventsOf(sp, 'roomHostless', inRoom(room.roomId)).length, 1, 'the grace timer fired once');
      await call(sp, 'endCall', { roomId: room.roomId });
      const ended = await waitForEvent(sp, 'callEnded', { predicate: inRoom(room.roomId) });
      assert.equal(ended.endedBy, p);
    }),
  );

  test(
    'the host dies with instance A (SIGKILL): the reaper on B finds the host gone, the room turns hostless, and A comes back',
    T,
    withStderr(srv, async () => {
      const [h, p] = [randomId('kh'), randomId('kp')];
      const sh = await dev(a, h, 'Hana');
      const sp = await dev(b, p, 'Pia');
      const room = (await call(sh, 'createRoom', { roomType: 'group' })).room;
      await call(sp, 'joinRoom', { roomId: room.roomId });
      await a.stop({ signal: 'SIGKILL' });
      // No disconnect ran: the host's presence lapses after the TTL, B's reaper reports the
      // host gone, the grace period runs, then the room turns hostless.
      const limit = (PRESENCE_TTL_SECS + GRACE_SECS + 6) * 1000;
      await waitForEvent(sp, 'roomHostless', { predicate: inRoom(room.roomId), timeoutMs: limit });
      a = pair.a = await startServer({ dev: true, env: pair.env, args: pair.args });
      const listed = (await http(`${a.url}/api/rooms/${room.roomId}`)).json.room;
      assert.equal(listed.isHostless, true);
      await call(sp, 'endCall', { roomId: room.roomId });
      await waitForEvent(sp, 'callEnded', { predicate: inRoom(room.roomId) });
    }),
  );
});
