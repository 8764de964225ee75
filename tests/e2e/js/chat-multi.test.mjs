// Chat (protocol §9) across two instances sharing Redis (same key prefix) and one
// PostgreSQL database: message:new, typing (and its expiry, fired once), unread:updated,
// conversation:updated and conversation:read cross instances; room joins and leaves after
// member changes on the other instance; the history (and its shared recent cache) is the
// same from both; clientMessageId and the send rate limit hold across instances.
// Skipped with a message when Redis or PostgreSQL is unreachable, unless
// SWITCHBOARD_REQUIRE_BACKENDS=1, when it fails instead.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import {
  call,
  closeAllSockets,
  describeTwoInstances,
  dev,
  emitAck,
  eventsOf,
  eventually,
  ok,
  randomId,
  sleep,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

const TYPING_SECS = 2;
const RATE_LIMIT = 40;
const RATE_WINDOW_SECS = 6;
const T = { timeout: 120_000 };

// ---------------------------------------------------------------------------
// Local helpers.

async function send(socket, conversationId, content, extra = {}) {
  return (await call(socket, 'message:send', { conversationId, content, ...extra }, `message:send "${content}"`)).message;
}

async function fullHistory(socket, conversationId, limit = 100) {
  let all = [];
  let cursor;
  for (let guard = 0; guard < 200; guard++) {
    const page = await call(socket, 'message:history', { conversationId, limit, ...(cursor ? { before: cursor } : {}) });
    all = [...page.messages, ...all];
    if (!page.hasMore) return all;
    cursor = page.messages[0].id;
  }
  throw new Error('history paging did not end');
}

const msgId = (id) => (d) => d?.message?.id === id;
const convUpdated = (id, pred = () => true) => (d) => d?.conversation?.id === id && pred(d.conversation);
const ids = (ms) => ms.map((m) => m.id);

// ---------------------------------------------------------------------------

const ENV = {
  SWITCHBOARD_TIMERS__TYPING_SECS: String(TYPING_SECS),
  SWITCHBOARD_RATE_LIMITS__MESSAGE__LIMIT: String(RATE_LIMIT),
  SWITCHBOARD_RATE_LIMITS__MESSAGE__WINDOW_SECS: String(RATE_WINDOW_SECS),
};

