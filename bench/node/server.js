// Node.js baseline for `make bench`: the stack the seeds were written for (socket.io 4,
// @socket.io/redis-adapter, ioredis) doing the primitive work the load generator measures,
// plus seed 002's direct-call flow so the `calls` scenario compares too.
//
// Environment: PORT (default 0 = any free port), REDIS_URL (set: the Redis adapter is used,
// with REDIS_PREFIX as its channel prefix). Prints `listening on http://127.0.0.1:<port>`
// once it accepts connections; the load generator waits for that line.
//
// Primitives (every handler answers through the Socket.IO ack):
//   ping      {...}              → {success: true}
//   join      {room}             → the socket joins `room`; {success: true}
//   broadcast {room, content}    → `message:new {message: {room, content}}` to the room
//                                  (the sender included); {success: true}
//
// Direct calls (seed 002 "new flow", CallManager with an in-memory map):
//   callUser {callId, targetUserId} → incomingCallNew to the callee
//   acceptCallNew {callId}          → callAcceptedNew {callId, roomId, room} to the caller
//   cancelCall {callId}, endCall {roomId} → callCancelled / callEnded

'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const { Server } = require('socket.io');

const port = Number(process.env.PORT || 0);
// Nagle off, as on the Rust servers (several acks in flight would otherwise wait for the
// client's delayed ACK).
const server = http.createServer({ noDelay: true });
server.on('connection', (socket) => socket.setNoDelay(true));
const io = new Server(server, { transports: ['websocket'], serveClient: false });

async function useRedisAdapter(url) {
  const Redis = require('ioredis');
  const { createAdapter } = require('@socket.io/redis-adapter');
  const pub = new Redis(url);
  const sub = pub.duplicate();
  const key = process.env.REDIS_PREFIX || 'bench-node';
  io.adapter(createAdapter(pub, sub, { key }));
}

// --- seed 002: UserManager / CallManager / RoomManager, in memory -------------------------

const UserStatus = { IDLE: 'idle', IN_CALL: 'in_call' };
const CallState = {
  PENDING: 'pending',
  ACCEPTED: 'accepted',
  REJECTED: 'rejected',
  CANCELLED: 'cancelled',
  TIMEOUT: 'timeout',
};
const CALL_TIMEOUT_MS = 30_000;

/** userId → {userId, name, socketId, status, roomId} */
const users = new Map();
/** callId → PendingCall */
const calls = new Map();
/** roomId → Room */
const rooms = new Map();

function fail(code, error, extra = {}) {
  return { success: false, code, error, ...extra };
}

/** Compare-and-set of a call's state: only one transition out of `pending` wins. */
function transitionState(callId, expected, next) {
  const call = calls.get(callId);
  if (!call || call.state !== expected) return null;
  call.state = next;
  return call;
}

function hasPendingCall(userId) {
  for (const call of calls.values()) {
    if (call.state === CallState.PENDING && (call.from === userId || call.to === userId)) {
      return true;
    }
  }
  return false;
}

function handleCallUser(socket, me, payload, ack) {
  const { callId, targetUserId } = payload || {};
  if (typeof callId !== 'string' || typeof targetUserId !== 'string' || targetUserId === me.userId) {
    return ack(fail('INVALID_PAYLOAD', 'Invalid call request'));
  }
  if (calls.has(callId)) return ack(fail('CONFLICT', 'Call id already used'));
  const target = users.get(targetUserId);
  if (!target) return ack(fail('OFFLINE', 'User is offline', { canRetry: true }));
  if (
    me.status === UserStatus.IN_CALL ||
    target.status === UserStatus.IN_CALL ||
    hasPendingCall(me.userId) ||
    hasPendingCall(targetUserId)
  ) {
    return ack(fail('BUSY', 'User is busy', { canRetry: true }));
  }
  calls.set(callId, {
    callId,
    state: CallState.PENDING,
    from: me.userId,
    fromName: me.name,
    fromSocketId: socket.id,
    to: target.userId,
    toName: target.name,
    timestamp: Date.now(),
  });
  io.to(target.socketId).emit('incomingCallNew', { callId, from: me.userId, fromName: me.name });
  ack({ success: true, delivery: 'ringing' });
}

