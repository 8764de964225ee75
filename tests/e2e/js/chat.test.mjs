// Chat (protocol §9) on one instance, dev mode, on memory + SQLite and again on Redis +
// PostgreSQL (skipped with a message when those are unreachable): every client event
// and its ack, INVALID_PAYLOAD for malformed payloads, conversations (direct and group),
// message fan-out to every member device, replies, edits, deletions, reactions, history
// paging across the recent-message cache and the database, clientMessageId retries,
// unread counts and read marks, per-user conversation deletion, typing and its expiry, the
// send rate limit, and a restart on the same SQLite file (cold cache, unread rebuild).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
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
  ok,
  randomId,
  REDIS_URL,
  redisCleanup,
  sleep,
  startServer,
  waitForEvent,
  withStderr,
} from './helpers.mjs';

const TYPING_SECS = 2;
const T = { timeout: 90_000 };

// ---------------------------------------------------------------------------
// Local helpers.

const inConv = (conversationId) => (d) => d?.conversationId === conversationId || d?.message?.conversationId === conversationId;
const msgId = (id) => (d) => d?.message?.id === id;
const convUpdated = (id, pred = () => true) => (d) => d?.conversation?.id === id && pred(d.conversation);

async function createGroup(socket, memberIds, name) {
  const ack = await call(socket, 'conversation:create', { type: 'group', memberIds, ...(name ? { name } : {}) });
  return ack.conversation;
}

async function createDirect(socket, other) {
  return (await call(socket, 'conversation:create', { type: 'direct', memberIds: [other] })).conversation;
}

async function send(socket, conversationId, content, extra = {}) {
  return (await call(socket, 'message:send', { conversationId, content, ...extra }, `message:send "${content.slice(0, 40)}"`)).message;
}

async function history(socket, conversationId, opts = {}) {
  const ack = await call(socket, 'message:history', { conversationId, ...opts }, `message:history ${JSON.stringify(opts)}`);
  assert.ok(Array.isArray(ack.messages), 'messages is an array');
  assert.equal(typeof ack.hasMore, 'boolean', 'hasMore is a boolean');
  for (let i = 1; i < ack.messages.length; i++) {
    assert.ok(ack.messages[i - 1].createdAt <= ack.messages[i].createdAt, `page is ascending: ${JSON.stringify(ack.messages.map((m) => m.createdAt))}`);
  }
  return ack;
}

/** Every message visible to the socket, paging backwards with `before`. */
async function fullHistoryBackwards(socket, conversationId, limit) {
  let all = [];
  let cursor;
  for (let guard = 0; guard < 1000; guard++) {
    const page = await history(socket, conversationId, { limit, ...(cursor ? { before: cursor } : {}) });
    all = [...page.messages, ...all];
    if (!page.hasMore) return all;
    assert.ok(page.messages.length > 0, 'hasMore with an empty page');
    cursor = page.messages[0].id;
  }
  throw new Error('history paging did not end');
}

/** Every message after `afterId`, paging forwards. */
async function fullHistoryForwards(socket, conversationId, afterId, limit) {
  let all = [];
  let cursor = afterId;
  for (let guard = 0; guard < 1000; guard++) {
    const page = await history(socket, conversationId, { limit, after: cursor });
    all = [...all, ...page.messages];
    if (!page.hasMore) return all;
    assert.ok(page.messages.length > 0, 'hasMore with an empty page');
    cursor = page.messages.at(-1).id;
  }
  throw new Error('history paging did not end');
}

function assertMessageShape(m, what) {
  assert.equal(typeof m?.id, 'string', `${what}: id`);
  assert.match(m.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, `${what}: id is a UUID v4`);
  assert.equal(typeof m.conversationId, 'string', `${what}: conversationId`);
  assert.equal(typeof m.senderId, 'string', `${what}: senderId`);
  assert.equal(typeof m.senderName, 'string', `${what}: senderName`);
  assert.equal(typeof m.content, 'string', `${what}: content`);
  assert.equal(typeof m.createdAt, 'number', `${what}: createdAt`);
  assert.ok(m.createdAt > 1.6e12 && m.createdAt < Date.now() + 60_000, `${what}: createdAt in ms (${m.createdAt})`);
  assert.ok(Array.isArray(m.reactions), `${what}: reactions array`);
}

const ids = (messages) => messages.map((m) => m.id);
const sorted = (a) => [...a].sort();

// ---------------------------------------------------------------------------

let redisSkip = null;
let redisError = null;
try {
  redisSkip = await backendsSkipReason();
} catch (e) {
  redisError = e;
}
if (redisSkip) console.log(`# skipping the Redis + PostgreSQL chat suite: ${redisSkip}`);

const BACKENDS = [
  { label: 'memory store, SQLite', redis: false },
  { label: 'Redis store, PostgreSQL', redis: true },
];

