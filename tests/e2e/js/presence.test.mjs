// Presence (protocol §4) on one instance (memory store, SQLite): the client events and
// their acks, friend_* notifications, visibility (public and friends-only), devices,
// onlineUsersUpdated and its coalescing, session revocation and /api/me/sessions (§10).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  closeAllSockets,
  connect,
  dev,
  emitAck,
  eventsOf,
  eventually,
  expectNone,
  http,
  mintToken,
  randomId,
  sleep,
  startServer,
  waitForDisconnect,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

// ---------------------------------------------------------------------------
// Local helpers.

const FRIEND_EVENTS = ['friend_online', 'friend_offline', 'friend_status', 'friend_in_call', 'friend_out_of_call'];

/** Token handshake, resolved once `session` arrived. */
async function withToken(server, token) {
  const socket = await connect(server.url, { token });
  await waitForEvent(socket, 'session');
  return socket;
}

/** PUT /api/users/{userId}/friends and check the answer. */
async function setFriends(server, userId, friendIds, headers = {}) {
  const r = await http(`${server.url}/api/users/${encodeURIComponent(userId)}/friends`, {
    method: 'PUT',
    headers,
    body: { friendIds },
  });
  assert.equal(r.status, 200, `PUT friends of ${userId}: ${r.text}`);
  assert.deepEqual(r.json, { userId, friendIds: [...friendIds].sort() }, 'PUT friends answer');
}

const about = (userId) => (d) => d?.userId === userId;

function assertInvalid(ack, what) {
  assert.equal(ack?.success, false, `${what}: expected a failure, got ${JSON.stringify(ack)}`);
  assert.equal(ack.code, 'INVALID_PAYLOAD', `${what}: ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error, 'string', `${what}: error message`);
}

function assertTimestamp(ts, t0, what) {
  assert.equal(typeof ts, 'number', `${what}: timestamp is a number (${ts})`);
  assert.ok(ts >= t0 - 2000 && ts <= Date.now() + 2000, `${what}: timestamp ${ts} is now-ish (ms since the epoch)`);
}

/** Sorts {userId,...} entries by userId, so comparisons do not depend on the server's order. */
const byId = (users) => [...users].sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
const ids = (users) => users.map((u) => u.userId).sort();
const sameIds = (users, expected) => JSON.stringify(ids(users ?? [])) === JSON.stringify([...expected].sort());

async function presenceOf(socket, userIds) {
  const ack = await emitAck(socket, 'presence:get', { userIds });
  assert.equal(ack?.success, true, `presence:get ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.presence, 'object');
  return ack.presence;
}

async function onlineUsers(socket) {
  const ack = await emitAck(socket, 'getOnlineUsers', {});
  assert.equal(ack?.success, true, `getOnlineUsers ${JSON.stringify(ack)}`);
  assert.ok(Array.isArray(ack.users), 'users is an array');
  return ack.users;
}

/** Waits for the next onlineUsersUpdated whose list holds exactly these users. */
function listWith(socket, expectedIds, timeoutMs = 5000) {
  return waitForEvent(socket, 'onlineUsersUpdated', {
    timeoutMs,
    predicate: (d) => sameIds(d?.users, expectedIds),
  });
}

// ---------------------------------------------------------------------------

