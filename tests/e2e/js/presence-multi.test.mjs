// Presence across two instances sharing Redis (same key prefix) and one PostgreSQL
// database: friend_* events and onlineUsersUpdated cross instances, revocation through the
// other instance's HTTP API, and a SIGKILLed instance whose users lapse after the presence
// TTL (2 s here) and are reported offline by the surviving instance.
// Skipped with a message when Redis or PostgreSQL is unreachable, unless
// SWITCHBOARD_REQUIRE_BACKENDS=1, when it fails instead.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import {
  describeTwoInstances,
  dev,
  emitAck,
  eventsOf,
  eventually,
  http,
  randomId,
  sleep,
  waitForDisconnect,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

const PRESENCE_TTL_SECS = 2;

// ---------------------------------------------------------------------------
// Local helpers.

async function setFriends(server, userId, friendIds) {
  const r = await http(`${server.url}/api/users/${encodeURIComponent(userId)}/friends`, {
    method: 'PUT',
    body: { friendIds },
  });
  assert.equal(r.status, 200, `PUT friends of ${userId}: ${r.text}`);
}

const about = (userId) => (d) => d?.userId === userId;
const ids = (users) => (users ?? []).map((u) => u.userId).sort();
const sameIds = (users, expected) => JSON.stringify(ids(users)) === JSON.stringify([...expected].sort());

function listWith(socket, expectedIds, timeoutMs = 6000) {
  return waitForEvent(socket, 'onlineUsersUpdated', { timeoutMs, predicate: (d) => sameIds(d?.users, expectedIds) });
}

async function presenceOf(socket, userIds) {
  const ack = await emitAck(socket, 'presence:get', { userIds });
  assert.equal(ack?.success, true, `presence:get ${JSON.stringify(ack)}`);
  return ack.presence;
}

// ---------------------------------------------------------------------------

const ENV = {
  SWITCHBOARD_PRESENCE__PUBLIC: 'false',
  SWITCHBOARD_TIMERS__PRESENCE_TTL_SECS: String(PRESENCE_TTL_SECS),
};

