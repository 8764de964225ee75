// Chat durability (protocol §9 "a message is acknowledged only once it is committed to the
// database"; "the same clientMessageId from the same sender never creates two messages"):
// kill the server (SIGKILL) in the middle of a burst, restart it on the same database, and
// check that every acknowledged message is in the history exactly once, that nothing is
// duplicated, and that retrying the unacknowledged sends with their clientMessageId creates
// no duplicates either.
//
// Runs on SQLite (a fixed temporary data directory, reused by the restarted server) and on
// PostgreSQL (a fresh database) when it is reachable; without PostgreSQL that half is
// skipped, unless SWITCHBOARD_REQUIRE_BACKENDS=1, when it fails instead.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  backendsSkipReason,
  closeAllSockets,
  connect,
  createTestDatabase,
  DATABASE_URL,
  dev,
  emitAck,
  eventually,
  ok,
  pgCheck,
  REDIS_URL,
  redisCleanup,
  REQUIRE_BACKENDS,
  startServer,
  waitForDisconnect,
  waitForEvent,
  withStderr,
  withTimeout,
} from './helpers.mjs';

const CLIENTS = 4;
const PER_CLIENT = 300;
const TOTAL = CLIENTS * PER_CLIENT;
/** One round per entry: SIGKILL as soon as this many acks arrived (early, a quarter, late). */
const KILL_POINTS = [25, 300, 600];
const T = { timeout: 240_000 };

const ENV = {
  // The burst is far over the default 10 messages per 10 s.
  SWITCHBOARD_RATE_LIMITS__MESSAGE__LIMIT: '1000000',
  SWITCHBOARD_RATE_LIMITS__MESSAGE__WINDOW_SECS: '10',
  // Each client receives ~2 packets per message of the burst (message:new, unread:updated):
  // keep the slow-consumer protection out of this test.
  SWITCHBOARD_SERVER__SOCKET_BUFFER: '100000',
};

// ---------------------------------------------------------------------------

/** The whole history, paging backwards with `before`, then checked against a forward walk with `after`. */
async function fullHistory(socket, conversationId) {
  let back = [];
  let cursor;
  for (let guard = 0; guard < 500; guard++) {
    const page = ok(
      await emitAck(socket, 'message:history', { conversationId, limit: 100, ...(cursor ? { before: cursor } : {}) }, 20_000),
      'message:history (before)',
    );
    back = [...page.messages, ...back];
    if (!page.hasMore) break;
    assert.ok(page.messages.length > 0, 'hasMore with an empty page');
    cursor = page.messages[0].id;
  }
  if (back.length === 0) return back;
  let fwd = [back[0]];
  cursor = back[0].id;
  for (let guard = 0; guard < 500; guard++) {
    const page = ok(await emitAck(socket, 'message:history', { conversationId, limit: 100, after: cursor }, 20_000), 'message:history (after)');
    fwd = [...fwd, ...page.messages];
    if (!page.hasMore) break;
    assert.ok(page.messages.length > 0, 'hasMore with an empty page');
    cursor = page.messages.at(-1).id;
  }
  if (JSON.stringify(fwd.map((m) => m.id)) !== JSON.stringify(back.map((m) => m.id))) {
    const k = fwd.findIndex((m, i) => m.id !== back[i]?.id);
    const show = (ms) => JSON.stringify(ms.slice(Math.max(0, k - 1), k + 3).map((m) => [m.clientMessageId, m.createdAt]));
    const backIds = new Set(back.map((m) => m.id));
    const fwdIds = new Set(fwd.map((m) => m.id));
    assert.fail(
      `paging forwards with \`after\` (${fwd.length} messages) differs from paging backwards with \`before\` (${back.length}) ` +
        `from index ${k}: forwards ${show(fwd)}, backwards ${show(back)}; ` +
        `only forwards: ${JSON.stringify(fwd.filter((m) => !backIds.has(m.id)).map((m) => m.clientMessageId).slice(0, 10))}, ` +
        `only backwards: ${JSON.stringify(back.filter((m) => !fwdIds.has(m.id)).map((m) => m.clientMessageId).slice(0, 10))}`,
    );
  }
  for (let i = 1; i < back.length; i++) {
    assert.ok(back[i - 1].createdAt <= back[i].createdAt, `history ascending at ${i}`);
  }
  return back;
}

