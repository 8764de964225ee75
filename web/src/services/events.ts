import { socketService } from './socket';
import { webrtcService } from './webrtc';
import { peerService } from './p2p';
import * as chat from './chat';
import * as calls from './calls';
import { useAppStore, displayName } from '../stores/appStore';
import { useCallStore } from '../stores/callStore';
import { useUserStore } from '../stores/userStore';
import type {
  CallParticipant,
  Conversation,
  ConversationCallInvite,
  IceServer,
  IncomingCallNew,
  Message,
  OnlineUser,
  Reaction,
  Room,
  RoomInvitation,
  RoomMessage,
  RoomSummary,
  UserStatus,
} from '../types';

// Server events → stores (seed 002's socketService listeners). Registered once; the
// socket service attaches them to every connection it opens.

const app = () => useAppStore.getState();
const call = () => useCallStore.getState();
const me = () => useUserStore.getState().userId;

function inRoom(roomId: string): Room | null {
  const c = call().currentCall;
  return c?.kind === 'room' && c.roomId === roomId ? c.room : null;
}

function currentRoom(): Room | null {
  const c = call().currentCall;
  return c?.kind === 'room' ? c.room : null;
}

function inCall(callId: string) {
  const c = call().currentCall;
  return c?.kind === 'p2p' && c.callId === callId;
}

let registered = false;

