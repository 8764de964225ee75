import { socketService, ServerError } from './socket';
import { webrtcService } from './webrtc';
import { peerService } from './p2p';
import { audioDeviceService } from './devices';
import { errorText, learnNames } from './chat';
import { useAppStore, displayName } from '../stores/appStore';
import { useCallStore } from '../stores/callStore';
import { useUserStore } from '../stores/userStore';
import type { CallSession, Conversation, IceServer, Room, RoomMessage } from '../types';

// Calls of every kind, from the user's point of view: direct calls (§5) that ring and then
// meet in a direct room, group rooms (§6), both with media on the SFU (§8), and
// conversation calls (§7) with peer-to-peer media until the server moves them to the SFU.

const app = () => useAppStore.getState();
const call = () => useCallStore.getState();
const me = () => useUserStore.getState().userId;

// ---------------------------------------------------------------------------------------
// Direct calls (§5)

export async function callUser(userId: string, name: string) {
  if (call().currentCall || app().outgoingCall) {
    app().toast('warning', 'Hang up first to place another call.');
    return;
  }
  const callId = crypto.randomUUID();
  rememberCallee(callId, name);
  app().setOutgoingCall({ callId, to: userId, toName: name });
  try {
    const { delivery } = await socketService.request<{ delivery?: 'ringing' | 'push' }>('callUser', {
      callId,
      targetUserId: userId,
    });
    if (app().outgoingCall?.callId === callId) app().setOutgoingCall({ callId, to: userId, toName: name, delivery });
  } catch (err) {
    if (app().outgoingCall?.callId === callId) app().setOutgoingCall(null);
    const code = err instanceof ServerError ? err.code : '';
    if (code === 'OFFLINE') app().toast('warning', `${name} is offline.`);
    else if (code === 'BUSY') app().toast('warning', `${name} is busy in another call.`);
    else app().toast('error', `Could not call ${name}: ${errorText(err)}`);
  }
}

export async function cancelOutgoing() {
  const out = app().outgoingCall;
  if (!out) return;
  app().setOutgoingCall(null);
  await socketService.request('cancelCall', { callId: out.callId }).catch(() => undefined);
  app().toast('info', `Call to ${out.toName} cancelled.`);
}

export async function acceptIncoming(callId: string) {
  const incoming = app().incomingCalls.find((c) => c.callId === callId);
  app().removeIncomingCall(callId);
  try {
    const { room } = await socketService.request<{ roomId: string; room: Room }>('acceptCallNew', { callId });
    await enterRoom(room);
  } catch (err) {
    app().toast('error', `Could not answer${incoming ? ` ${incoming.fromName}` : ''}: ${errorText(err)}`);
  }
}