function duplicates(values) {
  const seen = new Set();
  const dup = new Set();
  for (const v of values) (seen.has(v) ? dup : seen).add(v);
  return [...dup];
}

/**
 * The durability checks: no duplicate ids or (sender, clientMessageId) at all, every
 * message is one of the burst with the right sender and content, every acked message is
 * there exactly once under its acked id.
 */
function checkHistory(hist, { burst, acked, label }) {
  const dupIds = duplicates(hist.map((m) => m.id));
  assert.deepEqual(dupIds, [], `${label}: duplicate message ids in the history`);
  const dupKeys = duplicates(hist.map((m) => `${m.senderId}/${m.clientMessageId}`));
  assert.deepEqual(dupKeys.slice(0, 20), [], `${label}: ${dupKeys.length} duplicate (sender, clientMessageId) in the history`);
  const strangers = hist.filter((m) => {
    const b = burst.get(m.clientMessageId);
    return !b || b.userId !== m.senderId || b.content !== m.content;
  });
  assert.deepEqual(strangers.slice(0, 5), [], `${label}: ${strangers.length} messages that were never sent (or changed)`);
  const byCmid = new Map(hist.map((m) => [m.clientMessageId, m]));
  const missing = [];
  const wrongId = [];
  for (const [cmid, message] of acked) {
    const h = byCmid.get(cmid);
    if (!h) missing.push(cmid);
    else if (h.id !== message.id || h.createdAt !== message.createdAt) wrongId.push({ cmid, acked: message.id, history: h.id });
  }
  assert.deepEqual(missing.slice(0, 20), [], `${label}: ${missing.length} of ${acked.size} ACKNOWLEDGED messages are missing from the history`);
  assert.deepEqual(wrongId.slice(0, 5), [], `${label}: acked messages stored under another id`);
  return byCmid;
}

/**
 * PostgreSQL only: the history the clients page through is exactly the stored messages
 * (an oracle that bypasses the server's recent-message cache).
 */
async function sameAsDatabase(url, conversationId, hist, label) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  let stored;
  try {
    stored = (await client.query('SELECT id, client_message_id FROM messages WHERE conversation_id = $1', [conversationId])).rows;
  } finally {
    await client.end();
  }
  const shown = new Set(hist.map((m) => m.id));
  const hiddenFromHistory = stored.filter((r) => !shown.has(r.id)).map((r) => r.client_message_id);
  assert.deepEqual(
    hiddenFromHistory.slice(0, 10),
    [],
    `${label}: ${hiddenFromHistory.length} of ${stored.length} messages stored in the database are missing from message:history`,
  );
  assert.equal(hist.length, stored.length, `${label}: the history has as many messages as the database`);
}

/**
 * The scenario. `start()` starts a server on the same database every time.
 */