export function registerEvents() {
  if (registered) return;
  registered = true;
  const on = socketService.on.bind(socketService) as (event: string, handler: (payload: never) => void) => void;

  socketService.onLifecycle({
    onConnect: (isReconnect) => void refreshAll(isReconnect),
    onDisconnect: () => {
      // Typing indicators of others would otherwise stick while we cannot hear them stop.
      useAppStore.setState({ typing: {} });
    },
  });

  on('session', (p: { userId: string; name: string; deviceId: string }) => {
    useUserStore.getState().setIdentity(p.userId, p.name, p.deviceId);
  });
  on('session:replaced', () => {
    app().toast('warning', 'This device signed in again elsewhere (another tab?).');
  });
  on('auth:expired', () => app().toast('warning', 'Your session expired: sign in again.'));

  // presence (§4)
  on('onlineUsersUpdated', (p: { users: OnlineUser[] }) => {
    app().setOnlineUsers(p.users);
    const mine = p.users.find((u) => u.userId === me());
    if (mine && mine.status !== 'in_call') app().setMyStatus(mine.status);
  });

  // chat (§9)
  on('message:new', (p: { message: Message }) => {
    const m = p.message;
    app().upsertMessage(m);
    app().rememberNames([{ userId: m.senderId, name: m.senderName }]);
    if (m.senderId !== me()) app().setTyping(m.conversationId, m.senderId, false);
    if (!app().conversations.some((c) => c.id === m.conversationId)) void chat.loadConversations();
    else if (
      app().activeConversationId === m.conversationId &&
      document.visibilityState === 'visible' &&
      m.senderId !== me()
    ) {
      // The thread is on screen: the message is read as it arrives.
      void socketService.request('message:read', { conversationId: m.conversationId }).catch(() => undefined);
    }
  });
  on('message:edited', (p: { message: Message }) => app().upsertMessage(p.message));
  on('message:deleted', (p: { conversationId: string; messageId: string }) =>
    app().markDeleted(p.conversationId, p.messageId),
  );
  on('message:reaction-updated', (p: { conversationId: string; messageId: string; reactions: Reaction[] }) =>
    app().setReactions(p.conversationId, p.messageId, p.reactions),
  );
  on('conversation:updated', (p: { conversation: Conversation }) => {
    const c = p.conversation;
    if (!c.memberIds.includes(me())) app().removeConversation(c.id);
    else {
      app().upsertConversation(c);
      void chat.learnNames(c.memberIds);
    }
  });
  on('unread:updated', (p: { conversationId: string; count: number }) => {
    if (p.count > 0 && app().activeConversationId === p.conversationId && document.visibilityState === 'visible') {
      return; // being read right now (message:read is on its way)
    }
    app().setUnread(p.conversationId, p.count);
  });
  on('typing', (p: { conversationId: string; userId: string; isTyping: boolean }) => {
    if (p.userId !== me()) app().setTyping(p.conversationId, p.userId, p.isTyping);
  });

  // direct calls (§5)
  on('incomingCallNew', (p: IncomingCallNew) => {
    app().rememberNames([{ userId: p.from, name: p.fromName }]);
    app().addIncomingCall(p);
  });
  on('callAcceptedNew', (p: { callId: string; roomId: string; room: Room }) => {
    if (app().outgoingCall?.callId !== p.callId) return;
    void calls.enterRoom(p.room);
  });
  on('callRejectedNew', (p: { callId: string; reason: string }) => {
    const out = app().outgoingCall;
    if (out?.callId !== p.callId) return;
    app().setOutgoingCall(null);
    app().toast('warning', `${out.toName} declined the call.`);
  });
  on('callCancelled', (p: { callId: string; reason?: string }) => {
    const incoming = app().incomingCalls.find((c) => c.callId === p.callId);
    app().removeIncomingCall(p.callId);
    if (!incoming) return;
    if (p.reason === 'answered_elsewhere') app().toast('info', `Answered on another device.`);
    else if (p.reason === 'rejected_elsewhere') app().toast('info', `Declined on another device.`);
    else app().toast('info', `${incoming.fromName} cancelled the call.`);
  });
  on('callTimeout', (p: { callId: string }) => {
    const out = app().outgoingCall;
    if (out?.callId === p.callId) {
      app().setOutgoingCall(null);
      app().toast('warning', `No answer from ${out.toName}.`);
    }
    const incoming = app().incomingCalls.find((c) => c.callId === p.callId);
    if (incoming) {
      app().removeIncomingCall(p.callId);
      app().toast('warning', `Missed call from ${incoming.fromName}.`);
    }
  });

  // rooms (§6)
  on('roomListUpdated', (p: { rooms: RoomSummary[] }) => app().setRooms(p.rooms));
  on('incomingCall', (p: RoomInvitation) => {
    if (inRoom(p.roomId)) return;
    app().rememberNames([{ userId: p.fromUserId, name: p.fromUserName }]);
    app().addRoomInvitation(p);
  });
  on('invitationExpired', (p: { roomId: string }) => app().removeRoomInvitation(p.roomId));
  on('userJoined', (p: { userId: string; userName: string; socketId: string }) => {
    const room = currentRoom();
    if (!room) return;
    app().rememberNames([{ userId: p.userId, name: p.userName }]);
    const others = room.participants.filter((x) => x.userId !== p.userId);
    const before = room.participants.find((x) => x.userId === p.userId);
    call().setRoom({
      ...room,
      participants: [
        ...others,
        {
          userId: p.userId,
          name: p.userName,
          socketId: p.socketId,
          joinedAt: before?.joinedAt ?? Date.now(),
          isHost: before?.isHost ?? false,
          status: 'accepted',
          producerIds: [],
          consumerIds: [],
          isMuted: before?.isMuted ?? false,
          isVideoEnabled: before?.isVideoEnabled ?? true,
        },
      ],
    });
  });
  on('userLeft', (p: { userId: string; roomId: string }) => {
    const room = inRoom(p.roomId);
    if (!room) return;
    call().setRoom({ ...room, participants: room.participants.filter((x) => x.userId !== p.userId) });
    call().removeRemote(p.userId);
    app().toast('info', `${displayName(p.userId)} left the call.`);
  });
  on('callAccepted', (p: { userId: string; roomId: string }) => {
    if (inRoom(p.roomId)) app().toast('success', `${displayName(p.userId)} accepted.`);
  });
  on('callRejected', (p: { userId: string; userName: string; roomId: string }) => {
    if (inRoom(p.roomId)) app().toast('warning', `${p.userName} declined.`);
  });
  on('callEnded', (p: { roomId: string; endedBy: string; reason?: string }) => {
    app().removeRoomInvitation(p.roomId);
    if (!inRoom(p.roomId)) return;
    calls.teardown();
    const by = p.endedBy && p.endedBy !== 'server' && p.endedBy !== me() ? ` by ${displayName(p.endedBy)}` : '';
    app().toast('info', `The call ended${by}.`);
  });
  on('roomHostless', (p: { roomId: string; message: string }) => {
    const room = inRoom(p.roomId);
    if (!room) return;
    call().setRoom({ ...room, isHostless: true });
    app().toast('warning', p.message || 'The host left: anyone can now end the call.');
  });
  on('hostReconnected', (p: { roomId: string; userId: string }) => {
    if (inRoom(p.roomId)) app().toast('success', `${displayName(p.userId)} (host) is back.`);
  });
  on('newMessage', (m: RoomMessage) => {
    if (currentRoom()) call().upsertRoomMessage(m);
  });
  on('messageReactionUpdated', (p: { messageId: string; reactions: Reaction[] }) =>
    call().setRoomReactions(p.messageId, p.reactions),
  );
  on('participantMediaStateUpdated', (p: { userId: string; isMuted: boolean; isVideoEnabled: boolean }) =>
    call().setPeerMedia(p.userId, { isMuted: p.isMuted, isVideoEnabled: p.isVideoEnabled }),
  );

  // SFU (§8)
  // The server announces a producer to every participant from the moment their join is
  // recorded, which can be before our join's ack has set the current room (and after the
  // room snapshot in that ack was taken). Never drop it: consume() queues it until the
  // room's transports exist.
  on('newProducer', (p: { producerId: string; userId: string }) => {
    if (p.userId !== me()) void webrtcService.consume(p.producerId, p.userId);
  });
  on('producerClosed', (p: { producerId: string }) => webrtcService.closeByProducer(p.producerId));
  on('consumerClosed', (p: { consumerId: string }) => webrtcService.closeByConsumer(p.consumerId));
  on('producerPaused', (p: { producerId: string }) => webrtcService.remotePaused(p.producerId, true));
  on('producerResumed', (p: { producerId: string }) => webrtcService.remotePaused(p.producerId, false));
  on('activeSpeaker', (p: { roomId: string; userId: string }) => {
    if (inRoom(p.roomId)) call().setActiveSpeaker(p.userId);
  });

  // conversation calls (§7)
  on('call:initiated', (p: ConversationCallInvite & { participants?: CallParticipant[] }) => {
    app().setLiveConversationCall(p.conversationId, p.callId);
    if (p.initiator !== me() && !call().currentCall) app().addConversationCallInvite(p);
  });
  on('call:participant-joined', (p: { callId: string; participant: CallParticipant; mode?: string; iceServers?: [] }) => {
    // On the SFU, media goes through the room (§8), not through offers of ours.
    if (!inCall(p.callId) || p.mode === 'sfu') return;
    const userId = p.participant.userId ?? p.participant.anonymousId;
    if (p.participant.userId === me()) {
      // our own join (another device of ours answered elsewhere shows up too)
      return;
    }
    if (!userId) return;
    peerService.setIceServers(p.iceServers);
    call().setPeerMedia(userId, { isMuted: !p.participant.isAudioEnabled, isVideoEnabled: p.participant.isVideoEnabled });
    const c = call().currentCall;
    if (c?.kind === 'p2p') {
      const participants = [...c.call.participants.filter((x) => x.id !== p.participant.id), p.participant];
      call().setCurrentCall({ ...c, call: { ...c.call, participants } });
    }
    void peerService.offerTo(userId).catch((err) => console.warn('offer failed', err));
  });
  on('call:participant-left', (p: { callId: string; participantId: string; userId?: string; anonymousId?: string }) => {
    if (!inCall(p.callId)) return;
    const id = p.userId ?? p.anonymousId;
    if (!id || id === me()) return;
    peerService.remove(id);
    const c = call().currentCall;
    if (c?.kind === 'p2p') {
      const participants = c.call.participants.filter((x) => x.id !== p.participantId);
      call().setCurrentCall({ ...c, call: { ...c.call, participants } });
    }
    app().toast('info', `${displayName(id)} left the call.`);
  });
  on('call:participant-reconnecting', (p: { callId: string; userId: string }) => {
    if (inCall(p.callId)) app().toast('info', `${displayName(p.userId)} is reconnecting…`);
  });
  on('call:signal', (p: { callId: string; signal: Parameters<typeof peerService.onSignal>[1] }) => {
    void peerService.onSignal(p.callId, p.signal).catch((err) => console.warn('signal failed', err));
  });
  on('call:media-toggled', (p: { callId: string; userId: string; mediaType: 'audio' | 'video'; enabled: boolean }) => {
    if (!inCall(p.callId)) return;
    const prev = call().peerMedia[p.userId] ?? { isMuted: false, isVideoEnabled: true };
    call().setPeerMedia(
      p.userId,
      p.mediaType === 'audio' ? { ...prev, isMuted: !p.enabled } : { ...prev, isVideoEnabled: p.enabled },
    );
  });
  on('call:mode-changed', (p: { callId: string; mode: 'sfu'; roomId: string }) => {
    // The joiner gets this before its join ack, when it is not shown in the call yet.
    if (inCall(p.callId)) void calls.moveToSfu(p.callId, p.roomId);
    else calls.noteModeChange(p.callId, p.roomId);
  });
  on('call:ended', (p: { callId: string; duration?: number; endedBy?: string; reason?: string }) => {
    app().removeConversationCallInvite(p.callId);
    const live = Object.entries(app().liveConversationCalls).find(([, id]) => id === p.callId);
    if (live) app().setLiveConversationCall(live[0], null);
    const c = call().currentCall;
    const mine = c?.callId === p.callId; // peer to peer, or its SFU room
    if (!mine) return;
    calls.teardown();
    const d = p.duration ? ` after ${formatDuration(p.duration)}` : '';
    app().toast('info', p.reason === 'timeout' ? 'Nobody joined the call.' : `The call ended${d}.`);
  });
  on('call:error', (p: { code: string; message: string }) => {
    // Every call:* request also fails its ack, which is where the user is told.
    console.info('call:error', p.code, p.message);
  });
}

