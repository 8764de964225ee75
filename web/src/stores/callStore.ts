import { create } from 'zustand';
import type { CallSession, Reaction, Room, RoomMessage } from '../types';

// The call the user is in (seed 004's useCallStore, widened to the three kinds of call
// Switchboard has): a room on the SFU (a group room, or the direct room of an accepted
// direct call), or a conversation call relayed peer to peer (`call:*`).

export type ActiveCall =
  /** `callId`: the conversation call this room carries since it moved to the SFU (§7). */
  | { kind: 'room'; roomId: string; room: Room; callId?: string }
  | { kind: 'p2p'; callId: string; conversationId: string; call: CallSession };

export interface RemoteMedia {
  /** Microphone + camera of the participant. */
  stream: MediaStream;
  /** Their screen share, when on. */
  screen?: MediaStream;
}

export interface PeerMediaState {
  isMuted: boolean;
  isVideoEnabled: boolean;
}

interface CallState {
  currentCall: ActiveCall | null;
  localStream: MediaStream | null;
  screenStream: MediaStream | null;
  /** userId → what we receive from them. */
  remote: Record<string, RemoteMedia>;
  /** userId → their announced media state. */
  peerMedia: Record<string, PeerMediaState>;
  /** userId of the participant speaking loudest (the SFU's activeSpeaker), if any. */
  activeSpeakerId: string | null;
  /** Room chat (`sendMessage` / `newMessage`). */
  messages: RoomMessage[];
  controls: { audioEnabled: boolean; videoEnabled: boolean; screenShareEnabled: boolean };
  isConnecting: boolean;
  /** Media could not be set up (no SFU, no permission…); the call goes on without it. */
  mediaError: string | null;
  /** The user set the in-call chat or participants panel open. */
  sidePanel: 'chat' | 'people' | null;

  setCurrentCall: (c: ActiveCall | null) => void;
  setRoom: (room: Room) => void;
  setLocalStream: (s: MediaStream | null) => void;
  setScreenStream: (s: MediaStream | null) => void;
  addRemoteTrack: (userId: string, track: MediaStreamTrack, source: 'camera' | 'mic' | 'screen') => void;
  removeRemoteTrack: (userId: string, trackId: string) => void;
  removeRemote: (userId: string) => void;
  setPeerMedia: (userId: string, m: PeerMediaState) => void;
  setActiveSpeaker: (userId: string | null) => void;
  setMessages: (m: RoomMessage[]) => void;
  upsertRoomMessage: (m: RoomMessage) => void;
  setRoomReactions: (messageId: string, reactions: Reaction[]) => void;
  setControls: (c: Partial<CallState['controls']>) => void;
  setConnecting: (v: boolean) => void;
  setMediaError: (e: string | null) => void;
  setSidePanel: (p: CallState['sidePanel']) => void;
  reset: () => void;
}

const initial = {
  currentCall: null,
  localStream: null,
  screenStream: null,
  remote: {},
  peerMedia: {},
  activeSpeakerId: null,
  messages: [],
  controls: { audioEnabled: true, videoEnabled: true, screenShareEnabled: false },
  isConnecting: false,
  mediaError: null,
  sidePanel: null,
};

export const useCallStore = create<CallState>((set, get) => ({
  ...initial,
  setCurrentCall: (currentCall) => set({ currentCall }),
  setRoom: (room) =>
    set((s) =>
      s.currentCall?.kind === 'room' && s.currentCall.roomId === room.roomId
        ? { currentCall: { ...s.currentCall, room } }
        : {},
    ),
  setLocalStream: (localStream) => set({ localStream }),
  setScreenStream: (screenStream) => set({ screenStream }),
  addRemoteTrack: (userId, track, source) =>
    set((s) => {
      const prev = s.remote[userId];
      if (source === 'screen') {
        const screen = new MediaStream([track]);
        return { remote: { ...s.remote, [userId]: { stream: prev?.stream ?? new MediaStream(), screen } } };
      }
      // A new MediaStream object per change, so <video> elements re-bind.
      const tracks = (prev?.stream.getTracks() ?? []).filter((t) => t.kind !== track.kind);
      const stream = new MediaStream([...tracks, track]);
      return { remote: { ...s.remote, [userId]: { ...prev, stream } } };
    }),
  removeRemoteTrack: (userId, trackId) =>
    set((s) => {
      const prev = s.remote[userId];
      if (!prev) return {};
      if (prev.screen?.getTracks().some((t) => t.id === trackId)) {
        return { remote: { ...s.remote, [userId]: { ...prev, screen: undefined } } };
      }
      const stream = new MediaStream(prev.stream.getTracks().filter((t) => t.id !== trackId));
      return { remote: { ...s.remote, [userId]: { ...prev, stream } } };
    }),
  removeRemote: (userId) =>
    set((s) => {
      const remote = { ...s.remote };
      delete remote[userId];
      return { remote };
    }),
  setPeerMedia: (userId, m) => set((s) => ({ peerMedia: { ...s.peerMedia, [userId]: m } })),
  setActiveSpeaker: (activeSpeakerId) => set({ activeSpeakerId }),
  setMessages: (messages) => set({ messages }),
  upsertRoomMessage: (m) =>
    set((s) => {
      const i = s.messages.findIndex((x) => x.messageId === m.messageId);
      if (i < 0) return { messages: [...s.messages, m] };
      const messages = s.messages.slice();
      messages[i] = m;
      return { messages };
    }),
  setRoomReactions: (messageId, reactions) =>
    set((s) => ({ messages: s.messages.map((m) => (m.messageId === messageId ? { ...m, reactions } : m)) })),
  setControls: (c) => set((s) => ({ controls: { ...s.controls, ...c } })),
  setConnecting: (isConnecting) => set({ isConnecting }),
  setMediaError: (mediaError) => set({ mediaError }),
  setSidePanel: (sidePanel) => set({ sidePanel }),
  reset: () => {
    const { localStream, screenStream } = get();
    localStream?.getTracks().forEach((t) => t.stop());
    screenStream?.getTracks().forEach((t) => t.stop());
    set({ ...initial, controls: { ...initial.controls } });
  },
}));