async function crashAndCheck({ label, start, setServer, killAfter, storeSurvives = false, dbUrl }) {
  const tag = randomBytes(4).toString('hex');
  const users = Array.from({ length: CLIENTS }, (_, k) => ({ userId: `crash-${tag}-u${k}`, name: `Sender ${k}` }));

  let server = await start();
  setServer(server);
  const sockets = [];
  for (const u of users) sockets.push(await dev(server, u.userId, u.name, 'burst'));
  const created = ok(
    await emitAck(sockets[0], 'conversation:create', { type: 'group', memberIds: users.slice(1).map((u) => u.userId), name: 'Crash' }, 20_000),
    'conversation:create',
  );
  const conversationId = created.conversation.id;
  // Every member's socket is in the room before the burst (conversation:updated arrived).
  for (const s of sockets) await waitForEvent(s, 'conversation:updated', { timeoutMs: 10_000, predicate: (d) => d?.conversation?.id === conversationId });
  // Like real clients on start-up: read the history and the unread counts, so the store's
  // recent-message cache and unread counters are warm when the burst (and the kill) comes.
  for (const s of sockets) {
    ok(await emitAck(s, 'message:history', { conversationId }, 20_000), 'warm-up message:history');
    ok(await emitAck(s, 'unread:get', {}, 20_000), 'warm-up unread:get');
  }

  // The burst: every client pipelines all its sends without waiting for any ack.
  const burst = new Map(); // clientMessageId → {userId, k, content}
  const acked = new Map(); // clientMessageId → acked message
  const refused = [];
  const seenNew = new Set(); // ids seen in message:new before the kill
  for (const s of sockets) s.on('message:new', (d) => seenNew.add(d?.message?.id));
  let killed = false;
  let ackedAtKill = 0;
  const t0 = Date.now();
  for (let i = 0; i < PER_CLIENT; i++) {
    for (let k = 0; k < CLIENTS; k++) {
      const clientMessageId = `${tag}-c${k}-m${i}`;
      const content = `burst message ${i} from client ${k} (${'x'.repeat(i % 50)})`;
      burst.set(clientMessageId, { userId: users[k].userId, k, content });
      sockets[k].emit('message:send', { conversationId, content, clientMessageId }, (ack) => {
        if (ack?.success === true) {
          acked.set(clientMessageId, ack.message);
          if (!killed && acked.size >= killAfter) {
            killed = true;
            ackedAtKill = acked.size;
            server.proc.kill('SIGKILL');
          }
        } else {
          refused.push({ clientMessageId, ack });
        }
      });
    }
  }
  const exit = await withTimeout(server.exited, 120_000, `the server was not killed (acks so far: ${acked.size}, refusals: ${refused.length})`);
  assert.equal(exit.signal, 'SIGKILL', `${label}: the server died of SIGKILL: ${JSON.stringify(exit)}`);
  await Promise.all(sockets.map((s) => waitForDisconnect(s, 20_000)));
  // Acks already in the sockets' buffers were handled before the disconnect.
  const stderrBeforeKill = server.stderr();
  await server.stop();
  closeAllSockets();
  console.log(
    `# ${label}: SIGKILL after ${Date.now() - t0} ms with ${ackedAtKill} acks; ${acked.size} of ${TOTAL} acked in all, ` +
      `${seenNew.size} seen in message:new, ${refused.length} refused`,
  );
  assert.deepEqual(refused.slice(0, 5), [], `${label}: no send was refused before the kill`);
  assert.ok(acked.size < TOTAL, `${label}: the kill came in the middle of the burst (some sends unacknowledged)`);

  // Restart on the same database.
  server = await start();
  setServer(server);
  const observer = await dev(server, users[0].userId, users[0].name, 'observer');
  const hist1 = await fullHistory(observer, conversationId);
  const byCmid1 = checkHistory(hist1, { burst, acked, label: `${label}, after the restart` });
  const notAckedButStored = [...byCmid1.keys()].filter((c) => !acked.has(c));
  const lostUnacked = [...burst.keys()].filter((c) => !byCmid1.has(c));
  const seenButMissing = [...seenNew].filter((id) => !hist1.some((m) => m.id === id));
  console.log(
    `# ${label}: after the restart ${hist1.length} messages: ${acked.size} acked, ${notAckedButStored.length} committed but not acked, ` +
      `${lostUnacked.length} never stored`,
  );
  assert.deepEqual(seenButMissing.slice(0, 5), [], `${label}: ${seenButMissing.length} messages broadcast in message:new before the kill are not in the history`);
  if (dbUrl) await sameAsDatabase(dbUrl, conversationId, hist1, `${label}, after the restart`);

  // Unread counts: with the memory store they are rebuilt from the database. A Redis store
  // survives the crash with counters bumped after each commit, so a message committed
  // just before the kill may be missing from them: reported, not asserted.
  const unreadDrift = [];
  for (let k = 0; k < CLIENTS; k++) {
    const s = k === 0 ? observer : await dev(server, users[k].userId, users[k].name, 'observer');
    const counts = ok(await emitAck(s, 'unread:get', {}, 20_000), 'unread:get').counts;
    const fromOthers = hist1.filter((m) => m.senderId !== users[k].userId).length;
    if (storeSurvives) {
      if ((counts[conversationId] ?? 0) !== fromOthers) unreadDrift.push(`user ${k}: ${counts[conversationId] ?? 0} unread, ${fromOthers} in the history`);
    } else {
      assert.equal(counts[conversationId] ?? 0, fromOthers, `${label}: user ${k}'s unread count after the restart is the messages from others in the history`);
    }
  }
  if (unreadDrift.length) console.log(`# ${label}: unread counters differ from the database after the crash: ${unreadDrift.join('; ')}`);

  // Retry every unacknowledged send with its clientMessageId.
  const retryClients = [];
  for (const u of users) retryClients.push(await dev(server, u.userId, u.name, 'burst'));
  const unacked = [...burst.keys()].filter((c) => !acked.has(c));
  const retries = await Promise.all(
    unacked.map((clientMessageId) => {
      const b = burst.get(clientMessageId);
      return emitAck(retryClients[b.k], 'message:send', { conversationId, content: b.content, clientMessageId }, 60_000).then((ack) => ({ clientMessageId, ack }));
    }),
  );
  const retryRefused = retries.filter((r) => r.ack?.success !== true);
  assert.deepEqual(retryRefused.slice(0, 5), [], `${label}: ${retryRefused.length} retries refused`);
  const retryMismatch = retries.filter((r) => byCmid1.has(r.clientMessageId) && byCmid1.get(r.clientMessageId).id !== r.ack.message.id);
  assert.deepEqual(
    retryMismatch.slice(0, 5).map((r) => ({ clientMessageId: r.clientMessageId, stored: byCmid1.get(r.clientMessageId).id, retry: r.ack.message.id })),
    [],
    `${label}: a retry of a message committed before the kill answers the stored message`,
  );
  const allAcked = new Map(acked);
  for (const r of retries) allAcked.set(r.clientMessageId, r.ack.message);

  const hist2 = await fullHistory(observer, conversationId);
  checkHistory(hist2, { burst, acked: allAcked, label: `${label}, after the retries` });
  if (dbUrl) await sameAsDatabase(dbUrl, conversationId, hist2, `${label}, after the retries`);
  assert.equal(hist2.length, TOTAL, `${label}: every message of the burst exactly once after the retries`);
  for (const m of hist1) {
    assert.equal(hist2.find((x) => x.clientMessageId === m.clientMessageId)?.id, m.id, 'ids of stored messages unchanged');
  }

  // message:new went out for the newly stored retries only, once each.
  const newlyStored = new Set(lostUnacked);
  await eventually(
    () => {
      const got = observer.received.filter((r) => r.event === 'message:new').map((r) => r.args[0].message.clientMessageId);
      assert.deepEqual(duplicates(got), [], 'one message:new per message');
      const extra = got.filter((c) => !newlyStored.has(c));
      assert.deepEqual(extra.slice(0, 5), [], `${label}: ${extra.length} message:new for retries of already stored messages`);
      assert.equal(got.length, newlyStored.size, 'a message:new for every newly stored retry');
    },
    { timeoutMs: 15_000, intervalMs: 250 },
  );
  if (!storeSurvives) {
    const counts = ok(await emitAck(observer, 'unread:get', {}, 20_000), 'unread:get').counts;
    assert.equal(counts[conversationId], hist2.filter((m) => m.senderId !== users[0].userId).length, `${label}: unread count after the retries`);
  }

  closeAllSockets();
  await server.stop();
  setServer(undefined);
  return { stderrBeforeKill };
}