for (const backend of BACKENDS) describe(`chat on one instance (${backend.label}, dev mode)`, { skip: backend.redis && redisSkip ? `backends unavailable: ${redisSkip}` : false }, () => {
  let server;
  let db;
  const prefix = `e2e-chat-${randomBytes(5).toString('hex')}:`;
  before(async () => {
    const args = [];
    const env = {
      SWITCHBOARD_TIMERS__TYPING_SECS: String(TYPING_SECS),
      // Most tests send more than the default 10 messages per 10 s.
      SWITCHBOARD_RATE_LIMITS__MESSAGE__LIMIT: '100000',
      SWITCHBOARD_RATE_LIMITS__MESSAGE__WINDOW_SECS: '10',
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

  test(
    'INVALID_PAYLOAD for malformed payloads of every chat event, and nothing changes',
    T,
    withStderr(srv, async () => {
      const a = randomId('inv-a');
      const b = randomId('inv-b');
      const sa = await dev(server, a, 'Ann');
      const sb = await dev(server, b, 'Ben');
      const g = await createGroup(sa, [b], 'Invalids');
      const c = g.id;
      const m = await send(sa, c, 'the one message');
      const long = 'x'.repeat(129);
      const cases = [
        ['conversation:create', undefined],
        ['conversation:create', 'group'],
        ['conversation:create', {}],
        ['conversation:create', { type: 'group' }],
        ['conversation:create', { type: 'channel', memberIds: [b] }],
        ['conversation:create', { type: 'group', memberIds: b }],
        ['conversation:create', { type: 'group', memberIds: [1] }],
        ['conversation:create', { type: 'group', memberIds: [long] }],
        ['conversation:create', { type: 'group', memberIds: [b], name: 5 }],
        ['conversation:create', { type: 'group', memberIds: [b], name: 'n'.repeat(129) }],
        ['conversation:create', { type: 'direct', memberIds: [] }],
        ['conversation:create', { type: 'direct', memberIds: [b, randomId('third')] }],
        ['conversation:create', { type: 'direct', memberIds: [a] }],
        ['conversation:list', 'all'],
        ['conversation:list', [1]],
        ['conversation:add-members', {}],
        ['conversation:add-members', { conversationId: c }],
        ['conversation:add-members', { conversationId: c, memberIds: 'x' }],
        ['conversation:add-members', { conversationId: c, memberIds: [] }],
        ['conversation:add-members', { conversationId: 7, memberIds: ['x'] }],
        ['conversation:add-members', { memberIds: ['x'] }],
        ['conversation:remove-member', { conversationId: c }],
        ['conversation:remove-member', { conversationId: c, userId: 3 }],
        ['conversation:remove-member', { userId: b }],
        ['conversation:leave', {}],
        ['conversation:leave', { conversationId: null }],
        ['conversation:leave', { conversationId: long }],
        ['conversation:leave', undefined],
        ['conversation:rename', { conversationId: c }],
        ['conversation:rename', { conversationId: c, name: 12 }],
        ['conversation:rename', { conversationId: c, name: 'n'.repeat(129) }],
        ['conversation:rename', { name: 'x' }],
        ['conversation:delete', {}],
        ['conversation:delete', { conversationId: ['x'] }],
        ['message:send', undefined],
        ['message:send', 'hello'],
        ['message:send', { content: 'no conversation' }],
        ['message:send', { conversationId: c }],
        ['message:send', { conversationId: c, content: 42 }],
        ['message:send', { conversationId: c, content: null }],
        ['message:send', { conversationId: 5, content: 'x' }],
        ['message:send', { conversationId: long, content: 'x' }],
        ['message:send', { conversationId: c, content: 'x'.repeat(8193) }],
        ['message:send', { conversationId: c, content: 'é'.repeat(4097) }], // 8194 bytes, 4097 chars
        ['message:send', { conversationId: c, content: '' }],
        ['message:send', { conversationId: c, content: '   \n\t ' }],
        ['message:send', { conversationId: c, content: 'x', replyTo: 9 }],
        ['message:send', { conversationId: c, content: 'x', clientMessageId: 9 }],
        ['message:send', { conversationId: c, content: 'x', clientMessageId: long }],
        ['message:edit', { conversationId: c, messageId: m.id }],
        ['message:edit', { conversationId: c, content: 'new' }],
        ['message:edit', { messageId: m.id, content: 'new' }],
        ['message:edit', { conversationId: c, messageId: m.id, content: 'y'.repeat(8193) }],
        ['message:edit', { conversationId: c, messageId: m.id, content: ' ' }],
        ['message:edit', { conversationId: c, messageId: m.id, content: {} }],
        ['message:delete', { conversationId: c }],
        ['message:delete', { messageId: m.id }],
        ['message:delete', { conversationId: c, messageId: 1 }],
        ['message:history', {}],
        ['message:history', undefined],
        ['message:history', { conversationId: c, limit: 'all' }],
        ['message:history', { conversationId: c, limit: -1 }],
        ['message:history', { conversationId: c, limit: 2.5 }],
        ['message:history', { conversationId: c, before: 3 }],
        ['message:history', { conversationId: c, after: true }],
        ['message:react', { conversationId: c, messageId: m.id }],
        ['message:react', { conversationId: c, emoji: '👍' }],
        ['message:react', { conversationId: c, messageId: m.id, emoji: 7 }],
        ['message:react', { conversationId: c, messageId: m.id, emoji: '' }],
        ['message:react', { conversationId: c, messageId: m.id, emoji: 'x'.repeat(33) }],
        ['message:react', { conversationId: c, messageId: m.id, emoji: '😀'.repeat(9) }], // 36 bytes
        ['message:react', { conversationId: c, messageId: m.id, emoji: 'a b' }],
        ['message:read', {}],
        ['message:read', { conversationId: 1 }],
        ['unread:get', 'x'],
        ['typing:start', {}],
        ['typing:start', { conversationId: 4 }],
        ['typing:stop', {}],
        ['typing:stop', undefined],
      ];
      const wrong = [];
      for (const [event, payload] of cases) {
        const ack = await emitAck(sa, event, payload);
        if (!(ack?.success === false && ack.code === 'INVALID_PAYLOAD' && typeof ack.error === 'string')) {
          wrong.push(`${event} ${JSON.stringify(payload)?.slice(0, 80)} → ${JSON.stringify(ack)?.slice(0, 200)}`);
        }
      }
      assert.deepEqual(wrong, [], 'every malformed payload answers INVALID_PAYLOAD');

      // The boundaries are accepted: exactly 8 KB of content, a 32-byte emoji.
      const big = await send(sa, c, 'é'.repeat(4096)); // 8192 bytes
      assert.equal(big.content.length, 4096);
      const emoji32 = '😀'.repeat(8);
      const r = await call(sa, 'message:react', { conversationId: c, messageId: m.id, emoji: emoji32 });
      assert.deepEqual(r.reactions, [{ emoji: emoji32, userIds: [a], count: 1 }]);

      // Nothing else changed: one group, two messages, no edit or deletion, nobody typing.
      const h = await history(sa, c, {});
      assert.deepEqual(ids(h.messages), [m.id, big.id]);
      assert.equal(h.messages[0].content, 'the one message');
      assert.equal(h.messages[0].editedAt, undefined);
      assert.equal(h.messages[0].deleted, undefined);
      const list = (await call(sa, 'conversation:list', {})).conversations;
      assert.deepEqual(list.map((x) => x.id), [c], 'no conversation was created');
      assert.equal(list[0].name, 'Invalids', 'not renamed');
      assert.deepEqual(sorted(list[0].memberIds), sorted([a, b]), 'members unchanged');
      await expectNone(sb, 'typing', { predicate: inConv(c), ms: 300 });
      assert.equal(eventsOf(sb, 'message:new', inConv(c)).length, 2, 'only the two valid messages were broadcast');
      sa.close();
      sb.close();
    }),
  );

  test(
    'history limit: default 50, over 100 is clamped to 100, 0 is refused or clamped to 1',
    T,
    withStderr(srv, async () => {
      const a = randomId('lim');
      const sa = await dev(server, a, 'Lim');
      const c = (await createGroup(sa, [], 'Limits')).id;
      const sent = [];
      for (let i = 0; i < 105; i++) sent.push(await send(sa, c, `m${i}`));
      const d = await history(sa, c, {});
      assert.equal(d.messages.length, 50, 'default page is 50');
      assert.deepEqual(ids(d.messages), ids(sent.slice(-50)));
      assert.equal(d.hasMore, true);
      const big = await history(sa, c, { limit: 1000 });
      assert.equal(big.messages.length, 100, 'limit 1000 is clamped to the maximum, 100');
      assert.deepEqual(ids(big.messages), ids(sent.slice(-100)));
      assert.equal(big.hasMore, true);
      const zero = await emitAck(sa, 'message:history', { conversationId: c, limit: 0 });
      if (zero?.success) {
        assert.deepEqual(ids(zero.messages), [sent.at(-1).id], `limit 0 clamps to 1: ${JSON.stringify(zero).slice(0, 300)}`);
        assert.equal(zero.hasMore, true);
      } else {
        failed(zero, 'INVALID_PAYLOAD', 'limit 0');
      }
      sa.close();
    }),
  );

  test(
    'a direct conversation is unique per pair: created twice, from either side, concurrently',
    T,
    withStderr(srv, async () => {
      const a = randomId('da');
      const b = randomId('db');
      const sa = await dev(server, a, 'Dana');
      const sb = await dev(server, b, 'Dirk');
      const t0 = Date.now();
      const ack = await call(sa, 'conversation:create', { type: 'direct', memberIds: [b] });
      const c = ack.conversation;
      assert.equal(typeof c.id, 'string');
      assert.equal(c.type, 'direct');
      assert.deepEqual(sorted(c.memberIds), sorted([a, b]));
      assert.equal(c.name, undefined, 'a direct conversation has no name');
      assert.equal(typeof c.createdAt, 'number');
      assert.ok(c.createdAt >= t0 - 2000 && c.createdAt <= Date.now() + 2000, 'createdAt in ms');

      const upd = await waitForEvent(sb, 'conversation:updated', { predicate: convUpdated(c.id) });
      assert.deepEqual(sorted(upd.conversation.memberIds), sorted([a, b]));

      const again = await createDirect(sa, b);
      assert.equal(again.id, c.id, 'creating it again returns the same conversation');
      const fromB = await createDirect(sb, a);
      assert.equal(fromB.id, c.id, 'creating it from the other side returns the same conversation');
      const dup = await call(sa, 'conversation:create', { type: 'direct', memberIds: [b, b, a] });
      assert.equal(dup.conversation.id, c.id, 'duplicates and the creator in memberIds are ignored');

      // Concurrently, a fresh pair, from both sides at once.
      const x = randomId('dx');
      const y = randomId('dy');
      const sx = await dev(server, x, 'Xav');
      const sy = await dev(server, y, 'Yan');
      const results = await Promise.all([
        ...Array.from({ length: 4 }, () => emitAck(sx, 'conversation:create', { type: 'direct', memberIds: [y] }, 10_000)),
        ...Array.from({ length: 4 }, () => emitAck(sy, 'conversation:create', { type: 'direct', memberIds: [x] }, 10_000)),
      ]);
      results.forEach((r, i) => ok(r, `concurrent create #${i}`));
      assert.equal(new Set(results.map((r) => r.conversation.id)).size, 1, `one conversation: ${results.map((r) => r.conversation.id)}`);

      for (const s of [sa, sb]) {
        const list = (await call(s, 'conversation:list', {})).conversations.filter((x) => x.type === 'direct');
        assert.deepEqual(list.map((x) => x.id), [c.id], 'one direct conversation in the list');
      }
      const lx = (await call(sx, 'conversation:list', {})).conversations;
      assert.equal(lx.length, 1, JSON.stringify(lx));

      // Direct conversations cannot be renamed or have their members changed.
      failed(await emitAck(sa, 'conversation:rename', { conversationId: c.id, name: 'Nope' }), 'FORBIDDEN', 'rename direct');
      failed(await emitAck(sa, 'conversation:add-members', { conversationId: c.id, memberIds: [x] }), 'FORBIDDEN', 'add to direct');
      failed(await emitAck(sa, 'conversation:remove-member', { conversationId: c.id, userId: b }), 'FORBIDDEN', 'remove from direct');
      closeAllSockets();
    }),
  );

  test(
    'groups: create, add-members, remove-member, leave, rename; conversation:updated to members; a removed member stops receiving message:new',
    T,
    withStderr(srv, async () => {
      const owner = randomId('go');
      const m1 = randomId('gm1');
      const m2 = randomId('gm2');
      const m3 = randomId('gm3');
      const stranger = randomId('gs');
      const so = await dev(server, owner, 'Olga');
      const s1 = await dev(server, m1, 'Mia');
      const s2 = await dev(server, m2, 'Max');
      const s3 = await dev(server, m3, 'Mo');
      const ss = await dev(server, stranger, 'Stan');

      const created = await call(so, 'conversation:create', { type: 'group', memberIds: [m1, m2], name: 'Team' });
      const g = created.conversation;
      assert.equal(g.type, 'group');
      assert.equal(g.name, 'Team');
      assert.deepEqual(sorted(g.memberIds), sorted([owner, m1, m2]));
      for (const s of [so, s1, s2]) {
        const u = await waitForEvent(s, 'conversation:updated', { predicate: convUpdated(g.id) });
        assert.equal(u.conversation.name, 'Team');
      }
      await expectNone(s3, 'conversation:updated', { predicate: convUpdated(g.id), ms: 300, why: 'to a non-member' });

      // A plain member may not manage the group; a stranger may not touch it at all.
      failed(await emitAck(s1, 'conversation:add-members', { conversationId: g.id, memberIds: [m3] }), 'FORBIDDEN', 'member adds');
      failed(await emitAck(s1, 'conversation:rename', { conversationId: g.id, name: 'Mine' }), 'FORBIDDEN', 'member renames');
      failed(await emitAck(s1, 'conversation:remove-member', { conversationId: g.id, userId: m2 }), 'FORBIDDEN', 'member removes');
      failed(await emitAck(s1, 'conversation:remove-member', { conversationId: g.id, userId: owner }), 'FORBIDDEN', 'remove the creator');
      failed(await emitAck(ss, 'message:send', { conversationId: g.id, content: 'hi' }), 'FORBIDDEN', 'stranger sends');
      failed(await emitAck(ss, 'message:history', { conversationId: g.id }), 'FORBIDDEN', 'stranger reads');
      failed(await emitAck(ss, 'conversation:leave', { conversationId: g.id }), 'FORBIDDEN', 'stranger leaves');
      failed(await emitAck(ss, 'typing:start', { conversationId: g.id }), 'FORBIDDEN', 'stranger types');
      failed(await emitAck(ss, 'message:read', { conversationId: g.id }), 'FORBIDDEN', 'stranger reads marks');
      failed(await emitAck(so, 'message:send', { conversationId: randomId('nope'), content: 'hi' }), 'NOT_FOUND', 'unknown conversation');

      // Add a member: everyone (the new one included) hears it; the new one gets messages.
      const added = await call(so, 'conversation:add-members', { conversationId: g.id, memberIds: [m3, m1] });
      assert.deepEqual(sorted(added.conversation.memberIds), sorted([owner, m1, m2, m3]));
      for (const s of [so, s1, s2, s3]) {
        await waitForEvent(s, 'conversation:updated', { predicate: convUpdated(g.id, (c) => c.memberIds.includes(m3)) });
      }
      const hello = await send(so, g.id, 'welcome Mo');
      for (const s of [so, s1, s2, s3]) await waitForEvent(s, 'message:new', { predicate: msgId(hello.id) });

      // Rename: {success} and conversation:updated with the new name.
      const ren = await emitAck(so, 'conversation:rename', { conversationId: g.id, name: 'Team 2' });
      assert.deepEqual(ren, { success: true });
      for (const s of [so, s1, s2, s3]) {
        await waitForEvent(s, 'conversation:updated', { predicate: convUpdated(g.id, (c) => c.name === 'Team 2') });
      }

      // Remove m2: the removed user hears it too, and then gets no more messages.
      const removed = await call(so, 'conversation:remove-member', { conversationId: g.id, userId: m2 });
      assert.deepEqual(sorted(removed.conversation.memberIds), sorted([owner, m1, m3]));
      for (const s of [so, s1, s2, s3]) {
        await waitForEvent(s, 'conversation:updated', { predicate: convUpdated(g.id, (c) => !c.memberIds.includes(m2)) });
      }
      const afterRemoval = await send(s1, g.id, 'm2 is gone');
      for (const s of [so, s1, s3]) await waitForEvent(s, 'message:new', { predicate: msgId(afterRemoval.id) });
      failed(await emitAck(s2, 'message:send', { conversationId: g.id, content: 'still here?' }), 'FORBIDDEN', 'removed member sends');
      failed(await emitAck(s2, 'message:history', { conversationId: g.id }), 'FORBIDDEN', 'removed member reads');
      assert.ok(!(await call(s2, 'conversation:list', {})).conversations.some((x) => x.id === g.id), 'gone from the removed member\'s list');
      // Also a fresh socket of the removed user does not join the room.
      const s2b = await dev(server, m2, 'Max', 'd2');
      const later = await send(so, g.id, 'later');
      await waitForEvent(s1, 'message:new', { predicate: msgId(later.id) });
      await expectNone(s2, 'message:new', { predicate: msgId(afterRemoval.id), ms: 0, why: 'to the removed member' });
      await expectNone(s2, 'message:new', { predicate: msgId(later.id), ms: 500, why: 'to the removed member' });
      await expectNone(s2b, 'message:new', { predicate: msgId(later.id), ms: 0, why: "to the removed member's new device" });

      // Leave: {success}; the leaver hears conversation:updated and stops receiving.
      assert.deepEqual(await emitAck(s3, 'conversation:leave', { conversationId: g.id }), { success: true });
      for (const s of [so, s1, s3]) {
        await waitForEvent(s, 'conversation:updated', { predicate: convUpdated(g.id, (c) => !c.memberIds.includes(m3)) });
      }
      const afterLeave = await send(so, g.id, 'bye Mo');
      await waitForEvent(s1, 'message:new', { predicate: msgId(afterLeave.id) });
      await expectNone(s3, 'message:new', { predicate: msgId(afterLeave.id), ms: 500, why: 'to the member who left' });
      failed(await emitAck(s3, 'message:history', { conversationId: g.id }), 'FORBIDDEN', 'leaver reads');

      const listed = (await call(so, 'conversation:list', {})).conversations.find((x) => x.id === g.id);
      assert.ok(listed, 'in the owner\'s list');
      assert.equal(listed.type, 'group');
      assert.equal(listed.name, 'Team 2');
      assert.deepEqual(sorted(listed.memberIds), sorted([owner, m1]));
      assert.equal(listed.lastMessage?.id, afterLeave.id, 'lastMessage is the newest');
      assert.equal(listed.createdAt, g.createdAt);
      assert.equal(listed.unreadCount, 1, "one message from another member (own messages are not unread)");
      closeAllSockets();
    }),
  );

  test(
    'message:new reaches every member device, the sender\'s included; an event without ack is still processed',
    T,
    withStderr(srv, async () => {
      const a = randomId('fa');
      const b = randomId('fb');
      const a1 = await dev(server, a, 'Fay', 'phone');
      const a2 = await dev(server, a, 'Fay', 'laptop');
      const b1 = await dev(server, b, 'Finn', 'phone');
      const b2 = await dev(server, b, 'Finn', 'laptop');
      const c = (await createDirect(a1, b)).id;
      const t0 = Date.now();
      const ack = await call(a1, 'message:send', { conversationId: c, content: 'to all devices', clientMessageId: 'cm-1' });
      const m = ack.message;
      assertMessageShape(m, 'ack message');
      assert.equal(m.conversationId, c);
      assert.equal(m.senderId, a);
      assert.equal(m.senderName, 'Fay');
      assert.equal(m.content, 'to all devices');
      assert.equal(m.clientMessageId, 'cm-1');
      assert.deepEqual(m.reactions, []);
      assert.ok(m.createdAt >= t0 - 2000);
      for (const s of [a1, a2, b1, b2]) {
        const got = await waitForEvent(s, 'message:new', { predicate: msgId(m.id) });
        assert.deepEqual(got.message, m, 'message:new carries the acked message');
      }
      await sleep(300);
      for (const s of [a1, a2, b1, b2]) assert.equal(eventsOf(s, 'message:new', msgId(m.id)).length, 1, 'exactly once per device');

      // Identity fields in the payload are ignored.
      const spoof = await send(b1, c, 'who am I', { senderId: a, senderName: 'Fake' });
      assert.equal(spoof.senderId, b);
      assert.equal(spoof.senderName, 'Finn');

      // No ack callback: processed anyway.
      b2.emit('message:send', { conversationId: c, content: 'fire and forget' });
      const ff = await waitForEvent(a2, 'message:new', { predicate: (d) => d?.message?.content === 'fire and forget' });
      assert.equal(ff.message.senderId, b);
      closeAllSockets();
    }),
  );

  test(
    'replies, edits and deletions: sender only, message:edited / message:deleted, history reflects them',
    T,
    withStderr(srv, async () => {
      const a = randomId('ra');
      const b = randomId('rb');
      const sa = await dev(server, a, 'Rita');
      const sb = await dev(server, b, 'Rob');
      const c = (await createGroup(sa, [b], 'Replies')).id;
      const other = (await createGroup(sa, [b], 'Other')).id;
      const orig = await send(sa, c, 'original message');
      const long = await send(sa, c, 'L'.repeat(500));
      const foreign = await send(sa, other, 'elsewhere');

      const reply = await send(sb, c, 'a reply', { replyTo: orig.id });
      assert.deepEqual(reply.replyTo, { id: orig.id, senderName: 'Rita', content: 'original message' });
      const got = await waitForEvent(sa, 'message:new', { predicate: msgId(reply.id) });
      assert.deepEqual(got.message.replyTo, reply.replyTo);
      const replyLong = await send(sb, c, 'reply to long', { replyTo: long.id });
      assert.equal(replyLong.replyTo.id, long.id);
      // The preview is cut at 200 characters (docs/protocol.md), the server adds an ellipsis.
      const preview = replyLong.replyTo.content.replace(/…$/, '');
      assert.ok(/^L+$/.test(preview) && preview.length === 200, `the preview is the first 200 characters: ${JSON.stringify(replyLong.replyTo.content)}`);
      failed(await emitAck(sb, 'message:send', { conversationId: c, content: 'x', replyTo: foreign.id }), 'NOT_FOUND', 'reply to another conversation');
      failed(await emitAck(sb, 'message:send', { conversationId: c, content: 'x', replyTo: randomId('none') }), 'NOT_FOUND', 'reply to nothing');

      // Edit: sender only.
      failed(await emitAck(sb, 'message:edit', { conversationId: c, messageId: orig.id, content: 'hijack' }), 'FORBIDDEN', 'edit by another');
      failed(await emitAck(sb, 'message:delete', { conversationId: c, messageId: orig.id }), 'FORBIDDEN', 'delete by another');
      failed(await emitAck(sa, 'message:edit', { conversationId: c, messageId: randomId('none'), content: 'x' }), 'NOT_FOUND', 'edit unknown');
      failed(await emitAck(sa, 'message:edit', { conversationId: c, messageId: foreign.id, content: 'x' }), 'NOT_FOUND', 'edit with the wrong conversation');
      const t0 = Date.now();
      const edited = (await call(sa, 'message:edit', { conversationId: c, messageId: orig.id, content: 'edited message' })).message;
      assert.equal(edited.id, orig.id);
      assert.equal(edited.content, 'edited message');
      assert.equal(typeof edited.editedAt, 'number');
      assert.ok(edited.editedAt >= t0 - 2000, 'editedAt in ms');
      assert.equal(edited.createdAt, orig.createdAt, 'createdAt unchanged');
      for (const s of [sa, sb]) {
        const e = await waitForEvent(s, 'message:edited', { predicate: msgId(orig.id) });
        assert.equal(e.message.content, 'edited message');
        assert.equal(e.message.editedAt, edited.editedAt);
      }

      // Delete: sender only; deleting again answers it again without a second event.
      const del = (await call(sa, 'message:delete', { conversationId: c, messageId: long.id })).message;
      assert.equal(del.id, long.id);
      assert.equal(del.deleted, true);
      assert.equal(del.content, '');
      for (const s of [sa, sb]) {
        const d = await waitForEvent(s, 'message:deleted', { predicate: (x) => x?.messageId === long.id });
        assert.deepEqual(d, { conversationId: c, messageId: long.id });
      }
      const again = (await call(sa, 'message:delete', { conversationId: c, messageId: long.id })).message;
      assert.equal(again.deleted, true);
      await sleep(400);
      assert.equal(eventsOf(sb, 'message:deleted', (x) => x?.messageId === long.id).length, 1, 'one message:deleted');
      failed(await emitAck(sa, 'message:edit', { conversationId: c, messageId: long.id, content: 'resurrect' }), 'CONFLICT', 'edit a deleted message');
      failed(await emitAck(sb, 'message:react', { conversationId: c, messageId: long.id, emoji: '👍' }), 'CONFLICT', 'react to a deleted message');

      const h = (await history(sb, c, {})).messages;
      assert.deepEqual(ids(h), [orig.id, long.id, reply.id, replyLong.id]);
      assert.equal(h[0].content, 'edited message');
      assert.equal(h[0].editedAt, edited.editedAt);
      assert.equal(h[1].deleted, true);
      assert.equal(h[1].content, '');
      assert.deepEqual(h[2].replyTo, { id: orig.id, senderName: 'Rita', content: h[2].replyTo.content });
      const replyToDeleted = await send(sb, c, 'reply to a deleted one', { replyTo: long.id });
      assert.equal(replyToDeleted.replyTo?.id, long.id);
      assert.equal(replyToDeleted.replyTo.content, '', 'the preview of a deleted message is empty');
      closeAllSockets();
    }),
  );

  test(
    'reactions toggle; message:reaction-updated to the conversation; history carries them',
    T,
    withStderr(srv, async () => {
      const a = randomId('xa');
      const b = randomId('xb');
      const sa = await dev(server, a, 'Rex');
      const sb = await dev(server, b, 'Ray');
      const c = (await createGroup(sa, [b], 'Reactions')).id;
      const m = await send(sa, c, 'react to me');
      const upd = (reactions) => (d) => d?.messageId === m.id && JSON.stringify(d.reactions) === JSON.stringify(reactions);

      let r = await call(sa, 'message:react', { conversationId: c, messageId: m.id, emoji: '👍' });
      assert.deepEqual(r.reactions, [{ emoji: '👍', userIds: [a], count: 1 }]);
      for (const s of [sa, sb]) {
        const e = await waitForEvent(s, 'message:reaction-updated', { predicate: upd(r.reactions) });
        assert.deepEqual(e, { conversationId: c, messageId: m.id, reactions: r.reactions });
      }
      r = await call(sb, 'message:react', { conversationId: c, messageId: m.id, emoji: '👍' });
      assert.equal(r.reactions.length, 1);
      assert.deepEqual(sorted(r.reactions[0].userIds), sorted([a, b]));
      assert.equal(r.reactions[0].count, 2);
      r = await call(sb, 'message:react', { conversationId: c, messageId: m.id, emoji: '🎉' });
      const byEmoji = Object.fromEntries(r.reactions.map((x) => [x.emoji, x]));
      assert.deepEqual(Object.keys(byEmoji).sort(), ['👍', '🎉'].sort());
      assert.deepEqual(byEmoji['🎉'], { emoji: '🎉', userIds: [b], count: 1 });

      // Toggle off.
      r = await call(sa, 'message:react', { conversationId: c, messageId: m.id, emoji: '👍' });
      const after1 = Object.fromEntries(r.reactions.map((x) => [x.emoji, x]));
      assert.deepEqual(after1['👍'], { emoji: '👍', userIds: [b], count: 1 });
      await waitForEvent(sa, 'message:reaction-updated', { predicate: upd(r.reactions) });
      r = await call(sb, 'message:react', { conversationId: c, messageId: m.id, emoji: '👍' });
      r = await call(sb, 'message:react', { conversationId: c, messageId: m.id, emoji: '🎉' });
      assert.deepEqual(r.reactions, [], 'all toggled off');
      await waitForEvent(sa, 'message:reaction-updated', { predicate: upd([]) });

      r = await call(sb, 'message:react', { conversationId: c, messageId: m.id, emoji: '❤️' });
      const h = (await history(sa, c, {})).messages;
      assert.deepEqual(h[0].reactions, [{ emoji: '❤️', userIds: [b], count: 1 }], 'history carries the reactions');
      failed(await emitAck(sb, 'message:react', { conversationId: c, messageId: randomId('none'), emoji: '👍' }), 'NOT_FOUND', 'react to nothing');
      closeAllSockets();
    }),
  );

  test(
    'history paging over 160 messages (recent cache and database): before, after, both, limit, hasMore, ascending; NOT_FOUND cursor',
    T,
    withStderr(srv, async () => {
      const a = randomId('ha');
      const b = randomId('hb');
      const sa = await dev(server, a, 'Hal');
      const sb = await dev(server, b, 'Hub');
      const c = (await createGroup(sa, [b], 'History')).id;
      const N = 160;
      const sent = [];
      for (let i = 0; i < N; i++) sent.push(await send(i % 3 === 0 ? sb : sa, c, `msg ${i}`));
      const all = ids(sent);

      const newest = await history(sb, c, { limit: 100 });
      assert.deepEqual(ids(newest.messages), all.slice(-100), 'the newest 100 (the cache)');
      assert.equal(newest.hasMore, true);
      for (const limit of [1, 7, 30, 50, 100]) {
        const back = await fullHistoryBackwards(sb, c, limit);
        assert.deepEqual(ids(back), all, `backwards with limit ${limit}: every message once, in order`);
        const fwd = await fullHistoryForwards(sa, c, all[0], limit);
        assert.deepEqual(ids(fwd), all.slice(1), `forwards with limit ${limit}`);
      }
      assert.deepEqual(ids((await history(sa, c, { limit: 100, before: all[0] })).messages), [], 'nothing before the first');
      const last = await history(sa, c, { after: all.at(-1) });
      assert.deepEqual(last.messages, [], 'nothing after the last');
      assert.equal(last.hasMore, false);

      // Old region (database) and recent region (cache).
      let firstEnd;
      for (const [lo, hi] of [
        [10, 40],
        [120, 150],
        [40, 130],
      ]) {
        const exact = await history(sa, c, { after: all[lo], before: all[hi], limit: 100 });
        assert.deepEqual(ids(exact.messages), all.slice(lo + 1, hi), `between ${lo} and ${hi}`);
        assert.equal(exact.hasMore, false, `nothing more between ${lo} and ${hi}`);
        const page = await history(sa, c, { after: all[lo], before: all[hi], limit: 5 });
        assert.equal(page.messages.length, 5, `between ${lo} and ${hi}, limit 5`);
        assert.equal(page.hasMore, true, `more between ${lo} and ${hi}`);
        const got = ids(page.messages);
        const fromLow = all.slice(lo + 1, lo + 6);
        const fromHigh = all.slice(hi - 5, hi);
        assert.ok(
          JSON.stringify(got) === JSON.stringify(fromLow) || JSON.stringify(got) === JSON.stringify(fromHigh),
          `between ${lo} and ${hi}: a contiguous end of the range (got indexes ${got.map((id) => all.indexOf(id))})`,
        );
        const end = JSON.stringify(got) === JSON.stringify(fromLow) ? 'after' : 'before';
        if (firstEnd === undefined) firstEnd = end;
        else assert.equal(end, firstEnd, `the same end of a bounded range is returned from the cache and from the database (${lo}-${hi})`);
      }

      // The contents match what was sent.
      const h = await history(sa, c, { before: all[20], limit: 3 });
      assert.deepEqual(
        h.messages.map((m) => [m.content, m.senderId]),
        [17, 18, 19].map((i) => [`msg ${i}`, i % 3 === 0 ? b : a]),
      );
      assert.equal(h.hasMore, true);
      const first = await history(sa, c, { before: all[3], limit: 10 });
      assert.deepEqual(ids(first.messages), all.slice(0, 3));
      assert.equal(first.hasMore, false, 'hasMore false at the start');

      failed(await emitAck(sa, 'message:history', { conversationId: c, before: randomId('none') }), 'NOT_FOUND', 'unknown before cursor');
      failed(await emitAck(sa, 'message:history', { conversationId: c, after: randomId('none') }), 'NOT_FOUND', 'unknown after cursor');
      const other = (await createGroup(sa, [], 'Other')).id;
      const otherMsg = await send(sa, other, 'not here');
      failed(await emitAck(sa, 'message:history', { conversationId: c, after: otherMsg.id }), 'NOT_FOUND', 'cursor of another conversation');
      closeAllSockets();
    }),
  );

  test(
    'catch-up with `after` following a reconnect',
    T,
    withStderr(srv, async () => {
      const a = randomId('ca');
      const b = randomId('cb');
      const sa = await dev(server, a, 'Cat');
      let sb = await dev(server, b, 'Cub');
      const c = (await createGroup(sa, [b], 'Catch-up')).id;
      for (let i = 0; i < 3; i++) await send(sa, c, `before ${i}`);
      const seen = await eventually(async () => {
        const got = eventsOf(sb, 'message:new', inConv(c));
        assert.equal(got.length, 3);
        return got;
      });
      const lastSeen = seen.at(-1).message.id;
      sb.close();
      await sleep(200);
      const missed = [];
      for (let i = 0; i < 12; i++) missed.push(await send(sa, c, `missed ${i}`));

      sb = await dev(server, b, 'Cub');
      const page1 = await history(sb, c, { after: lastSeen, limit: 5 });
      assert.deepEqual(ids(page1.messages), ids(missed.slice(0, 5)));
      assert.equal(page1.hasMore, true);
      const rest = await fullHistoryForwards(sb, c, page1.messages.at(-1).id, 5);
      assert.deepEqual(ids(rest), ids(missed.slice(5)));
      const whole = await history(sb, c, { after: lastSeen });
      assert.deepEqual(ids(whole.messages), ids(missed));
      assert.equal(whole.hasMore, false);
      // The reconnected socket is back in the room.
      const live = await send(sa, c, 'live again');
      await waitForEvent(sb, 'message:new', { predicate: msgId(live.id) });
      const unread = (await call(sb, 'unread:get', {})).counts;
      assert.equal(unread[c], 16, `unread counts every message from others: ${JSON.stringify(unread)}`);
      closeAllSockets();
    }),
  );

  test(
    'clientMessageId: a retry answers the same message; one message:new, one history entry',
    T,
    withStderr(srv, async () => {
      const a = randomId('ia');
      const b = randomId('ib');
      const sa = await dev(server, a, 'Ida');
      const sb = await dev(server, b, 'Ivo');
      const c = (await createGroup(sa, [b], 'Idempotency')).id;
      const c2 = (await createGroup(sa, [b], 'Idempotency 2')).id;
      const first = await send(sa, c, 'once', { clientMessageId: 'retry-1' });
      const second = await send(sa, c, 'once', { clientMessageId: 'retry-1' });
      assert.deepEqual(second, first, 'the retry answers the original message');
      // Concurrent retries.
      const burst = await Promise.all(
        Array.from({ length: 6 }, () => emitAck(sa, 'message:send', { conversationId: c, content: 'burst', clientMessageId: 'retry-2' }, 10_000)),
      );
      burst.forEach((x, i) => ok(x, `concurrent retry #${i}`));
      assert.equal(new Set(burst.map((x) => x.message.id)).size, 1, 'concurrent retries: one message');
      // The same key from another sender is another message.
      const theirs = await send(sb, c, 'mine too', { clientMessageId: 'retry-1' });
      assert.notEqual(theirs.id, first.id);
      // The same key in another conversation (same sender) answers the original (documented).
      const elsewhere = await emitAck(sa, 'message:send', { conversationId: c2, content: 'elsewhere', clientMessageId: 'retry-1' });
      ok(elsewhere, 'same key, other conversation');
      assert.equal(elsewhere.message.id, first.id, 'a clientMessageId is per sender, across conversations');

      await sleep(600);
      for (const s of [sa, sb]) {
        assert.equal(eventsOf(s, 'message:new', msgId(first.id)).length, 1, 'one message:new for the retried message');
        assert.equal(eventsOf(s, 'message:new', (d) => d?.message?.clientMessageId === 'retry-2').length, 1, 'one message:new for the burst');
      }
      const h = (await history(sb, c, {})).messages;
      assert.deepEqual(h.map((m) => [m.senderId, m.clientMessageId]), [
        [a, 'retry-1'],
        [a, 'retry-2'],
        [b, 'retry-1'],
      ]);
      assert.deepEqual((await history(sb, c2, {})).messages, [], 'nothing in the other conversation');
      assert.equal((await call(sb, 'unread:get', {})).counts[c], 2, 'a retry is not counted twice');
      closeAllSockets();
    }),
  );

  test(
    'unread: unread:updated to other members, unread:get, message:read resets and sends conversation:read',
    T,
    withStderr(srv, async () => {
      const a = randomId('ua');
      const b = randomId('ub');
      const d = randomId('ud');
      const sa = await dev(server, a, 'Una');
      const sb1 = await dev(server, b, 'Udo', 'phone');
      const sb2 = await dev(server, b, 'Udo', 'laptop');
      const sd = await dev(server, d, 'Uli');
      const c = (await createGroup(sa, [b, d], 'Unread')).id;
      const c2 = (await createDirect(sa, b)).id;

      assert.deepEqual(await emitAck(sb1, 'unread:get', {}), { success: true, counts: {} }, 'nothing unread yet');
      assert.deepEqual(await emitAck(sb1, 'unread:get'), { success: true, counts: {} }, 'without a payload');
      for (let i = 1; i <= 3; i++) {
        await send(sa, c, `u${i}`);
        for (const s of [sb1, sb2]) {
          const u = await waitForEvent(s, 'unread:updated', { predicate: (x) => x?.conversationId === c && x.count === i });
          assert.deepEqual(u, { conversationId: c, count: i });
        }
      }
      await send(sa, c2, 'direct one');
      await waitForEvent(sb1, 'unread:updated', { predicate: (x) => x?.conversationId === c2 && x.count === 1 });
      await send(sb1, c, 'from Udo');
      await waitForEvent(sd, 'unread:updated', { predicate: (x) => x?.conversationId === c && x.count === 4 });
      await expectNone(sa, 'unread:updated', { predicate: (x) => x?.conversationId === c && x.count > 1, ms: 0 });
      await expectNone(sb1, 'unread:updated', { predicate: (x) => x?.conversationId === c && x.count === 4, ms: 400, why: 'the sender\'s own message is not unread' });

      assert.deepEqual((await call(sb1, 'unread:get', {})).counts, { [c]: 3, [c2]: 1 });
      assert.deepEqual((await call(sa, 'unread:get', {})).counts, { [c]: 1 });
      assert.deepEqual((await call(sd, 'unread:get', {})).counts, { [c]: 4 });
      const listB = (await call(sb2, 'conversation:list', {})).conversations;
      assert.equal(listB.find((x) => x.id === c)?.unreadCount, 3);
      assert.equal(listB.find((x) => x.id === c2)?.unreadCount, 1);

      const t0 = Date.now();
      assert.deepEqual(await emitAck(sb1, 'message:read', { conversationId: c }), { success: true });
      for (const s of [sa, sd, sb1, sb2]) {
        const r = await waitForEvent(s, 'conversation:read', { predicate: (x) => x?.conversationId === c && x.userId === b });
        assert.equal(typeof r.readAt, 'number');
        assert.ok(r.readAt >= t0 - 2000 && r.readAt <= Date.now() + 2000, 'readAt in ms');
      }
      for (const s of [sb1, sb2]) await waitForEvent(s, 'unread:updated', { predicate: (x) => x?.conversationId === c && x.count === 0 });
      await expectNone(sd, 'unread:updated', { predicate: (x) => x?.conversationId === c && x.count === 0, ms: 300, why: "someone else's read" });
      assert.deepEqual((await call(sb1, 'unread:get', {})).counts, { [c2]: 1 }, 'only non-zero counts');
      assert.equal((await call(sb1, 'conversation:list', {})).conversations.find((x) => x.id === c)?.unreadCount, 0);
      assert.deepEqual((await call(sd, 'unread:get', {})).counts, { [c]: 4 }, "others' counts are untouched");

      // New messages count again from zero.
      await send(sd, c, 'after the read');
      await waitForEvent(sb2, 'unread:updated', { predicate: (x) => x?.conversationId === c && x.count === 1 });
      assert.deepEqual((await call(sb1, 'unread:get', {})).counts, { [c]: 1, [c2]: 1 });
      closeAllSockets();
    }),
  );

  test(
    'conversation:delete hides it for the deleter only; history shows only newer messages; a newer message brings it back',
    T,
    withStderr(srv, async () => {
      const a = randomId('za');
      const b = randomId('zb');
      const sa = await dev(server, a, 'Zoe');
      const sb = await dev(server, b, 'Zed');
      const c = (await createDirect(sa, b)).id;
      const old = [];
      for (let i = 0; i < 4; i++) old.push(await send(i % 2 ? sa : sb, c, `old ${i}`));
      await waitForEvent(sa, 'unread:updated', { predicate: (x) => x?.conversationId === c && x.count === 2 });

      const t0 = Date.now();
      const del = await call(sa, 'conversation:delete', { conversationId: c });
      assert.equal(typeof del.deletedAt, 'number');
      assert.ok(del.deletedAt >= t0 - 2000 && del.deletedAt <= Date.now() + 2000, 'deletedAt in ms');
      await waitForEvent(sa, 'unread:updated', { predicate: (x) => x?.conversationId === c && x.count === 0 });
      assert.ok(!(await call(sa, 'conversation:list', {})).conversations.some((x) => x.id === c), 'hidden from the deleter\'s list');
      assert.deepEqual((await call(sa, 'unread:get', {})).counts, {}, 'unread cleared');
      const hidden = await history(sa, c, {});
      assert.deepEqual(hidden.messages, [], 'no history before the deletion');
      assert.equal(hidden.hasMore, false);
      const viaCursor = await history(sa, c, { after: old[0].id });
      assert.deepEqual(viaCursor.messages, [], 'a hidden message as a cursor shows nothing hidden');
      failed(await emitAck(sa, 'message:edit', { conversationId: c, messageId: old[1].id, content: 'x' }), 'NOT_FOUND', 'edit a hidden message');

      // The other member still sees everything.
      assert.ok((await call(sb, 'conversation:list', {})).conversations.some((x) => x.id === c));
      assert.deepEqual(ids((await history(sb, c, {})).messages), ids(old));

      // A newer message: back in the list, and only it in the history.
      await sleep(20);
      const fresh = await send(sb, c, 'are you there?');
      await waitForEvent(sa, 'message:new', { predicate: msgId(fresh.id) });
      const back = (await call(sa, 'conversation:list', {})).conversations.find((x) => x.id === c);
      assert.ok(back, 'a newer message brings it back');
      assert.equal(back.lastMessage?.id, fresh.id);
      assert.equal(back.unreadCount, 1);
      const h = await history(sa, c, {});
      assert.deepEqual(ids(h.messages), [fresh.id], 'only messages newer than the deletion');
      assert.equal(h.hasMore, false);
      const before = await history(sa, c, { before: fresh.id });
      assert.deepEqual(before.messages, [], 'nothing older through a cursor');
      assert.equal(before.hasMore, false);
      assert.deepEqual(ids((await history(sa, c, { after: old[0].id })).messages), [fresh.id], 'through any cursor');
      const mine = await send(sa, c, 'yes');
      assert.deepEqual(ids((await history(sa, c, { after: fresh.id })).messages), [mine.id]);
      assert.deepEqual(ids((await history(sb, c, {})).messages), [...ids(old), fresh.id, mine.id]);
      // Creating the direct conversation again returns the same one, history still trimmed.
      assert.equal((await createDirect(sa, b)).id, c);
      assert.deepEqual(ids((await history(sa, c, {})).messages), [fresh.id, mine.id]);
      closeAllSockets();
    }),
  );

  test(
    `typing: start/stop to the others (not the typist's devices); isTyping:false by itself after ${TYPING_SECS} s`,
    T,
    withStderr(srv, async () => {
      const a = randomId('ta');
      const b = randomId('tb');
      const d = randomId('td');
      const a1 = await dev(server, a, 'Tia', 'phone');
      const a2 = await dev(server, a, 'Tia', 'laptop');
      const sb = await dev(server, b, 'Tom');
      const sd = await dev(server, d, 'Ted');
      const c = (await createGroup(a1, [b, d], 'Typing')).id;
      const typing = (user, is) => (x) => x?.conversationId === c && x.userId === user && x.isTyping === is;

      assert.deepEqual(await emitAck(a1, 'typing:start', { conversationId: c }), { success: true });
      for (const s of [sb, sd]) {
        const e = await waitForEvent(s, 'typing', { predicate: typing(a, true) });
        assert.deepEqual(e, { conversationId: c, userId: a, isTyping: true });
      }
      assert.deepEqual(await emitAck(a1, 'typing:stop', { conversationId: c }), { success: true });
      for (const s of [sb, sd]) await waitForEvent(s, 'typing', { predicate: typing(a, false) });
      // Stop again: the user is not typing, nothing is sent.
      assert.deepEqual(await emitAck(a1, 'typing:stop', { conversationId: c }), { success: true });
      await sleep(500);
      for (const s of [a1, a2]) assert.deepEqual(eventsOf(s, 'typing', (x) => x?.userId === a), [], "not to the typist's devices");
      assert.equal(eventsOf(sb, 'typing', typing(a, false)).length, 1, 'one isTyping:false');

      // Expiry: no refresh for TYPING_SECS → isTyping:false from the server.
      const t0 = Date.now();
      ok(await emitAck(sb, 'typing:start', { conversationId: c }), 'typing:start');
      await waitForEvent(a2, 'typing', { predicate: typing(b, true) });
      const off = await waitForEvent(a1, 'typing', { predicate: typing(b, false), timeoutMs: TYPING_SECS * 1000 + 6000 });
      const took = Date.now() - t0;
      console.log(`# typing expired after ${took} ms (configured ${TYPING_SECS} s)`);
      assert.deepEqual(off, { conversationId: c, userId: b, isTyping: false });
      assert.ok(took >= TYPING_SECS * 1000 - 300, `not before the expiry (${took} ms)`);
      assert.ok(took <= TYPING_SECS * 1000 + 4000, `soon after the expiry (${took} ms)`);
      await waitForEvent(sd, 'typing', { predicate: typing(b, false) });
      assert.deepEqual(eventsOf(sb, 'typing', (x) => x?.userId === b), [], 'never to the typist');

      // A refresh postpones the expiry.
      const t1 = Date.now();
      ok(await emitAck(sd, 'typing:start', { conversationId: c }), 'typing:start');
      await sleep(TYPING_SECS * 1000 * 0.6);
      ok(await emitAck(sd, 'typing:start', { conversationId: c }), 'typing:start (refresh)');
      await waitForEvent(a1, 'typing', { predicate: typing(d, false), timeoutMs: TYPING_SECS * 1000 + 6000 });
      const took2 = Date.now() - t1;
      assert.ok(took2 >= TYPING_SECS * 1000 * 1.6 - 300, `the refresh postponed the expiry (${took2} ms)`);
      await sleep(TYPING_SECS * 1000 + 1000);
      assert.equal(eventsOf(a1, 'typing', typing(d, false)).length, 1, 'one isTyping:false after a refresh');
      closeAllSockets();
    }),
  );
});

describe('send rate limit (10 per 3 s)', () => {
  let server;
  before(async () => {
    server = await startServer({
      dev: true,
      env: { SWITCHBOARD_RATE_LIMITS__MESSAGE__LIMIT: '10', SWITCHBOARD_RATE_LIMITS__MESSAGE__WINDOW_SECS: '3' },
    });
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
  });
  const srv = () => server;

  test(
    'the 11th message in the window is RATE_LIMITED with retryAfterMs; nothing is sent; sending works after the window',
    T,
    withStderr(srv, async () => {
      const a = randomId('rl');
      const b = randomId('rlb');
      const sa = await dev(server, a, 'Rae');
      const sb = await dev(server, b, 'Rik');
      const c = (await createGroup(sa, [b], 'Rate')).id;
      const t0 = Date.now();
      const accepted = [];
      for (let i = 0; i < 10; i++) accepted.push(await send(sa, c, `ok ${i}`));
      const took = Date.now() - t0;
      assert.ok(took < 2500, `10 messages sent well inside the window (${took} ms)`);
      const limited = await emitAck(sa, 'message:send', { conversationId: c, content: 'one too many', clientMessageId: 'rl-11' });
      failed(limited, 'RATE_LIMITED', '11th message');
      assert.equal(typeof limited.retryAfterMs, 'number', JSON.stringify(limited));
      assert.ok(limited.retryAfterMs > 0 && limited.retryAfterMs <= 3000, `retryAfterMs in (0, 3000]: ${limited.retryAfterMs}`);

      // Per user: someone else may still send.
      await send(sb, c, 'not limited');
      await sleep(300);
      assert.equal(eventsOf(sb, 'message:new', (d) => d?.message?.content === 'one too many').length, 0, 'nothing broadcast');

      await sleep(limited.retryAfterMs + 300);
      const later = await send(sa, c, 'after the window', { clientMessageId: 'rl-11' });
      assert.equal(later.content, 'after the window', 'a refused clientMessageId was never stored');
      const h = (await history(sb, c, {})).messages;
      assert.equal(h.length, 12, 'ten, the other user\'s, and the one after the window');
      assert.ok(!h.some((m) => m.content === 'one too many'));
      closeAllSockets();
    }),
  );
});

describe('restart on the same SQLite file (memory store lost: cold cache, unread counts rebuilt)', () => {
  let dataDir;
  let server;
  before(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'switchboard-e2e-chat-'));
  });
  after(async () => {
    closeAllSockets();
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const srv = () => server;
  const start = () =>
    startServer({ dev: true, dataDir, env: { SWITCHBOARD_RATE_LIMITS__MESSAGE__LIMIT: '100000' } });

  test(
    'history, the list and unread counts are the same after a restart',
    T,
    withStderr(srv, async () => {
      server = await start();
      const a = randomId('pa');
      const b = randomId('pb');
      let sa = await dev(server, a, 'Pia');
      let sb = await dev(server, b, 'Pat');
      const c = (await createGroup(sa, [b], 'Persisted')).id;
      const sent = [];
      for (let i = 0; i < 130; i++) sent.push(await send(i % 4 ? sa : sb, c, `p${i}`));
      await call(sb, 'message:edit', { conversationId: c, messageId: sent[128].id, content: 'edited' });
      await call(sa, 'message:react', { conversationId: c, messageId: sent[129].id, emoji: '👍' });
      await call(sa, 'message:read', { conversationId: c });
      await send(sb, c, 'unread 1');
      await send(sb, c, 'unread 2');
      const fullBefore = await fullHistoryBackwards(sa, c, 100);
      assert.equal(fullBefore.length, 132);
      const unreadBefore = (await call(sa, 'unread:get', {})).counts;
      assert.deepEqual(unreadBefore, { [c]: 2 });
      const listBefore = (await call(sa, 'conversation:list', {})).conversations;
      closeAllSockets();
      await server.stop();

      server = await start();
      sa = await dev(server, a, 'Pia');
      sb = await dev(server, b, 'Pat');
      assert.deepEqual((await call(sa, 'unread:get', {})).counts, unreadBefore, 'unread counts rebuilt from the database');
      assert.deepEqual((await call(sa, 'conversation:list', {})).conversations, listBefore, 'the same list');
      const fullAfter = await fullHistoryBackwards(sa, c, 100);
      assert.deepEqual(fullAfter, fullBefore, 'the same history, message for message');
      assert.deepEqual(await fullHistoryBackwards(sb, c, 33), fullBefore, 'the same history in other page sizes');
      // The socket joined the room on connect: live messages still arrive.
      const m = await send(sb, c, 'after restart');
      await waitForEvent(sa, 'message:new', { predicate: msgId(m.id) });
      await waitForEvent(sa, 'unread:updated', { predicate: (x) => x?.conversationId === c && x.count === 3 });
      const retry = await send(sb, c, 'unread 2', { clientMessageId: 'never-used' });
      assert.notEqual(retry.id, m.id);
      closeAllSockets();
    }),
  );
});