export function formatDuration(secs: number): string {
  const m = Math.floor(secs / 60);
  const s = secs % 60;
  return m >= 60 ? `${Math.floor(m / 60)}h ${m % 60}m` : `${m}:${String(s).padStart(2, '0')}`;
}

/** On every (re)connect: fetch the state we may have missed, rejoin the call we were in. */
async function refreshAll(isReconnect: boolean) {
  try {
    const [{ users }, , { rooms }, requests] = await Promise.all([
      socketService.request<{ users: OnlineUser[] }>('getOnlineUsers'),
      chat.loadConversations(),
      socketService.request<{ rooms: RoomSummary[] }>('getRooms'),
      socketService.request<{ incoming: { callId: string; from: string; fromName: string; state: string }[] }>(
        'getCallRequests',
      ),
    ]);
    app().setOnlineUsers(users);
    const mine = users.find((u) => u.userId === me());
    if (mine && mine.status !== 'in_call') app().setMyStatus(mine.status as UserStatus);
    app().setRooms(rooms);
    for (const r of requests.incoming ?? []) {
      if (r.state === 'pending') app().addIncomingCall({ callId: r.callId, from: r.from, fromName: r.fromName });
    }
  } catch (err) {
    console.warn('refresh failed', err);
  }
  if (!isReconnect) return;
  app().toast('success', 'Reconnected.');
  for (const id of Object.keys(app().threads)) {
    if (app().threads[id]?.loaded) void chat.catchUp(id).catch(() => undefined);
  }
  const c = call().currentCall;
  if (c?.kind === 'room') {
    // Our transports belonged to the old socket: rejoin (within the reconnect window) and start media again.
    try {
      // A conversation call on the SFU: resume our call participant too (the call ending ends the room).
      if (c.callId) await socketService.request('call:join', { callId: c.callId });
      const { room } = await socketService.request<{ room: Room }>('joinRoom', { roomId: c.roomId });
      webrtcService.cleanup();
      for (const userId of Object.keys(call().remote)) call().removeRemote(userId);
      await calls.enterRoom(room, c.callId);
    } catch {
      calls.teardown();
      app().toast('warning', 'The call ended while you were disconnected.');
    }
  } else if (c?.kind === 'p2p') {
    try {
      // Rejoining resumes our participant; the others offer again on call:participant-joined.
      const { iceServers } = await socketService.request<{ iceServers: IceServer[] }>('call:join', { callId: c.callId });
      peerService.start(c.callId, iceServers, call().localStream);
    } catch {
      calls.teardown();
      app().toast('warning', 'The call ended while you were disconnected.');
    }
  }
}
