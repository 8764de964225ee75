// A pending direct call (protocol §5) survives a server restart in Redis mode: the request,
// its call slots and its ring timer live in Redis, the call's history row in PostgreSQL.
// - graceful restart (SIGTERM): the devices reconnect to the new process, the callee's
//   device rings again (incomingCallNew on connect), getCallRequests still lists the call,
//   and the callee answers it;
// - crash (SIGKILL): the ring timer fires on the new process, once, to both sides.
// Skipped with a message when Redis or PostgreSQL is unreachable, unless
// SWITCHBOARD_REQUIRE_BACKENDS=1, when it fails instead.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import {
  backendsSkipReason,
  closeAllSockets,
  connect,
  createTestDatabase,
  dev,
  emitAck,
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

const T = { timeout: 120_000 };

const ack = (socket, event, payload) => emitAck(socket, event, payload, 10_000);
const forCall = (callId) => (d) => d?.callId === callId;

let skipReason = null;
let backendError = null;
try {
  skipReason = await backendsSkipReason();
} catch (e) {
  backendError = e;
}
if (skipReason) console.log(`# skipping the call restart tests: ${skipReason}`);

if (skipReason) {
  test('pending calls survive a restart', { skip: `backends unavailable: ${skipReason}` }, () => {});
} else describe('pending calls survive a restart (Redis + PostgreSQL)', () => {
  const servers = [];
  const dbs = [];
  const prefixes = [];
  after(async () => {
    closeAllSockets();
    await Promise.allSettled(servers.map((s) => s.stop()));
    for (const db of dbs) await db.drop().catch((e) => console.log(`# could not drop ${db.name}: ${e.message}`));
    for (const p of prefixes) redisCleanup(p);
  });
  const srv = () => servers;

  async function backends() {
    if (backendError) throw backendError;
    const db = await createTestDatabase();
    dbs.push(db);
    const prefix = `e2e-calls-restart-${randomBytes(5).toString('hex')}:`;
    prefixes.push(prefix);
    return { db, prefix };
  }

  async function start({ db, prefix }, ringSecs) {
    const server = await startServer({
      dev: true,
      env: { SWITCHBOARD_STORE__PREFIX: prefix, SWITCHBOARD_TIMERS__RING_TIMEOUT_SECS: String(ringSecs) },
      args: ['--redis-url', REDIS_URL, '--database-url', db.url],
    });
    servers.push(server);
    return server;
  }

  test('graceful restart: the call rings again on the new process and can be answered', T, withStderr(srv, async () => {
    const env = await backends();
    const first = await start(env, 30);
    const x = randomId('gx');
    const y = randomId('gy');
    const sx = await dev(first, x, 'Xia', 'x-phone');
    const sy = await dev(first, y, 'Yves', 'y-phone');
    const callId = randomUUID();
    ok(await ack(sx, 'callUser', { callId, targetUserId: y }), 'callUser');
    await waitForEvent(sy, 'incomingCallNew', { predicate: forCall(callId) });
    // The server goes away under connected clients (a deploy): it closes their sockets
    // itself, which must not cancel the ring. (A client hanging up its own socket would.)
    const { code } = await first.stop({ signal: 'SIGTERM' });
    assert.equal(code, 0, 'clean shutdown');
    sx.close();
    sy.close();

    const second = await start(env, 30);
    const y2 = await dev(second, y, 'Yves', 'y-phone');
    const ring = await waitForEvent(y2, 'incomingCallNew', { predicate: forCall(callId) });
    assert.deepEqual(ring, { callId, from: x, fromName: 'Xia' });
    const x2 = await dev(second, x, 'Xia', 'x-phone');
    const outgoing = ok(await ack(x2, 'getCallRequests', {}), 'getCallRequests');
    assert.deepEqual(outgoing.outgoing.map((r) => r.callId), [callId]);
    const accepted = ok(await ack(y2, 'acceptCallNew', { callId }), 'accept after the restart');
    const told = await waitForEvent(x2, 'callAcceptedNew', { predicate: forCall(callId) });
    assert.equal(told.roomId, accepted.roomId);
    const call = await http(`${second.url}/api/calls/${callId}`);
    assert.equal(call.json.status, 'active');
    ok(await ack(x2, 'endCall', { roomId: accepted.roomId }), 'endCall');
  }));

  test('crash: the ring timer fires on the new process, once, to both sides', T, withStderr(srv, async () => {
    const env = await backends();
    const ringSecs = 4;
    const first = await start(env, ringSecs);
    const x = randomId('kx');
    const y = randomId('ky');
    const sx = await dev(first, x, 'Xia', 'x-phone');
    const sy = await dev(first, y, 'Yves', 'y-phone');
    const callId = randomUUID();
    const placedAt = Date.now();
    ok(await ack(sx, 'callUser', { callId, targetUserId: y }), 'callUser');
    await waitForEvent(sy, 'incomingCallNew', { predicate: forCall(callId) });
    await first.stop({ signal: 'SIGKILL' });
    sx.close();
    sy.close();

    const second = await start(env, ringSecs);
    const x2 = await dev(second, x, 'Xia', 'x-phone');
    const y2 = await dev(second, y, 'Yves', 'y-phone');
    const wait = Math.max(2000, ringSecs * 1000 - (Date.now() - placedAt) + 4000);
    await waitForEvent(x2, 'callTimeout', { predicate: forCall(callId), timeoutMs: wait });
    await waitForEvent(y2, 'callTimeout', { predicate: forCall(callId), timeoutMs: 3000 });
    await sleep(1000);
    assert.equal(x2.received.filter((r) => r.event === 'callTimeout').length, 1, 'exactly once');
    const call = await http(`${second.url}/api/calls/${callId}`);
    assert.equal(call.json.outcome, 'missed');
  }));
});