// ---------------------------------------------------------------------------

describe('SIGKILL in the middle of a chat burst (SQLite)', () => {
  // One data directory for every round: each restart also recovers the earlier crashes.
  const dataDir = mkdtempSync(join(tmpdir(), 'switchboard-e2e-crash-'));
  let server;
  after(async () => {
    closeAllSockets();
    await server?.stop({ signal: 'SIGKILL' });
    rmSync(dataDir, { recursive: true, force: true });
  });
  for (const killAfter of KILL_POINTS) {
    test(
      `${CLIENTS} clients × ${PER_CLIENT} pipelined sends, SIGKILL after ${killAfter} acks, restart on the same data directory`,
      T,
      withStderr(
        () => server,
        () =>
          crashAndCheck({
            label: `SQLite, kill after ${killAfter}`,
            killAfter,
            start: () => startServer({ dev: true, dataDir, env: ENV }),
            setServer: (s) => {
              server = s;
            },
          }),
      ),
    );
  }
});

let pgSkip = await pgCheck();
if (pgSkip) {
  pgSkip = `PostgreSQL not reachable at ${DATABASE_URL.replace(/:[^:@/]*@/, ':***@')}: ${pgSkip} (set SWITCHBOARD_TEST_DATABASE_URL)`;
  if (REQUIRE_BACKENDS) {
    test('SIGKILL in the middle of a chat burst (PostgreSQL)', () => {
      throw new Error(`SWITCHBOARD_REQUIRE_BACKENDS=1 but ${pgSkip}`);
    });
  } else {
    console.log(`# skipping the PostgreSQL crash test: ${pgSkip}`);
    test('SIGKILL in the middle of a chat burst (PostgreSQL)', { skip: pgSkip }, () => {});
  }
} else {
  describe('SIGKILL in the middle of a chat burst (PostgreSQL)', () => {
    let db;
    let server;
    const dataDir = mkdtempSync(join(tmpdir(), 'switchboard-e2e-crash-pg-'));
    before(async () => {
      db = await createTestDatabase();
    });
    after(async () => {
      closeAllSockets();
      await server?.stop({ signal: 'SIGKILL' });
      rmSync(dataDir, { recursive: true, force: true });
      if (db) await db.drop().catch((e) => console.log(`# could not drop ${db.name}: ${e.message}`));
    });
    for (const killAfter of KILL_POINTS) {
      test(
        `${CLIENTS} clients × ${PER_CLIENT} pipelined sends, SIGKILL after ${killAfter} acks, restart on the same database`,
        T,
        withStderr(
          () => server,
          () =>
            crashAndCheck({
              label: `PostgreSQL, kill after ${killAfter}`,
              killAfter,
              dbUrl: db.url,
              start: () => startServer({ dev: true, dataDir, env: ENV, args: ['--database-url', db.url] }),
              setServer: (s) => {
                server = s;
              },
            }),
        ),
      );
    }
  });
}