export async function declineIncoming(callId: string) {
  app().removeIncomingCall(callId);
  await socketService.request('rejectCallNew', { callId, reason: 'declined' }).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------
// Rooms (§6) and SFU media (§8)

export async function createRoom(roomName: string, invitedUserIds: string[]) {
  const { room } = await socketService.request<{ room: Room }>('createRoom', {
    roomType: 'group',
    roomName,
    ...(invitedUserIds.length ? { invitedUserIds } : {}),
  });
  await enterRoom(room);
}

export async function joinRoom(roomId: string) {
  const { room } = await socketService.request<{ room: Room }>('joinRoom', { roomId });
  app().removeRoomInvitation(roomId);
  await enterRoom(room);
}

export async function acceptRoomInvitation(roomId: string) {
  app().removeRoomInvitation(roomId);
  try {
    const { room } = await socketService.request<{ room: Room }>('acceptCall', { roomId });
    await enterRoom(room);
  } catch (err) {
    app().toast('error', `Could not join: ${errorText(err)}`);
  }
}

export async function declineRoomInvitation(roomId: string) {
  app().removeRoomInvitation(roomId);
  await socketService.request('rejectCall', { roomId }).catch(() => undefined);
}

async function openLocalMedia(video: boolean): Promise<MediaStream | null> {
  const existing = call().localStream;
  if (existing) return existing;
  try {
    const stream = await audioDeviceService.getLocalStream(video);
    call().setLocalStream(stream);
    call().setControls({ audioEnabled: true, videoEnabled: video });
    return stream;
  } catch (err) {
    call().setMediaError(`Camera or microphone unavailable: ${errorText(err)}`);
    call().setControls({ audioEnabled: false, videoEnabled: false });
    return null;
  }
}

/** Shows the room and starts its media (our producers, then everyone else's). */
export async function enterRoom(room: Room, callId?: string) {
  app().setOutgoingCall(null);
  call().setCurrentCall({ kind: 'room', roomId: room.roomId, room, ...(callId ? { callId } : {}) });
  call().setMessages(room.messages ?? []);
  for (const p of room.participants) {
    call().setPeerMedia(p.userId, { isMuted: p.isMuted, isVideoEnabled: p.isVideoEnabled });
  }
  app().rememberNames(room.participants.map((p) => ({ userId: p.userId, name: p.name })));
  call().setConnecting(true);
  const local = await openLocalMedia(true);
  await startRoomMedia(room, local);
}

async function startRoomMedia(room: Room, local: MediaStream | null) {
  try {
    for (const p of room.participants) {
      if (p.userId === me()) continue;
      for (const producerId of p.producerIds ?? []) void webrtcService.consume(producerId, p.userId);
    }
    await webrtcService.start(room.roomId, local);
    const { audioEnabled, videoEnabled } = call().controls;
    if (!audioEnabled) await webrtcService.setPaused('mic', true);
    if (!videoEnabled) await webrtcService.setPaused('camera', true);
    socketService.send('mediaStateChanged', { roomId: room.roomId, isMuted: !audioEnabled, isVideoEnabled: videoEnabled });
    call().setMediaError(null);
  } catch (err) {
    console.warn('room media failed', err);
    call().setMediaError(`Media unavailable: ${errorText(err)}`);
  } finally {
    call().setConnecting(false);
  }
}

// ---------------------------------------------------------------------------------------
// Conversation calls (§7)

/**
 * Starts a call from a conversation (any size): it begins peer to peer, and the server moves
 * it to the SFU when a third member joins (`call:mode-changed`).
 */
export async function startConversationCall(c: Conversation) {
  if (call().currentCall) {
    app().toast('warning', 'You are already in a call.');
    return;
  }
  try {
    // Media first: once the server answers, offers and joins may arrive at once.
    const local = await openLocalMedia(true);
    const { callId, call: session, iceServers } = await socketService.request<{
      callId: string;
      call: CallSession;
      iceServers: IceServer[];
    }>('call:initiate', { conversationId: c.id, type: 'video' });
    app().setLiveConversationCall(c.id, callId);
    enterConversationCall(callId, c.id, session, iceServers, local);
  } catch (err) {
    const code = err instanceof ServerError ? err.code : '';
    if (code === 'CALL_ALREADY_ACTIVE') {
      const live = app().liveConversationCalls[c.id];
      if (live) return joinConversationCall(live, c.id);
      app().toast('warning', 'A call is already going on in this conversation.');
    } else {
      app().toast('error', `Could not start the call: ${errorText(err)}`);
    }
    if (!call().currentCall) call().reset();
  }
}

export async function joinConversationCall(callId: string, conversationId: string) {
  app().removeConversationCallInvite(callId);
  try {
    const local = await openLocalMedia(true);
    const { call: session, iceServers } = await socketService.request<{ call: CallSession; iceServers: IceServer[] }>(
      'call:join',
      { callId },
    );
    // The join that brings a third person moves the call to the SFU: the ack says so (and
    // `call:mode-changed`, which comes before it, is remembered in case the ack did not).
    const roomId = (session.mode === 'sfu' && session.roomId) || sfuRoomsAnnounced.get(callId);
    sfuRoomsAnnounced.delete(callId);
    if (roomId) {
      call().setCurrentCall({ kind: 'p2p', callId, conversationId, call: session });
      await moveToSfu(callId, roomId);
      return;
    }
    enterConversationCall(callId, conversationId, session, iceServers, local);
  } catch (err) {
    app().toast('error', `Could not join the call: ${errorText(err)}`);
    if (!call().currentCall) call().reset();
  }
}

function enterConversationCall(
  callId: string,
  conversationId: string,
  session: CallSession,
  iceServers: IceServer[],
  local: MediaStream | null,
) {
  call().setCurrentCall({ kind: 'p2p', callId, conversationId, call: session });
  call().setConnecting(true);
  peerService.start(callId, iceServers, local);
}

/** `call:mode-changed` that arrived while our `call:join` was in flight, by call id. */
const sfuRoomsAnnounced = new Map<string, string>();

/** `call:mode-changed` for a call we are not (yet) shown in: kept for the join ack to use. */
export function noteModeChange(callId: string, roomId: string) {
  sfuRoomsAnnounced.set(callId, roomId);
  // Only a join in flight reads it; drop it later so stale entries do not pile up.
  setTimeout(() => sfuRoomsAnnounced.delete(callId), 60_000);
}

/** A third person joined: the call continues in an SFU room (§7 "SFU mode"). */
export async function moveToSfu(callId: string, roomId: string) {
  const c = call().currentCall;
  if (c?.kind === 'room' && c.roomId === roomId) return; // already there
  peerService.stop();
  for (const userId of Object.keys(call().remote)) call().removeRemote(userId);
  try {
    const { room } = await socketService.request<{ room: Room }>('joinRoom', { roomId });
    await enterRoom(room, callId);
  } catch (err) {
    app().toast('error', `Could not move the call to the media server: ${errorText(err)}`);
  }
}

// ---------------------------------------------------------------------------------------
// In-call controls

export async function toggleAudio() {
  const { controls, localStream, currentCall } = call();
  const enabled = !controls.audioEnabled;
  localStream?.getAudioTracks().forEach((t) => (t.enabled = enabled));
  call().setControls({ audioEnabled: enabled });
  if (currentCall?.kind === 'room') {
    await webrtcService.setPaused('mic', !enabled);
    socketService.send('mediaStateChanged', {
      roomId: currentCall.roomId,
      isMuted: !enabled,
      isVideoEnabled: call().controls.videoEnabled,
    });
  } else if (currentCall?.kind === 'p2p') {
    socketService.send('call:toggle-audio', { callId: currentCall.callId, enabled });
  }
}

export async function toggleVideo() {
  const { controls, localStream, currentCall } = call();
  const enabled = !controls.videoEnabled;
  localStream?.getVideoTracks().forEach((t) => (t.enabled = enabled));
  call().setControls({ videoEnabled: enabled });
  if (currentCall?.kind === 'room') {
    await webrtcService.setPaused('camera', !enabled);
    socketService.send('mediaStateChanged', {
      roomId: currentCall.roomId,
      isMuted: !call().controls.audioEnabled,
      isVideoEnabled: enabled,
    });
  } else if (currentCall?.kind === 'p2p') {
    socketService.send('call:toggle-video', { callId: currentCall.callId, enabled });
  }
}

export async function toggleScreenShare() {
  const { controls, currentCall, screenStream, localStream } = call();
  if (!currentCall) return;
  if (controls.screenShareEnabled) {
    screenStream?.getTracks().forEach((t) => t.stop());
    call().setScreenStream(null);
    call().setControls({ screenShareEnabled: false });
    if (currentCall.kind === 'room') await webrtcService.stopProducing('screen');
    else await peerService.replaceVideoTrack(localStream?.getVideoTracks()[0] ?? null);
    return;
  }
  let stream: MediaStream;
  try {
    stream = await audioDeviceService.getScreenStream();
  } catch {
    return; // the user closed the picker
  }
  const track = stream.getVideoTracks()[0];
  call().setScreenStream(stream);
  call().setControls({ screenShareEnabled: true });
  track.addEventListener('ended', () => {
    if (call().screenStream === stream) void toggleScreenShare();
  });
  if (currentCall.kind === 'room') await webrtcService.produce(track, 'screen');
  else await peerService.replaceVideoTrack(track);
}

/** Applies a new microphone or camera choice to the call in progress. */
export async function switchDevice(kind: 'audio' | 'video') {
  const { localStream, currentCall } = call();
  if (!localStream || !currentCall) return;
  try {
    const fresh = await audioDeviceService.getLocalStream(kind === 'video');
    const track = kind === 'audio' ? fresh.getAudioTracks()[0] : fresh.getVideoTracks()[0];
    fresh.getTracks().filter((t) => t !== track).forEach((t) => t.stop());
    if (!track) return;
    const old = kind === 'audio' ? localStream.getAudioTracks()[0] : localStream.getVideoTracks()[0];
    track.enabled = kind === 'audio' ? call().controls.audioEnabled : call().controls.videoEnabled;
    if (currentCall.kind === 'room') await webrtcService.replaceTrack(kind === 'audio' ? 'mic' : 'camera', track);
    else if (kind === 'audio') await peerService.replaceAudioTrack(track);
    else if (!call().controls.screenShareEnabled) await peerService.replaceVideoTrack(track);
    const next = new MediaStream([...localStream.getTracks().filter((t) => t !== old), track]);
    old?.stop();
    call().setLocalStream(next);
  } catch (err) {
    app().toast('error', `Could not switch device: ${errorText(err)}`);
  }
}

export async function sendRoomMessage(content: string, replyTo?: string) {
  const c = call().currentCall;
  if (c?.kind !== 'room') return;
  try {
    const { message } = await socketService.request<{ message: RoomMessage }>('sendMessage', {
      roomId: c.roomId,
      content,
      ...(replyTo ? { replyTo } : {}),
    });
    call().upsertRoomMessage(message);
  } catch (err) {
    app().toast('error', `Message not sent: ${errorText(err)}`);
  }
}

export async function reactToRoomMessage(messageId: string, emoji: string) {
  const c = call().currentCall;
  if (c?.kind !== 'room') return;
  try {
    const { message } = await socketService.request<{ message: RoomMessage }>('reactToMessage', {
      roomId: c.roomId,
      messageId,
      emoji,
    });
    call().upsertRoomMessage(message);
  } catch (err) {
    app().toast('error', errorText(err));
  }
}

// ---------------------------------------------------------------------------------------
// Leaving

/** Hangs up: leaves the room or conversation call, stops media. */
export async function leaveCall() {
  const c = call().currentCall;
  teardown();
  if (!c) return;
  if (c.kind === 'room') await socketService.request('leaveRoom', { roomId: c.roomId }).catch(() => undefined);
  // The call stays the unit of membership once it is on the SFU: leave it as well.
  if (c.callId) await socketService.request('call:leave', { callId: c.callId }).catch(() => undefined);
}

/** Ends the room for everyone (host, or anyone once hostless; either side of a direct call). */
export async function endRoom() {
  const c = call().currentCall;
  if (c?.kind !== 'room') return;
  try {
    await socketService.request('endCall', { roomId: c.roomId });
    teardown();
  } catch (err) {
    app().toast('error', `Could not end the call: ${errorText(err)}`);
  }
}

export function teardown() {
  webrtcService.cleanup();
  peerService.stop();
  call().reset();
}

export async function loadCallHistory() {
  const { calls } = await socketService.request<{ calls: CallSession[] }>('getCallHistory', { limit: 50 });
  app().setCallHistory(calls);
  const ids = calls.flatMap((c) => [c.initiator, ...c.participants.map((p) => p.userId ?? '')]).filter(Boolean);
  await learnNames(ids);
}

const CALLEES_KEY = 'switchboard.callees';

/**
 * The history lists who took part; a direct call nobody answered lists only its caller, so
 * the caller's browser remembers whom it rang (the last 200 calls).
 */
function rememberCallee(callId: string, name: string) {
  try {
    const saved = JSON.parse(localStorage.getItem(CALLEES_KEY) ?? '{}') as Record<string, string>;
    saved[callId] = name;
    const trimmed = Object.fromEntries(Object.entries(saved).slice(-200));
    localStorage.setItem(CALLEES_KEY, JSON.stringify(trimmed));
  } catch {
    /* storage full or disabled: history shows fewer names */
  }
}

export function describeCallPeer(c: CallSession): string {
  const others = [...new Set([c.initiator, ...c.participants.map((p) => p.userId ?? '')])].filter(
    (id) => id && id !== me(),
  );
  if (others.length) return others.map(displayName).join(', ');
  try {
    const saved = JSON.parse(localStorage.getItem(CALLEES_KEY) ?? '{}') as Record<string, string>;
    if (saved[c.id]) return saved[c.id]!;
  } catch {
    /* fall through */
  }
  return c.kind === 'room' ? 'Room' : 'Unknown';
}