await describeTwoInstances(`chat across two instances (Redis + PostgreSQL, typing ${TYPING_SECS} s, ${RATE_LIMIT} messages per ${RATE_WINDOW_SECS} s)`, { name: 'chat-multi', env: ENV }, (pair) => {
  let a;
  let b;
  before(() => ({ a, b } = pair));
  const srv = () => [a, b];

  test(
    'a member on B receives message:new, unread:updated and conversation:updated for activity on A; reads cross back',
    T,
    withStderr(srv, async () => {
      const x = randomId('mx');
      const y = randomId('my');
      const sx = await dev(a, x, 'Xia');
      const sy = await dev(b, y, 'Yves');
      const syA = await dev(a, y, 'Yves', 'd2'); // a second device of y, on A

      const conv = (await call(sx, 'conversation:create', { type: 'direct', memberIds: [y] })).conversation;
      await waitForEvent(sy, 'conversation:updated', { predicate: convUpdated(conv.id) });
      assert.equal((await call(sy, 'conversation:create', { type: 'direct', memberIds: [x] })).conversation.id, conv.id, 'the same direct conversation from B');

      const m = await send(sx, conv.id, 'hello from A');
      const got = await waitForEvent(sy, 'message:new', { predicate: msgId(m.id) });
      assert.deepEqual(got.message, m, 'B receives the acked message');
      await waitForEvent(syA, 'message:new', { predicate: msgId(m.id) });
      await waitForEvent(sx, 'message:new', { predicate: msgId(m.id) });
      const u = await waitForEvent(sy, 'unread:updated', { predicate: (d) => d?.conversationId === conv.id && d.count === 1 });
      assert.deepEqual(u, { conversationId: conv.id, count: 1 });
      assert.deepEqual((await call(sy, 'unread:get', {})).counts, { [conv.id]: 1 }, 'unread:get on B');
      assert.deepEqual((await call(syA, 'unread:get', {})).counts, { [conv.id]: 1 }, 'unread:get on A');

      const m2 = await send(sx, conv.id, 'second');
      await waitForEvent(sy, 'unread:updated', { predicate: (d) => d?.conversationId === conv.id && d.count === 2 });
      await waitForEvent(sy, 'message:new', { predicate: msgId(m2.id) });

      // Read on B: conversation:read reaches A, unread:updated 0 reaches y's device on A.
      ok(await emitAck(sy, 'message:read', { conversationId: conv.id }), 'message:read');
      const r = await waitForEvent(sx, 'conversation:read', { predicate: (d) => d?.conversationId === conv.id && d.userId === y });
      assert.equal(typeof r.readAt, 'number');
      await waitForEvent(syA, 'unread:updated', { predicate: (d) => d?.conversationId === conv.id && d.count === 0 });
      assert.deepEqual((await call(syA, 'unread:get', {})).counts, {}, 'cleared, seen from A');

      // Edits, reactions and deletions on B reach A.
      const edited = (await call(sx, 'message:edit', { conversationId: conv.id, messageId: m.id, content: 'edited on A' })).message;
      const e = await waitForEvent(sy, 'message:edited', { predicate: msgId(m.id) });
      assert.equal(e.message.content, 'edited on A');
      assert.equal(e.message.editedAt, edited.editedAt);
      await call(sy, 'message:react', { conversationId: conv.id, messageId: m2.id, emoji: '👍' });
      const ru = await waitForEvent(sx, 'message:reaction-updated', { predicate: (d) => d?.messageId === m2.id });
      assert.deepEqual(ru.reactions, [{ emoji: '👍', userIds: [y], count: 1 }]);
      await call(sx, 'message:delete', { conversationId: conv.id, messageId: m2.id });
      assert.deepEqual(await waitForEvent(sy, 'message:deleted', { predicate: (d) => d?.messageId === m2.id }), {
        conversationId: conv.id,
        messageId: m2.id,
      });
      for (const s of [sx, sy]) {
        const h = (await call(s, 'message:history', { conversationId: conv.id })).messages;
        assert.deepEqual(ids(h), [m.id, m2.id]);
        assert.equal(h[0].content, 'edited on A');
        assert.equal(h[1].deleted, true);
      }
      closeAllSockets();
    }),
  );

  test(
    'group membership changed on A: a socket on B joins (gets messages) and, once removed, leaves the room',
    T,
    withStderr(srv, async () => {
      const owner = randomId('go');
      const late = randomId('gl');
      const other = randomId('gx');
      const so = await dev(a, owner, 'Owner');
      const sl = await dev(b, late, 'Late');
      const sxB = await dev(b, other, 'Other');
      const g = (await call(so, 'conversation:create', { type: 'group', memberIds: [other], name: 'G' })).conversation;
      await waitForEvent(sxB, 'conversation:updated', { predicate: convUpdated(g.id) });
      const before = await send(so, g.id, 'before Late joined');
      await waitForEvent(sxB, 'message:new', { predicate: msgId(before.id) });

      await call(so, 'conversation:add-members', { conversationId: g.id, memberIds: [late] });
      await waitForEvent(sl, 'conversation:updated', { predicate: convUpdated(g.id, (c) => c.memberIds.includes(late)) });
      const hi = await send(so, g.id, 'welcome');
      await waitForEvent(sl, 'message:new', { predicate: msgId(hi.id) });
      assert.equal(eventsOf(sl, 'message:new', msgId(before.id)).length, 0, 'nothing from before joining');
      await call(so, 'conversation:rename', { conversationId: g.id, name: 'G2' });
      await waitForEvent(sl, 'conversation:updated', { predicate: convUpdated(g.id, (c) => c.name === 'G2') });

      await call(so, 'conversation:remove-member', { conversationId: g.id, userId: late });
      await waitForEvent(sl, 'conversation:updated', { predicate: convUpdated(g.id, (c) => !c.memberIds.includes(late)) });
      const after = await send(so, g.id, 'Late is gone');
      await waitForEvent(sxB, 'message:new', { predicate: msgId(after.id) });
      await sleep(600);
      assert.equal(eventsOf(sl, 'message:new', msgId(after.id)).length, 0, 'the removed member on B gets no more messages');
      assert.equal(eventsOf(sl, 'unread:updated', (d) => d?.conversationId === g.id && d.count > 1).length, 0, 'nor unread updates');
      closeAllSockets();
    }),
  );

  test(
    `typing on A reaches B (not the typist's devices); the expiry after ${TYPING_SECS} s fires once`,
    T,
    withStderr(srv, async () => {
      const x = randomId('tx');
      const y = randomId('ty');
      const sx = await dev(a, x, 'Typist');
      const sxB = await dev(b, x, 'Typist', 'd2');
      const sy = await dev(b, y, 'Reader');
      const syA = await dev(a, y, 'Reader', 'd2');
      const c = (await call(sx, 'conversation:create', { type: 'group', memberIds: [y], name: 'T' })).conversation.id;
      await waitForEvent(sy, 'conversation:updated', { predicate: convUpdated(c) });
      const typing = (is) => (d) => d?.conversationId === c && d.userId === x && d.isTyping === is;

      ok(await emitAck(sx, 'typing:start', { conversationId: c }), 'typing:start');
      assert.deepEqual(await waitForEvent(sy, 'typing', { predicate: typing(true) }), { conversationId: c, userId: x, isTyping: true });
      await waitForEvent(syA, 'typing', { predicate: typing(true) });
      ok(await emitAck(sx, 'typing:stop', { conversationId: c }), 'typing:stop');
      await waitForEvent(sy, 'typing', { predicate: typing(false) });

      const t0 = Date.now();
      ok(await emitAck(sx, 'typing:start', { conversationId: c }), 'typing:start');
      await waitForEvent(sy, 'typing', { predicate: typing(true) });
      await waitForEvent(sy, 'typing', { predicate: typing(false), timeoutMs: TYPING_SECS * 1000 + 8000 });
      const took = Date.now() - t0;
      console.log(`# typing expired after ${took} ms across instances (configured ${TYPING_SECS} s)`);
      assert.ok(took >= TYPING_SECS * 1000 - 300, `not before the expiry (${took} ms)`);
      await waitForEvent(syA, 'typing', { predicate: typing(false) });
      await sleep(TYPING_SECS * 1000 + 1000);
      for (const s of [sy, syA]) assert.equal(eventsOf(s, 'typing', typing(false)).length, 2, 'one isTyping:false for the stop and one for the expiry');
      for (const s of [sx, sxB]) assert.deepEqual(eventsOf(s, 'typing', (d) => d?.userId === x), [], "nothing to the typist's devices");
      closeAllSockets();
    }),
  );

  test(
    'history is the same from both instances (130 messages sent through both, paged across cache and database)',
    T,
    withStderr(srv, async () => {
      const users = [randomId('h0'), randomId('h1'), randomId('h2'), randomId('h3')];
      const socks = [];
      for (let i = 0; i < users.length; i++) socks.push(await dev(i % 2 ? b : a, users[i], `H${i}`));
      const c = (await call(socks[0], 'conversation:create', { type: 'group', memberIds: users.slice(1), name: 'H' })).conversation.id;
      for (const s of socks.slice(1)) await waitForEvent(s, 'conversation:updated', { predicate: convUpdated(c) });
      const sent = [];
      for (let i = 0; i < 130; i++) sent.push(await send(socks[i % 4], c, `h${i}`));
      const readers = [await dev(a, users[0], 'H0', 'reader'), await dev(b, users[0], 'H0', 'reader2')];
      const [ha, hb] = [await fullHistory(readers[0], c), await fullHistory(readers[1], c)];
      assert.deepEqual(ids(ha), ids(sent), 'history from A');
      assert.deepEqual(hb, ha, 'history from B is identical');
      for (const limit of [7, 50]) {
        assert.deepEqual(ids(await fullHistory(readers[1], c, limit)), ids(sent), `from B with limit ${limit}`);
      }
      // An edit on B shows in A's history (the shared recent cache is updated).
      await call(socks[1], 'message:edit', { conversationId: c, messageId: sent[125].id, content: 'edited on B' });
      const tail = (await call(readers[0], 'message:history', { conversationId: c, limit: 10 })).messages;
      assert.equal(tail.find((m) => m.id === sent[125].id)?.content, 'edited on B');
      const tailB = (await call(readers[1], 'message:history', { conversationId: c, after: sent[120].id })).messages;
      assert.deepEqual(tailB, tail.slice(1), 'the same page through `after` on B');
      // Every member's unread count is the same seen from either instance.
      for (let i = 0; i < users.length; i++) {
        const mine = sent.filter((m) => m.senderId !== users[i]).length;
        const onA = await dev(a, users[i], `H${i}`, 'counter-a');
        const onB = await dev(b, users[i], `H${i}`, 'counter-b');
        assert.equal((await call(onA, 'unread:get', {})).counts[c], mine, `unread of ${i} on A`);
        assert.equal((await call(onB, 'unread:get', {})).counts[c], mine, `unread of ${i} on B`);
      }
      closeAllSockets();
    }),
  );

  test(
    'concurrent sends through both instances (same milliseconds): every history walk gives the same order, without duplicates or gaps',
    T,
    withStderr(srv, async () => {
      // Each round, one user on A and one on B send at the same moment, so the two
      // instances' group commits often stamp the same createdAt. The recent cache and the
      // database must still agree on the order, or paging across the cache boundary
      // repeats or skips messages (docs/protocol.md: "both give the same answer").
      const ROUNDS = 250;
      const PER_SIDE = 10; // users per instance, so nobody reaches the rate limit
      const usersA = Array.from({ length: PER_SIDE }, (_, i) => randomId(`ca${i}`));
      const usersB = Array.from({ length: PER_SIDE }, (_, i) => randomId(`cb${i}`));
      const sockA = [];
      const sockB = [];
      for (const u of usersA) sockA.push(await dev(a, u, u));
      for (const u of usersB) sockB.push(await dev(b, u, u));
      const c = (await call(sockA[0], 'conversation:create', { type: 'group', memberIds: [...usersA.slice(1), ...usersB], name: 'C' })).conversation.id;
      for (const s of [...sockA.slice(1), ...sockB]) await waitForEvent(s, 'conversation:updated', { predicate: convUpdated(c) });
      const acked = [];
      for (let i = 0; i < ROUNDS; i++) {
        const pair = await Promise.all([
          emitAck(sockA[i % PER_SIDE], 'message:send', { conversationId: c, content: `a${i}` }, 20_000),
          emitAck(sockB[i % PER_SIDE], 'message:send', { conversationId: c, content: `b${i}` }, 20_000),
        ]);
        pair.forEach((r) => acked.push(ok(r, `round ${i}`).message));
      }
      const stamps = new Map();
      for (const m of acked) stamps.set(m.createdAt, (stamps.get(m.createdAt) ?? '') + m.content[0]);
      const shared = [...stamps.values()].filter((v) => v.includes('a') && v.includes('b')).length;
      console.log(`# ${acked.length} messages; ${shared} of ${stamps.size} createdAt values used by both instances`);

      const reader = sockA[0];
      const walkBack = async (limit) => {
        let all = [];
        let cursor;
        for (let guard = 0; guard < 2000; guard++) {
          const p = await call(reader, 'message:history', { conversationId: c, limit, ...(cursor ? { before: cursor } : {}) });
          all = [...p.messages, ...all];
          if (!p.hasMore) return all.map((m) => m.content);
          cursor = p.messages[0].id;
        }
        throw new Error('no end');
      };
      const walkFwd = async (limit, first) => {
        let all = [first];
        let cursor = first.id;
        for (let guard = 0; guard < 2000; guard++) {
          const p = await call(sockB[0], 'message:history', { conversationId: c, limit, after: cursor });
          all = [...all, ...p.messages];
          if (!p.hasMore) return all.map((m) => m.content);
          cursor = p.messages.at(-1).id;
        }
        throw new Error('no end');
      };
      const expected = acked.map((m) => m.content).sort();
      const firstContent = (await walkBack(100))[0];
      const first = acked.find((m) => m.content === firstContent);
      const problems = [];
      let reference;
      for (const limit of [100, 1, 2, 3, 5, 7, 11, 13, 33, 50]) {
        for (const [dir, walk] of [
          ['before', () => walkBack(limit)],
          ['after', () => walkFwd(limit, first)],
        ]) {
          const got = await walk();
          const dup = got.filter((x, i) => got.indexOf(x) !== i);
          const missing = expected.filter((x) => !got.includes(x));
          if (dup.length || missing.length) problems.push(`${dir} limit ${limit}: duplicates [${dup}], missing [${missing}]`);
          else if (!reference) reference = { how: `${dir} limit ${limit}`, order: got };
          else if (JSON.stringify(got) !== JSON.stringify(reference.order)) {
            const k = got.findIndex((x, i) => x !== reference.order[i]);
            problems.push(`${dir} limit ${limit}: order differs from ${reference.how} at ${k}: ${got.slice(k, k + 3)} vs ${reference.order.slice(k, k + 3)}`);
          }
        }
      }
      // The newest 100 from the cache and the same 100 from the database (a cursor just
      // older than the cached ones).
      const back = await walkBack(100);
      const olderIdx = back.length - 101;
      const olderId = acked.find((m) => m.content === back[olderIdx]).id;
      const fromCache = (await call(reader, 'message:history', { conversationId: c, limit: 100 })).messages.map((m) => m.content);
      const fromDb = (await call(reader, 'message:history', { conversationId: c, limit: 100, after: olderId })).messages.map((m) => m.content);
      if (JSON.stringify(fromCache) !== JSON.stringify(fromDb)) {
        const k = fromCache.findIndex((x, i) => x !== fromDb[i]);
        problems.push(`newest 100 (cache) vs after:<101st newest> (database) differ at ${k}: ${fromCache.slice(k, k + 3)} vs ${fromDb.slice(k, k + 3)}`);
      }
      assert.deepEqual(problems, [], 'history pages are consistent whatever the page size and direction');
      closeAllSockets();
    }),
  );

  test(
    'clientMessageId across instances: a retry on B answers the message sent on A, broadcast once',
    T,
    withStderr(srv, async () => {
      const x = randomId('ix');
      const y = randomId('iy');
      const sxA = await dev(a, x, 'Ix', 'phone');
      const sxB = await dev(b, x, 'Ix', 'laptop');
      const sy = await dev(b, y, 'Iy');
      const c = (await call(sxA, 'conversation:create', { type: 'direct', memberIds: [y] })).conversation.id;
      await waitForEvent(sy, 'conversation:updated', { predicate: convUpdated(c) });
      const first = await send(sxA, c, 'once', { clientMessageId: 'xi-1' });
      const results = await Promise.all([
        emitAck(sxB, 'message:send', { conversationId: c, content: 'once', clientMessageId: 'xi-1' }, 10_000),
        emitAck(sxA, 'message:send', { conversationId: c, content: 'once', clientMessageId: 'xi-1' }, 10_000),
        emitAck(sxB, 'message:send', { conversationId: c, content: 'twice', clientMessageId: 'xi-2' }, 10_000),
        emitAck(sxA, 'message:send', { conversationId: c, content: 'twice', clientMessageId: 'xi-2' }, 10_000),
      ]);
      results.forEach((r, i) => ok(r, `send #${i}`));
      assert.equal(results[0].message.id, first.id);
      assert.equal(results[1].message.id, first.id);
      assert.equal(results[2].message.id, results[3].message.id, 'concurrent sends with one key on two instances: one message');
      await sleep(800);
      for (const s of [sy, sxA, sxB]) {
        assert.equal(eventsOf(s, 'message:new', (d) => d?.message?.clientMessageId === 'xi-1').length, 1);
        assert.equal(eventsOf(s, 'message:new', (d) => d?.message?.clientMessageId === 'xi-2').length, 1);
      }
      const h = (await call(sy, 'message:history', { conversationId: c })).messages;
      assert.deepEqual(h.map((m) => m.clientMessageId), ['xi-1', 'xi-2']);
      await eventually(async () => assert.deepEqual((await call(sy, 'unread:get', {})).counts, { [c]: 2 }));
      closeAllSockets();
    }),
  );

  test(
    `the send rate limit is shared by the instances (${RATE_LIMIT} per ${RATE_WINDOW_SECS} s per user)`,
    T,
    withStderr(srv, async () => {
      const x = randomId('rx');
      const sxA = await dev(a, x, 'Rx', 'phone');
      const sxB = await dev(b, x, 'Rx', 'laptop');
      const c = (await call(sxA, 'conversation:create', { type: 'group', memberIds: [], name: 'R' })).conversation.id;
      const t0 = Date.now();
      for (let i = 0; i < RATE_LIMIT; i++) await send(i % 2 ? sxB : sxA, c, `r${i}`);
      const took = Date.now() - t0;
      assert.ok(took < RATE_WINDOW_SECS * 1000 - 1500, `${RATE_LIMIT} sends well inside the window (${took} ms)`);
      for (const s of [sxA, sxB]) {
        const r = await emitAck(s, 'message:send', { conversationId: c, content: 'too many' }, 10_000);
        assert.equal(r?.success, false, JSON.stringify(r));
        assert.equal(r.code, 'RATE_LIMITED', JSON.stringify(r));
        assert.ok(r.retryAfterMs > 0 && r.retryAfterMs <= RATE_WINDOW_SECS * 1000, `retryAfterMs ${r.retryAfterMs}`);
      }
      closeAllSockets();
    }),
  );
});