// PostgreSQL with a Redis store: the store (recent-message cache, unread counters,
// clientMessageId state if any) survives the crash, unlike the memory store.
let bothSkip = null;
let bothError = null;
try {
  bothSkip = await backendsSkipReason();
} catch (e) {
  bothError = e;
}
if (bothSkip) {
  console.log(`# skipping the PostgreSQL + Redis crash test: ${bothSkip}`);
  test('SIGKILL in the middle of a chat burst (PostgreSQL + Redis)', { skip: bothSkip }, () => {});
} else {
  describe('SIGKILL in the middle of a chat burst (PostgreSQL + Redis store, which survives the crash)', () => {
    let db;
    let server;
    const prefix = `e2e-crash-${randomBytes(5).toString('hex')}:`;
    const dataDir = mkdtempSync(join(tmpdir(), 'switchboard-e2e-crash-pgr-'));
    before(async () => {
      if (bothError) throw bothError;
      db = await createTestDatabase();
    });
    after(async () => {
      closeAllSockets();
      await server?.stop({ signal: 'SIGKILL' });
      rmSync(dataDir, { recursive: true, force: true });
      if (db) await db.drop().catch((e) => console.log(`# could not drop ${db.name}: ${e.message}`));
      redisCleanup(prefix);
    });
    for (const killAfter of KILL_POINTS) {
      test(
        `${CLIENTS} clients × ${PER_CLIENT} pipelined sends, SIGKILL after ${killAfter} acks, restart on the same database and Redis prefix`,
        T,
        withStderr(
          () => server,
          () =>
            crashAndCheck({
              label: `PostgreSQL + Redis, kill after ${killAfter}`,
              killAfter,
              dbUrl: db.url,
              storeSurvives: true,
              start: () =>
                startServer({
                  dev: true,
                  dataDir,
                  env: { ...ENV, SWITCHBOARD_STORE__PREFIX: prefix },
                  args: ['--database-url', db.url, '--redis-url', REDIS_URL],
                }),
              setServer: (s) => {
                server = s;
              },
            }),
        ),
      );
    }
  });
}