describe('presence events (dev mode, public presence)', () => {
  let server;
  before(async () => {
    server = await startServer({ dev: true });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;

  test(
    'an event sent right after connect (before `session`) is answered',
    withStderr(srv, async () => {
      // §3: every event with an ack answers exactly once. A client may emit as soon as
      // `connect` fired; it does not have to wait for `session`.
      const pending = [];
      for (let i = 0; i < 15; i++) {
        const userId = randomId(`early${i}`);
        const s = await connect(server.url, { userId, name: 'Early' });
        pending.push(
          emitAck(s, 'getOnlineUsers', {}, 4000).then(
            (ack) => ({ i, ok: ack?.success === true && ack.users.some((u) => u.userId === userId) }),
            () => ({ i, ok: false }),
          ),
        );
      }
      const results = await Promise.all(pending);
      const lost = results.filter((r) => !r.ok).map((r) => r.i);
      assert.deepEqual(lost, [], `getOnlineUsers sent right after connect got no (or a wrong) ack on sockets #${lost.join(', #')} of 15`);
      closeAllSockets();
    }),
  );

  test(
    'presence:status answers the effective status; bad values are INVALID_PAYLOAD and change nothing',
    withStderr(srv, async () => {
      const u = randomId('st');
      const s = await dev(server, u, 'Status User', 'd1');
      for (const status of ['away', 'busy', 'online', 'busy']) {
        assert.deepEqual(await emitAck(s, 'presence:status', { status }), { success: true, status }, `set ${status}`);
      }
      for (const [what, payload] of [
        ['an unknown value', { status: 'sleeping' }],
        ['in_call (server-managed)', { status: 'in_call' }],
        ['offline (server-managed)', { status: 'offline' }],
        ['upper case', { status: 'AWAY' }],
        ['a number', { status: 1 }],
        ['null', { status: null }],
        ['a missing field', {}],
        ['no payload', undefined],
        ['a string payload', 'away'],
        ['an array payload', ['away']],
      ]) {
        assertInvalid(await emitAck(s, 'presence:status', payload), `presence:status with ${what}`);
      }
      const p = await presenceOf(s, [u]);
      assert.equal(p[u]?.status, 'busy', `a refused presence:status changes nothing: ${JSON.stringify(p)}`);
      // Extra fields are ignored.
      assert.deepEqual(await emitAck(s, 'presence:status', { status: 'away', extra: 1 }), { success: true, status: 'away' });
      s.close();
    }),
  );

  test(
    'presence:get returns {status, lastSeen, devices}; bad userIds are INVALID_PAYLOAD',
    withStderr(srv, async () => {
      const t0 = Date.now();
      const u = randomId('pg');
      const ghost = randomId('ghost');
      const s = await dev(server, u, 'Getter', 'd1');
      const p = await presenceOf(s, [u, ghost, u]);
      assert.deepEqual(Object.keys(p).sort(), [u, ghost].sort(), `one entry per asked user: ${JSON.stringify(p)}`);
      assert.equal(p[u].status, 'online');
      assert.equal(p[u].devices, 1);
      assertTimestamp(p[u].lastSeen, t0, 'lastSeen of a connected user');
      assert.equal(p[ghost].status, 'offline', 'a never-seen user is offline');
      assert.equal(p[ghost].devices, 0);
      assert.ok(p[ghost].lastSeen === undefined || p[ghost].lastSeen === null, 'never seen: no lastSeen');

      assert.deepEqual(await emitAck(s, 'presence:get', { userIds: [] }), { success: true, presence: {} });

      const max = Array.from({ length: 500 }, (_, i) => `bulk-${i}`);
      const ok = await emitAck(s, 'presence:get', { userIds: max });
      assert.equal(ok?.success, true, `500 ids are allowed: ${JSON.stringify(ok).slice(0, 200)}`);
      assert.equal(Object.keys(ok.presence).length, 500);

      for (const [what, payload] of [
        ['501 ids', { userIds: [...max, 'bulk-500'] }],
        ['userIds a string', { userIds: u }],
        ['userIds an object', { userIds: { 0: u } }],
        ['userIds null', { userIds: null }],
        ['userIds of numbers', { userIds: [1, 2] }],
        ['an empty id', { userIds: [''] }],
        ['an id over 128 chars', { userIds: ['x'.repeat(129)] }],
        ['no userIds', {}],
        ['no payload', undefined],
        ['a string payload', 'x'],
      ]) {
        assertInvalid(await emitAck(s, 'presence:get', payload), `presence:get with ${what}`);
      }
      s.close();
    }),
  );

  test(
    'getOnlineUsers lists the caller; getFriends lists friends with status, offline ones included',
    withStderr(srv, async () => {
      const me = randomId('me');
      const f1 = randomId('f1');
      const f2 = randomId('f2');
      const f3 = randomId('f3');
      const s = await dev(server, me, 'Me Myself', 'd1');

      const users = await onlineUsers(s);
      assert.deepEqual(
        users.find((x) => x.userId === me),
        { userId: me, name: 'Me Myself', status: 'online' },
        `the caller is in its own list: ${JSON.stringify(users)}`,
      );
      for (const x of users) assert.deepEqual(Object.keys(x).sort(), ['name', 'status', 'userId']);
      // Also with no payload at all (only an ack callback).
      const bare = await emitAck(s, 'getOnlineUsers', undefined);
      assert.equal(bare?.success, true, JSON.stringify(bare));
      assertInvalid(await emitAck(s, 'getOnlineUsers', 'x'), 'getOnlineUsers with a string payload');

      assert.deepEqual(await emitAck(s, 'getFriends', {}), { success: true, friends: [] }, 'no friends yet');
      assertInvalid(await emitAck(s, 'getFriends', 42), 'getFriends with a number payload');

      // f1 online and away; f2 was connected and left; f3 never connected.
      const s1 = await dev(server, f1, 'Friend One', 'd1');
      assert.equal((await emitAck(s1, 'presence:status', { status: 'away' })).success, true);
      const s2 = await dev(server, f2, 'Friend Two', 'd1');
      s2.close();
      await setFriends(server, me, [f1, f2, f3]);

      await eventually(async () => {
        const ack = await emitAck(s, 'getFriends', undefined);
        assert.equal(ack?.success, true, JSON.stringify(ack));
        const got = byId(ack.friends);
        assert.equal(got.length, 3, JSON.stringify(got));
        const [g1, g2, g3] = [f1, f2, f3].map((id) => got.find((x) => x.userId === id));
        assert.deepEqual(g1, { userId: f1, name: 'Friend One', status: 'away' });
        assert.deepEqual(g2, { userId: f2, name: 'Friend Two', status: 'offline' });
        assert.equal(g3?.status, 'offline', 'a friend who never connected is offline');
        assert.equal(typeof g3.name, 'string');
      });
      // Friendship is mutual.
      const back = await emitAck(s1, 'getFriends', {});
      assert.deepEqual(back.friends, [{ userId: me, name: 'Me Myself', status: 'online' }]);
      const r = await http(`${server.url}/api/users/${f1}/friends`);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, { userId: f1, friendIds: [me] });
      s.close();
      s1.close();
    }),
  );

  test(
    'friends hear friend_online, friend_status (only on changes) and friend_offline; non-friends hear nothing',
    withStderr(srv, async () => {
      const a = randomId('alice');
      const b = randomId('bob');
      const c = randomId('carol');
      await setFriends(server, a, [b]);
      const sb = await dev(server, b, 'Bob', 'd1');
      const sc = await dev(server, c, 'Carol', 'd1');

      const t0 = Date.now();
      const sa = await dev(server, a, 'Alice', 'd1');
      const online = await waitForEvent(sb, 'friend_online', { predicate: about(a) });
      assert.deepEqual(Object.keys(online).sort(), ['name', 'timestamp', 'userId']);
      assert.equal(online.name, 'Alice');
      assertTimestamp(online.timestamp, t0, 'friend_online');

      for (const status of ['away', 'busy', 'online']) {
        const mark = sb.received.length;
        assert.deepEqual(await emitAck(sa, 'presence:status', { status }), { success: true, status });
        const ev = await waitForEvent(sb, 'friend_status', { predicate: about(a) });
        assert.deepEqual(Object.keys(ev).sort(), ['status', 'timestamp', 'userId']);
        assert.equal(ev.status, status);
        assertTimestamp(ev.timestamp, t0, 'friend_status');
        // Setting the same status again is not a change.
        assert.deepEqual(await emitAck(sa, 'presence:status', { status }), { success: true, status });
        await sleep(500);
        assert.equal(
          eventsOf(sb, 'friend_status', about(a), mark).length,
          1,
          `setting ${status} twice gives one friend_status`,
        );
      }

      assert.equal(eventsOf(sb, 'friend_online', about(a)).length, 1, 'one friend_online');
      assert.equal(eventsOf(sb, 'friend_status', about(a)).length, 3, 'one friend_status per change');
      await expectNone(sc, FRIEND_EVENTS, { ms: 0, why: 'for a non-friend (public mode shows lists, not friend events)' });

      sa.close();
      const off = await waitForEvent(sb, 'friend_offline', { predicate: about(a) });
      assert.deepEqual(Object.keys(off).sort(), ['timestamp', 'userId']);
      assertTimestamp(off.timestamp, t0, 'friend_offline');
      await expectNone(sc, FRIEND_EVENTS, { ms: 500, why: 'for a non-friend (public mode shows lists, not friend events)' });
      assert.equal(eventsOf(sb, 'friend_offline', about(a)).length, 1, 'one friend_offline');
      sb.close();
      sc.close();
    }),
  );

  test(
    'two devices: the second changes nothing for friends, closing one keeps the user online, the last one goes offline',
    withStderr(srv, async () => {
      const a = randomId('md');
      const b = randomId('mdf');
      await setFriends(server, b, [a]);
      const sb = await dev(server, b, 'Friend', 'd1');
      const phone = await dev(server, a, 'Multi', 'phone');
      await waitForEvent(sb, 'friend_online', { predicate: about(a) });
      const laptop = await dev(server, a, 'Multi', 'laptop', { transports: ['polling'] });
      await sleep(600);
      assert.equal(eventsOf(sb, 'friend_online', about(a)).length, 1, 'no friend_online for the second device');

      let p = await presenceOf(sb, [a]);
      assert.equal(p[a]?.status, 'online');
      assert.equal(p[a].devices, 2, `two devices: ${JSON.stringify(p)}`);

      phone.close();
      await eventually(async () => {
        p = await presenceOf(sb, [a]);
        assert.deepEqual({ status: p[a]?.status, devices: p[a]?.devices }, { status: 'online', devices: 1 });
      });
      await expectNone(sb, 'friend_offline', { ms: 700, predicate: about(a), why: 'while another device is connected' });
      assert.deepEqual(
        (await onlineUsers(sb)).find((x) => x.userId === a),
        { userId: a, name: 'Multi', status: 'online' },
        'still in the online list',
      );

      const t0 = Date.now();
      laptop.close();
      const off = await waitForEvent(sb, 'friend_offline', { predicate: about(a) });
      assertTimestamp(off.timestamp, t0, 'friend_offline');
      p = await presenceOf(sb, [a]);
      assert.equal(p[a]?.status, 'offline', JSON.stringify(p));
      assert.equal(p[a].devices, 0);
      assert.equal(typeof p[a].lastSeen, 'number', 'lastSeen stays after going offline');
      assert.ok(!(await onlineUsers(sb)).some((x) => x.userId === a), 'gone from the online list');
      await sleep(300);
      assert.equal(eventsOf(sb, 'friend_offline', about(a)).length, 1, 'exactly one friend_offline');
      sb.close();
    }),
  );

  test(
    'the status is per user: kept for a new device and set from any device',
    withStderr(srv, async () => {
      const a = randomId('ks');
      const b = randomId('ksf');
      await setFriends(server, a, [b]);
      const sb = await dev(server, b, 'Watcher', 'd1');
      const phone = await dev(server, a, 'Keeper', 'phone');
      await waitForEvent(sb, 'friend_online', { predicate: about(a) });
      assert.deepEqual(await emitAck(phone, 'presence:status', { status: 'busy' }), { success: true, status: 'busy' });
      await waitForEvent(sb, 'friend_status', { predicate: (d) => d?.userId === a && d.status === 'busy' });

      const mark = sb.received.length;
      const laptop = await dev(server, a, 'Keeper', 'laptop');
      const self = await presenceOf(laptop, [a]);
      assert.equal(self[a]?.status, 'busy', `the new device sees the user's status: ${JSON.stringify(self)}`);
      assert.equal(self[a].devices, 2);
      assert.equal((await onlineUsers(sb)).find((x) => x.userId === a)?.status, 'busy');
      // Setting the same status from the other device is not a change either.
      assert.deepEqual(await emitAck(laptop, 'presence:status', { status: 'busy' }), { success: true, status: 'busy' });
      await expectNone(sb, ['friend_online', 'friend_status'], { ms: 600, since: mark, predicate: about(a), why: 'for a second device' });

      assert.deepEqual(await emitAck(laptop, 'presence:status', { status: 'away' }), { success: true, status: 'away' });
      await waitForEvent(sb, 'friend_status', { predicate: (d) => d?.userId === a && d.status === 'away' });
      assert.equal((await presenceOf(phone, [a]))[a]?.status, 'away', 'the phone sees the status set from the laptop');

      laptop.close();
      await eventually(async () => assert.equal((await presenceOf(sb, [a]))[a]?.devices, 1));
      assert.equal((await presenceOf(sb, [a]))[a].status, 'away', 'the status stays when a device leaves');
      phone.close();
      sb.close();
    }),
  );
});

describe('presence friends-only (SWITCHBOARD_PRESENCE__PUBLIC=false)', () => {
  let server;
  before(async () => {
    server = await startServer({ dev: true, env: { SWITCHBOARD_PRESENCE__PUBLIC: 'false' } });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;

  test(
    'a non-friend gets no friend_* events and sees no one but itself',
    withStderr(srv, async () => {
      const a = randomId('fa');
      const b = randomId('fb');
      const s = randomId('stranger');
      await setFriends(server, a, [b]);
      const sb = await dev(server, b, 'Bea', 'd1');
      const ss = await dev(server, s, 'Stranger', 'd1');
      const sa = await dev(server, a, 'Abe', 'd1');
      await waitForEvent(sb, 'friend_online', { predicate: about(a) });
      assert.equal((await emitAck(sa, 'presence:status', { status: 'away' })).success, true);
      await waitForEvent(sb, 'friend_status', { predicate: about(a) });

      assert.deepEqual(await onlineUsers(ss), [{ userId: s, name: 'Stranger', status: 'online' }], 'a stranger sees only itself');
      assert.deepEqual(Object.keys(await presenceOf(ss, [a, b, s])), [s], 'presence:get omits users the caller may not see');
      assert.deepEqual(
        byId(await onlineUsers(sb)),
        byId([
          { userId: a, name: 'Abe', status: 'away' },
          { userId: b, name: 'Bea', status: 'online' },
        ]),
      );
      const pb = await presenceOf(sb, [a, s]);
      assert.deepEqual(Object.keys(pb), [a], `a friend is visible, a stranger is not: ${JSON.stringify(pb)}`);
      assert.equal(pb[a].status, 'away');
      // The stranger's own online lists never show the others.
      const strangerLists = eventsOf(ss, 'onlineUsersUpdated');
      assert.ok(strangerLists.every((d) => sameIds(d.users, [s])), JSON.stringify(strangerLists));

      sa.close();
      await waitForEvent(sb, 'friend_offline', { predicate: about(a) });
      await expectNone(ss, FRIEND_EVENTS, { ms: 500, why: 'for a non-friend' });
      assert.ok(eventsOf(ss, 'onlineUsersUpdated').every((d) => sameIds(d.users, [s])));
      sb.close();
      ss.close();
    }),
  );

  test(
    'onlineUsersUpdated follows a friend connecting, changing status and leaving',
    withStderr(srv, async () => {
      const w = randomId('watch');
      const f = randomId('friend');
      await setFriends(server, w, [f]);
      const sw = await dev(server, w, 'Watcher', 'd1');
      const first = await listWith(sw, [w]);
      assert.deepEqual(first, { users: [{ userId: w, name: 'Watcher', status: 'online' }] }, 'a new socket gets its list');

      const sf = await dev(server, f, 'Friendly', 'd1');
      const both = await listWith(sw, [w, f]);
      assert.deepEqual(
        byId(both.users),
        byId([
          { userId: w, name: 'Watcher', status: 'online' },
          { userId: f, name: 'Friendly', status: 'online' },
        ]),
      );
      const theirs = await listWith(sf, [w, f]);
      assert.equal(theirs.users.length, 2, 'the newcomer gets the same list');

      assert.equal((await emitAck(sf, 'presence:status', { status: 'busy' })).success, true);
      await waitForEvent(sw, 'onlineUsersUpdated', {
        predicate: (d) => d?.users?.some((u) => u.userId === f && u.status === 'busy'),
      });

      sf.close();
      const alone = await listWith(sw, [w]);
      assert.deepEqual(alone.users, [{ userId: w, name: 'Watcher', status: 'online' }], 'the friend left the list');
      sw.close();
    }),
  );

  test(
    'a friendship made or ended over HTTP updates both online lists',
    withStderr(srv, async () => {
      const x = randomId('px');
      const y = randomId('py');
      const sx = await dev(server, x, 'Xavier', 'd1');
      const sy = await dev(server, y, 'Yolanda', 'd1');
      await listWith(sx, [x]);
      await listWith(sy, [y]);

      await setFriends(server, x, [y]);
      await listWith(sx, [x, y]);
      await listWith(sy, [x, y]);
      assert.equal((await presenceOf(sx, [y]))[y]?.status, 'online', 'now visible');

      await setFriends(server, x, []);
      await listWith(sx, [x]);
      await listWith(sy, [y]);
      assert.deepEqual(await presenceOf(sx, [y]), {}, 'no longer visible');
      sx.close();
      sy.close();
    }),
  );
});

describe('onlineUsersUpdated coalescing (public presence)', () => {
  let server;
  before(async () => {
    server = await startServer({ dev: true });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;

  test(
    'a burst of 30 connects gives a watcher a few full lists, not 30',
    withStderr(srv, async () => {
      const w = randomId('burstw');
      const sw = await dev(server, w, 'Burst Watcher', 'w');
      await listWith(sw, [w]);
      await sleep(400); // let any trailing flush pass

      // One every ~30 ms, so that the burst spans several coalescing periods: without
      // coalescing the watcher would get one list per connect.
      const N = 30;
      const users = Array.from({ length: N }, (_, i) => ({ userId: randomId(`b${i}`), name: `Burst ${i}` }));
      const mark = sw.received.length;
      const t0 = Date.now();
      for (const u of users) {
        await connect(server.url, { userId: u.userId, name: u.name, deviceId: 'd' });
        await sleep(30);
      }
      const connectedAt = Date.now();
      const everyone = [w, ...users.map((u) => u.userId)];
      await listWith(sw, everyone, 8000);
      await sleep(800); // nothing more should come once everyone is listed

      const lists = sw.received.slice(mark).filter((r) => r.event === 'onlineUsersUpdated');
      const span = lists.at(-1).at - t0;
      const gaps = lists.slice(1).map((r, i) => r.at - lists[i].at);
      const info = `${lists.length} lists over ${span} ms (the ${N} connects took ${connectedAt - t0} ms), gaps ${JSON.stringify(gaps)}`;
      console.log(`# coalescing: ${info}`);
      assert.ok(lists.length <= Math.max(6, Math.ceil(span / 250) + 2), `one list per 250 ms at most: ${info}`);
      assert.ok(lists.length < N / 2, `far fewer lists than connects: ${info}`);
      assert.ok(gaps.every((g) => g >= 150), `lists to one socket are ~250 ms apart: ${info}`);
      const last = lists.at(-1).args[0];
      assert.ok(sameIds(last.users, everyone), `the last list lists everyone: ${info}`);
      assert.ok(last.users.every((u) => u.status === 'online' && typeof u.name === 'string'), JSON.stringify(last));
      // (The names in pushed lists are checked by the next test.)
      closeAllSockets();
    }),
  );

  test(
    'the online list pushed after a parallel burst of connects carries the display names',
    withStderr(srv, async () => {
      // Two rounds: a watcher, then 30 connects at once, then quiet. The last list pushed
      // must name every user by the name of their handshake.
      const problems = [];
      for (let round = 0; round < 2; round++) {
        const w = randomId(`namew${round}`);
        const sw = await dev(server, w, 'Name Watcher', 'w');
        await listWith(sw, [w]);
        await sleep(400);
        const users = Array.from({ length: 30 }, (_, i) => ({ userId: randomId(`n${round}x${i}`), name: `Named ${i}` }));
        await Promise.all(users.map((u) => connect(server.url, { userId: u.userId, name: u.name, deviceId: 'd' })));
        const everyone = [w, ...users.map((u) => u.userId)];
        await listWith(sw, everyone, 8000);
        await sleep(800);
        const expected = byId([{ userId: w, name: 'Name Watcher', status: 'online' }, ...users.map((u) => ({ ...u, status: 'online' }))]);
        assert.deepEqual(byId(await onlineUsers(sw)), expected, 'getOnlineUsers after the burst');
        const last = eventsOf(sw, 'onlineUsersUpdated').at(-1);
        assert.ok(sameIds(last.users, everyone), 'the last list lists everyone');
        const wrong = last.users.filter((u) => u.name !== expected.find((x) => x.userId === u.userId).name);
        if (wrong.length > 0) {
          problems.push(`round ${round}: ${wrong.length} of 31 named by their id, e.g. ${JSON.stringify(wrong[0])}`);
        }
        closeAllSockets();
        await sleep(300);
      }
      assert.deepEqual(problems, [], 'the last onlineUsersUpdated names users by their display name');
    }),
  );
});

describe('sessions and revocation (dev mode)', () => {
  let server;
  before(async () => {
    server = await startServer({ dev: true });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;
  const sessionsOf = async (userId) => {
    const r = await http(`${server.url}/api/users/${userId}/sessions`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json?.userId, userId);
    assert.ok(Array.isArray(r.json.sessions), r.text);
    return r.json.sessions;
  };

  test(
    'DELETE a session disconnects the device at once; friends hear friend_offline; the log records it',
    withStderr(srv, async () => {
      const a = randomId('rv');
      const b = randomId('rvf');
      await setFriends(server, a, [b]);
      const sb = await dev(server, b, 'Friend', 'd1');
      const sa = await dev(server, a, 'Revoked', 'phone');
      await waitForEvent(sb, 'friend_online', { predicate: about(a) });

      const before = await sessionsOf(a);
      assert.equal(before.length, 1, JSON.stringify(before));
      assert.equal(before[0].deviceId, 'phone');
      assert.equal(before[0].userId, a);
      assert.equal(typeof before[0].socketId, 'string', `a connected session names its socket: ${JSON.stringify(before[0])}`);
      assert.equal(before[0].socketId, sa.id);

      const t0 = Date.now();
      const r = await http(`${server.url}/api/users/${a}/sessions/phone`, { method: 'DELETE' });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, { success: true });
      const reason = await waitForDisconnect(sa, 3000);
      assert.equal(reason, 'io server disconnect');
      assert.ok(Date.now() - t0 < 3000, 'disconnected at once');

      assert.ok(!(await sessionsOf(a)).some((x) => x.deviceId === 'phone'), 'the session is gone from the list');
      assert.equal((await presenceOf(sb, [a]))[a]?.status, 'offline', 'the revoked user is offline');

      const log = await http(`${server.url}/api/users/${a}/security-log`);
      assert.equal(log.status, 200, log.text);
      const entries = log.json?.entries;
      assert.ok(Array.isArray(entries), log.text);
      assert.ok(
        entries.some((e) => e.event === 'connect' && e.deviceId === 'phone' && typeof e.at === 'number'),
        `a connect entry: ${log.text}`,
      );
      assert.ok(
        entries.some((e) => /revoke/i.test(String(e.event)) && e.deviceId === 'phone'),
        `a revoked entry: ${log.text}`,
      );

      const again = await http(`${server.url}/api/users/${a}/sessions/phone`, { method: 'DELETE' });
      assert.equal(again.status, 404, again.text);
      assert.equal(again.json?.code, 'NOT_FOUND', again.text);

      const off = await waitForEvent(sb, 'friend_offline', { predicate: about(a), timeoutMs: 4000 });
      assertTimestamp(off.timestamp, t0, 'friend_offline');
      await sleep(300);
      assert.equal(eventsOf(sb, 'friend_offline', about(a)).length, 1, 'exactly one friend_offline');
      sb.close();
    }),
  );

  test(
    'revoking one of two devices keeps the user online',
    withStderr(srv, async () => {
      const a = randomId('rv2');
      const b = randomId('rv2f');
      await setFriends(server, a, [b]);
      const sb = await dev(server, b, 'Friend', 'd1');
      const phone = await dev(server, a, 'Two Devices', 'phone');
      const laptop = await dev(server, a, 'Two Devices', 'laptop');
      await waitForEvent(sb, 'friend_online', { predicate: about(a) });
      assert.deepEqual((await sessionsOf(a)).map((x) => x.deviceId).sort(), ['laptop', 'phone']);

      const r = await http(`${server.url}/api/users/${a}/sessions/phone`, { method: 'DELETE' });
      assert.equal(r.status, 200, r.text);
      await waitForDisconnect(phone, 3000);
      await sleep(500);
      assert.equal(laptop.connected, true, 'the other device stays connected');
      await expectNone(sb, 'friend_offline', { ms: 300, predicate: about(a), why: 'while the laptop is connected' });
      const p = await presenceOf(sb, [a]);
      assert.deepEqual({ status: p[a]?.status, devices: p[a]?.devices }, { status: 'online', devices: 1 });
      assert.deepEqual((await sessionsOf(a)).map((x) => x.deviceId), ['laptop']);
      laptop.close();
      await waitForEvent(sb, 'friend_offline', { predicate: about(a) });
      sb.close();
    }),
  );
});

describe('outside dev mode (JWT, admin key)', () => {
  const SECRET = 'e2e-secret-presence-0123456789abcdef';
  const ADMIN_KEY = 'e2e-admin-key-presence-0123';
  const admin = { authorization: `Bearer ${ADMIN_KEY}` };
  let server;
  before(async () => {
    server = await startServer({
      dev: false,
      env: { SWITCHBOARD_AUTH__JWT_SECRET: SECRET, SWITCHBOARD_AUTH__ADMIN_KEY: ADMIN_KEY },
    });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;

  test(
    'GET /api/me/sessions lists the caller\'s own sessions',
    withStderr(srv, async () => {
      const u = randomId('me');
      const v = randomId('other');
      const token = mintToken(SECRET, { sub: u, name: 'Me', device: 'laptop' });
      const s = await withToken(server, token);
      const r = await http(`${server.url}/api/me/sessions`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json?.userId, u);
      assert.deepEqual(r.json.sessions.map((x) => [x.userId, x.deviceId]), [[u, 'laptop']], r.text);

      const other = await http(`${server.url}/api/me/sessions`, {
        headers: { authorization: `Bearer ${mintToken(SECRET, { sub: v })}` },
      });
      assert.equal(other.status, 200, other.text);
      assert.deepEqual(other.json, { userId: v, sessions: [] }, 'another user sees only their own');

      for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: `Bearer ${mintToken('wrong-secret-0123456789', { sub: u })}` }]) {
        const denied = await http(`${server.url}/api/me/sessions`, { headers });
        assert.equal(denied.status, 401, denied.text);
        assert.equal(denied.json?.code, 'UNAUTHORIZED', denied.text);
      }
      // The admin endpoints need the admin key.
      const noKey = await http(`${server.url}/api/users/${u}/sessions/laptop`, { method: 'DELETE' });
      assert.equal(noKey.status, 401, noKey.text);
      assert.equal(s.connected, true);

      const del = await http(`${server.url}/api/users/${u}/sessions/laptop`, { method: 'DELETE', headers: admin });
      assert.equal(del.status, 200, del.text);
      await waitForDisconnect(s, 3000);
      const afterDel = await http(`${server.url}/api/me/sessions`, { headers: { authorization: `Bearer ${token}` } });
      assert.deepEqual(afterDel.json, { userId: u, sessions: [] });
    }),
  );

  test(
    'presence is friends-only by default outside dev mode',
    withStderr(srv, async () => {
      const a = randomId('ja');
      const s = randomId('js');
      const sa = await withToken(server, mintToken(SECRET, { sub: a, name: 'Jay' }));
      const ss = await withToken(server, mintToken(SECRET, { sub: s, name: 'Sam' }));
      assert.deepEqual(await onlineUsers(ss), [{ userId: s, name: 'Sam', status: 'online' }]);
      assert.deepEqual(await presenceOf(ss, [a]), {});

      await setFriends(server, s, [a], admin);
      await waitForEvent(ss, 'onlineUsersUpdated', { predicate: (d) => sameIds(d?.users, [a, s]) });
      assert.equal((await presenceOf(ss, [a]))[a]?.status, 'online');
      sa.close();
      await waitForEvent(ss, 'friend_offline', { predicate: about(a) });
      ss.close();
    }),
  );
});