await describeTwoInstances('presence across two instances (Redis + PostgreSQL, presence TTL 2 s, friends-only)', { name: 'pm', env: ENV }, (pair) => {
  let a;
  let b;
  before(() => ({ a, b } = pair));
  const srv = () => [a, b];

  test(
    'a friend on B hears friend_online, friend_status and friend_offline for a user on A',
    withStderr(srv, async () => {
      const x = randomId('mx');
      const y = randomId('my');
      await setFriends(a, x, [y]);
      const sy = await dev(b, y, 'Yara', 'd1');
      const t0 = Date.now();
      const sx = await dev(a, x, 'Xena', 'd1');

      const online = await waitForEvent(sy, 'friend_online', { predicate: about(x) });
      assert.equal(online.name, 'Xena');
      assert.equal(typeof online.timestamp, 'number');
      assert.ok(online.timestamp >= t0 - 2000, 'timestamp in ms since the epoch');

      assert.deepEqual(await emitAck(sx, 'presence:status', { status: 'away' }), { success: true, status: 'away' });
      const st = await waitForEvent(sy, 'friend_status', { predicate: about(x) });
      assert.equal(st.status, 'away');
      assert.deepEqual(await emitAck(sx, 'presence:status', { status: 'away' }), { success: true, status: 'away' });
      await sleep(600);
      assert.equal(eventsOf(sy, 'friend_status', about(x)).length, 1, 'the same status again is no change');

      const p = await presenceOf(sy, [x]);
      assert.deepEqual({ status: p[x]?.status, devices: p[x]?.devices }, { status: 'away', devices: 1 }, 'B sees the presence set on A');
      assert.equal(eventsOf(sy, 'friend_online', about(x)).length, 1, 'one friend_online');

      sx.close();
      await waitForEvent(sy, 'friend_offline', { predicate: about(x) });
      await eventually(async () => assert.equal((await presenceOf(sy, [x]))[x]?.status, 'offline'));
      await sleep(300);
      assert.equal(eventsOf(sy, 'friend_offline', about(x)).length, 1, 'one friend_offline');
      sy.close();
    }),
  );

  test(
    'onlineUsersUpdated reaches a socket on B for changes on A',
    withStderr(srv, async () => {
      const w = randomId('mw');
      const f = randomId('mf');
      await setFriends(b, w, [f]);
      const sw = await dev(b, w, 'Wanda', 'd1');
      await listWith(sw, [w]);

      const sf = await dev(a, f, 'Fred', 'd1');
      const both = await listWith(sw, [w, f]);
      assert.deepEqual(
        both.users.find((u) => u.userId === f),
        { userId: f, name: 'Fred', status: 'online' },
        JSON.stringify(both),
      );

      assert.equal((await emitAck(sf, 'presence:status', { status: 'busy' })).success, true);
      await waitForEvent(sw, 'onlineUsersUpdated', {
        timeoutMs: 6000,
        predicate: (d) => d?.users?.some((u) => u.userId === f && u.status === 'busy'),
      });

      sf.close();
      const alone = await listWith(sw, [w]);
      assert.deepEqual(alone.users, [{ userId: w, name: 'Wanda', status: 'online' }]);
      sw.close();
    }),
  );

  test(
    "revocation through B's HTTP API disconnects a device on A",
    withStderr(srv, async () => {
      const x = randomId('mrv');
      const y = randomId('mrvf');
      await setFriends(a, x, [y]);
      const sy = await dev(b, y, 'Friend', 'd1');
      const sx = await dev(a, x, 'Revokee', 'tab');
      await waitForEvent(sy, 'friend_online', { predicate: about(x) });

      const listed = await http(`${b.url}/api/users/${x}/sessions`);
      assert.equal(listed.status, 200, listed.text);
      assert.deepEqual(listed.json.sessions.map((s) => s.deviceId), ['tab'], `B lists the session held on A: ${listed.text}`);

      const t0 = Date.now();
      const r = await http(`${b.url}/api/users/${x}/sessions/tab`, { method: 'DELETE' });
      assert.equal(r.status, 200, r.text);
      await waitForDisconnect(sx, 4000);
      console.log(`# revocation via B disconnected the socket on A in ${Date.now() - t0} ms`);
      for (const s of [a, b]) {
        const after = await http(`${s.url}/api/users/${x}/sessions`);
        assert.ok(!after.json.sessions.some((x) => x.deviceId === 'tab'), `${s.url}: the session is gone: ${after.text}`);
      }
      await eventually(async () => assert.equal((await presenceOf(sy, [x]))[x]?.status, 'offline'));

      await waitForEvent(sy, 'friend_offline', { predicate: about(x) });
      await sleep(300);
      assert.equal(eventsOf(sy, 'friend_offline', about(x)).length, 1, 'one friend_offline');
      sy.close();
    }),
  );

  // Last: it kills instance A.
  test(
    'a SIGKILLed instance: its users stay online while it lives, then lapse after the TTL; friends hear friend_offline once',
    withStderr(srv, async () => {
      const x = randomId('mk');
      const y = randomId('mkf');
      await setFriends(b, y, [x]);
      const sy = await dev(b, y, 'Survivor', 'd1');
      await listWith(sy, [y]);
      const sx = await dev(a, x, 'Doomed', 'd1');
      await waitForEvent(sy, 'friend_online', { predicate: about(x) });
      await listWith(sy, [x, y]);

      // The heartbeat keeps an idle connection alive well past the TTL.
      await sleep(PRESENCE_TTL_SECS * 1000 * 2 + 500);
      assert.deepEqual(eventsOf(sy, 'friend_offline', about(x)), [], 'no friend_offline while A is alive');
      let p = await presenceOf(sy, [x]);
      assert.deepEqual({ status: p[x]?.status, devices: p[x]?.devices }, { status: 'online', devices: 1 }, 'online past the TTL');

      const killedAt = Date.now();
      const { signal } = await a.stop({ signal: 'SIGKILL' });
      assert.equal(signal, 'SIGKILL');
      const off = await waitForEvent(sy, 'friend_offline', { predicate: about(x), timeoutMs: 8000 });
      const took = Date.now() - killedAt;
      console.log(`# friend_offline for the killed instance's user after ${took} ms`);
      assert.ok(took >= (PRESENCE_TTL_SECS * 1000) / 3, `not before the presence could lapse (${took} ms)`);
      assert.equal(typeof off.timestamp, 'number');

      p = await presenceOf(sy, [x]);
      assert.deepEqual({ status: p[x]?.status, devices: p[x]?.devices }, { status: 'offline', devices: 0 }, JSON.stringify(p));
      const users = (await emitAck(sy, 'getOnlineUsers', {})).users;
      assert.deepEqual(ids(users), [y], 'gone from getOnlineUsers on B');
      await listWith(sy, [y]);

      await sleep(2500);
      assert.equal(eventsOf(sy, 'friend_offline', about(x)).length, 1, 'exactly one friend_offline');
      assert.equal(sx.connected, false, "the killed instance's client is disconnected");
      sy.close();
    }),
  );
});