function handleAcceptCall(socket, me, payload, ack) {
  const callId = payload && payload.callId;
  const call = calls.get(callId);
  if (!call) return ack(fail('NOT_FOUND', 'Call not found'));
  if (call.to !== me.userId) return ack(fail('FORBIDDEN', 'Not the callee'));
  if (!transitionState(callId, CallState.PENDING, CallState.ACCEPTED)) {
    return ack(fail('CONFLICT', 'Call is no longer pending'));
  }
  const caller = users.get(call.from);
  const roomId = crypto.randomUUID();
  const room = {
    roomId,
    roomType: 'direct',
    roomName: `${call.fromName} & ${call.toName}`,
    hostId: call.from,
    hostName: call.fromName,
    status: 'active',
    isPrivate: true,
    participants: [
      { userId: call.from, name: call.fromName, joinedAt: Date.now() },
      { userId: call.to, name: call.toName, joinedAt: Date.now() },
    ],
    createdAt: Date.now(),
    isHostless: false,
    invitedUserIds: [call.to],
    messages: [],
  };
  rooms.set(roomId, room);
  calls.delete(callId);
  for (const user of [caller, me]) {
    if (!user) continue;
    user.status = UserStatus.IN_CALL;
    user.roomId = roomId;
    io.in(user.socketId).socketsJoin(roomId);
  }
  io.to(call.fromSocketId).emit('callAcceptedNew', { callId, roomId, room });
  ack({ success: true, roomId, room });
}

function handleCancelCall(me, payload, ack) {
  const callId = payload && payload.callId;
  const call = calls.get(callId);
  if (!call) return ack(fail('NOT_FOUND', 'Call not found'));
  if (call.from !== me.userId) return ack(fail('FORBIDDEN', 'Not the caller'));
  if (!transitionState(callId, CallState.PENDING, CallState.CANCELLED)) {
    return ack(fail('CONFLICT', 'Call is no longer pending'));
  }
  calls.delete(callId);
  const target = users.get(call.to);
  if (target) io.to(target.socketId).emit('callCancelled', { callId });
  ack({ success: true, message: 'Call cancelled' });
}

function endRoom(roomId, endedBy) {
  const room = rooms.get(roomId);
  if (!room) return false;
  rooms.delete(roomId);
  for (const p of room.participants) {
    const user = users.get(p.userId);
    if (user && user.roomId === roomId) {
      user.status = UserStatus.IDLE;
      user.roomId = null;
    }
  }
  io.to(roomId).emit('callEnded', { roomId, endedBy });
  io.in(roomId).socketsLeave(roomId);
  return true;
}

function handleEndCall(me, payload, ack) {
  const roomId = payload && payload.roomId;
  const room = rooms.get(roomId);
  if (!room) return ack(fail('NOT_FOUND', 'Room not found'));
  if (!room.participants.some((p) => p.userId === me.userId)) {
    return ack(fail('FORBIDDEN', 'Not in this room'));
  }
  endRoom(roomId, me.userId);
  ack({ success: true, message: 'Call ended' });
}

// The seed's cleanup job: every 5 s, calls pending for more than 30 s time out.
setInterval(() => {
  const now = Date.now();
  for (const call of calls.values()) {
    if (now - call.timestamp > CALL_TIMEOUT_MS && transitionState(call.callId, CallState.PENDING, CallState.TIMEOUT)) {
      calls.delete(call.callId);
      io.to(call.fromSocketId).emit('callTimeout', { callId: call.callId });
      const target = users.get(call.to);
      if (target) io.to(target.socketId).emit('callTimeout', { callId: call.callId });
    }
  }
}, 5_000).unref();

// --- connections ----------------------------------------------------------------------------

const noop = () => {};

io.on('connection', (socket) => {
  const auth = socket.handshake.auth || {};
  const userId = typeof auth.userId === 'string' ? auth.userId : socket.id;
  const me = {
    userId,
    name: typeof auth.name === 'string' ? auth.name : userId,
    socketId: socket.id,
    status: UserStatus.IDLE,
    roomId: null,
  };
  users.set(userId, me);

  socket.on('ping', (_payload, ack = noop) => ack({ success: true }));
  socket.on('join', (payload, ack = noop) => {
    if (!payload || typeof payload.room !== 'string') return ack(fail('INVALID_PAYLOAD', 'room'));
    socket.join(payload.room);
    ack({ success: true });
  });
  socket.on('broadcast', (payload, ack = noop) => {
    if (!payload || typeof payload.room !== 'string') return ack(fail('INVALID_PAYLOAD', 'room'));
    io.to(payload.room).emit('message:new', {
      message: { room: payload.room, content: payload.content },
    });
    ack({ success: true });
  });

  socket.on('callUser', (p, ack = noop) => handleCallUser(socket, me, p, ack));
  socket.on('acceptCallNew', (p, ack = noop) => handleAcceptCall(socket, me, p, ack));
  socket.on('cancelCall', (p, ack = noop) => handleCancelCall(me, p, ack));
  socket.on('endCall', (p, ack = noop) => handleEndCall(me, p, ack));

  socket.on('disconnect', () => {
    if (users.get(userId) === me) users.delete(userId);
  });
});

async function main() {
  if (process.env.REDIS_URL) await useRedisAdapter(process.env.REDIS_URL);
  server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => {
    console.log(`listening on http://127.0.0.1:${server.address().port}`);
  });
}

process.on('SIGTERM', () => {
  io.close();
  process.exit(0);
});

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
