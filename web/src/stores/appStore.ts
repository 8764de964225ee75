import { create } from 'zustand';
import type {
  CallSession,
  Conversation,
  ConversationCallInvite,
  IncomingCallNew,
  Message,
  OnlineUser,
  OutgoingCall,
  Reaction,
  RoomInvitation,
  RoomSummary,
  Toast,
  UserStatus,
} from '../types';

// Everything the server pushes that is not media (seed 002's voiceChatStore, minus the
// call media, which lives in callStore). Socket listeners call these actions; components
// read slices of the state.

export type Panel = 'chats' | 'people' | 'rooms' | 'history';

export interface ThreadState {
  messages: Message[];
  /** More messages older than the first one exist on the server. */
  hasMoreOlder: boolean;
  loadingOlder: boolean;
  loaded: boolean;
}

interface AppState {
  // presence
  onlineUsers: OnlineUser[];
  myStatus: UserStatus;
  /** Display names of every user met so far, for conversations with offline members. */
  names: Record<string, string>;
  // navigation
  panel: Panel;
  activeConversationId: string | null;
  // chat
  conversations: Conversation[];
  threads: Record<string, ThreadState>;
  /** conversationId → user ids typing there now. */
  typing: Record<string, string[]>;
  // rooms
  rooms: RoomSummary[];
  roomInvitations: RoomInvitation[];
  // ringing
  incomingCalls: IncomingCallNew[];
  outgoingCall: OutgoingCall | null;
  conversationCallInvites: ConversationCallInvite[];
  /** conversationId → the live call there, so members can join it. */
  liveConversationCalls: Record<string, string>;
  // history
  callHistory: CallSession[];
  toasts: Toast[];

  setOnlineUsers: (users: OnlineUser[]) => void;
  setMyStatus: (s: UserStatus) => void;
  rememberNames: (users: { userId: string; name: string }[]) => void;
  setPanel: (p: Panel) => void;
  openConversation: (id: string | null) => void;
  setConversations: (c: Conversation[]) => void;
  upsertConversation: (c: Conversation) => void;
  removeConversation: (id: string) => void;
  setUnread: (conversationId: string, count: number) => void;
  setThread: (conversationId: string, patch: Partial<ThreadState>) => void;
  addMessages: (conversationId: string, messages: Message[]) => void;
  upsertMessage: (message: Message) => void;
  setReactions: (conversationId: string, messageId: string, reactions: Reaction[]) => void;
  markDeleted: (conversationId: string, messageId: string) => void;
  setTyping: (conversationId: string, userId: string, isTyping: boolean) => void;
  setRooms: (rooms: RoomSummary[]) => void;
  addRoomInvitation: (i: RoomInvitation) => void;
  removeRoomInvitation: (roomId: string) => void;
  addIncomingCall: (c: IncomingCallNew) => void;
  removeIncomingCall: (callId: string) => void;
  setOutgoingCall: (c: OutgoingCall | null) => void;
  addConversationCallInvite: (i: ConversationCallInvite) => void;
  removeConversationCallInvite: (callId: string) => void;
  setLiveConversationCall: (conversationId: string, callId: string | null) => void;
  setCallHistory: (calls: CallSession[]) => void;
  toast: (kind: Toast['kind'], text: string) => void;
  dismissToast: (id: number) => void;
  reset: () => void;
}

let toastSeq = 0;

const emptyThread: ThreadState = { messages: [], hasMoreOlder: false, loadingOlder: false, loaded: false };

const initial = {
  onlineUsers: [] as OnlineUser[],
  myStatus: 'online' as UserStatus,
  names: {} as Record<string, string>,
  panel: 'chats' as Panel,
  activeConversationId: null as string | null,
  conversations: [] as Conversation[],
  threads: {} as Record<string, ThreadState>,
  typing: {} as Record<string, string[]>,
  rooms: [] as RoomSummary[],
  roomInvitations: [] as RoomInvitation[],
  incomingCalls: [] as IncomingCallNew[],
  outgoingCall: null as OutgoingCall | null,
  conversationCallInvites: [] as ConversationCallInvite[],
  liveConversationCalls: {} as Record<string, string>,
  callHistory: [] as CallSession[],
  toasts: [] as Toast[],
};

function byTime(a: Message, b: Message) {
  return a.createdAt - b.createdAt;
}

/** Merges messages by id (or the client id of a pending send), keeping time order. */
function mergeMessages(existing: Message[], incoming: Message[]): Message[] {
  const out = existing.slice();
  for (const m of incoming) {
    const i = out.findIndex(
      (e) => e.id === m.id || (m.clientMessageId && e.clientMessageId === m.clientMessageId),
    );
    if (i >= 0) out[i] = { ...m, pending: false };
    else out.push(m);
  }
  return out.sort(byTime);
}

function sortConversations(list: Conversation[]): Conversation[] {
  const at = (c: Conversation) => c.lastMessage?.createdAt ?? c.createdAt;
  return list.slice().sort((a, b) => at(b) - at(a));
}

export const useAppStore = create<AppState>((set, get) => ({
  ...initial,

  setOnlineUsers: (onlineUsers) => {
    set({ onlineUsers });
    get().rememberNames(onlineUsers);
  },
  setMyStatus: (myStatus) => set({ myStatus }),
  rememberNames: (users) =>
    set((s) => {
      const names = { ...s.names };
      for (const u of users) if (u.name) names[u.userId] = u.name;
      return { names };
    }),
  setPanel: (panel) => set({ panel }),
  openConversation: (activeConversationId) => set({ activeConversationId }),

  setConversations: (c) => set({ conversations: sortConversations(c) }),
  upsertConversation: (c) =>
    set((s) => {
      const rest = s.conversations.filter((x) => x.id !== c.id);
      const old = s.conversations.find((x) => x.id === c.id);
      return {
        conversations: sortConversations([
          ...rest,
          { ...old, ...c, unreadCount: c.unreadCount ?? old?.unreadCount ?? 0 },
        ]),
      };
    }),
  removeConversation: (id) =>
    set((s) => ({
      conversations: s.conversations.filter((c) => c.id !== id),
      activeConversationId: s.activeConversationId === id ? null : s.activeConversationId,
      threads: { ...s.threads, [id]: emptyThread },
    })),
  setUnread: (conversationId, count) =>
    set((s) => ({
      conversations: s.conversations.map((c) =>
        c.id === conversationId ? { ...c, unreadCount: count } : c,
      ),
    })),

  setThread: (conversationId, patch) =>
    set((s) => ({
      threads: {
        ...s.threads,
        [conversationId]: { ...(s.threads[conversationId] ?? emptyThread), ...patch },
      },
    })),
  addMessages: (conversationId, messages) =>
    set((s) => {
      const t = s.threads[conversationId] ?? emptyThread;
      const merged = mergeMessages(t.messages, messages);
      return { threads: { ...s.threads, [conversationId]: { ...t, messages: merged } } };
    }),
  upsertMessage: (m) =>
    set((s) => {
      const t = s.threads[m.conversationId] ?? emptyThread;
      const threads = {
        ...s.threads,
        [m.conversationId]: { ...t, messages: mergeMessages(t.messages, [m]) },
      };
      const conversations = sortConversations(
        s.conversations.map((c) => {
          if (c.id !== m.conversationId) return c;
          const last = c.lastMessage;
          if (!last || last.id === m.id || last.createdAt <= m.createdAt) return { ...c, lastMessage: m };
          return c;
        }),
      );
      return { threads, conversations };
    }),
  setReactions: (conversationId, messageId, reactions) =>
    set((s) => {
      const t = s.threads[conversationId];
      if (!t) return {};
      return {
        threads: {
          ...s.threads,
          [conversationId]: {
            ...t,
            messages: t.messages.map((m) => (m.id === messageId ? { ...m, reactions } : m)),
          },
        },
      };
    }),
  markDeleted: (conversationId, messageId) =>
    set((s) => {
      const t = s.threads[conversationId];
      if (!t) return {};
      return {
        threads: {
          ...s.threads,
          [conversationId]: {
            ...t,
            messages: t.messages.map((m) =>
              m.id === messageId ? { ...m, deleted: true, content: '', reactions: [] } : m,
            ),
          },
        },
      };
    }),
  setTyping: (conversationId, userId, isTyping) =>
    set((s) => {
      const now = new Set(s.typing[conversationId] ?? []);
      if (isTyping) now.add(userId);
      else now.delete(userId);
      return { typing: { ...s.typing, [conversationId]: [...now] } };
    }),

  setRooms: (rooms) => set({ rooms }),
  addRoomInvitation: (i) =>
    set((s) => ({ roomInvitations: [...s.roomInvitations.filter((x) => x.roomId !== i.roomId), i] })),
  removeRoomInvitation: (roomId) =>
    set((s) => ({ roomInvitations: s.roomInvitations.filter((x) => x.roomId !== roomId) })),

  addIncomingCall: (c) =>
    set((s) => ({ incomingCalls: [...s.incomingCalls.filter((x) => x.callId !== c.callId), c] })),
  removeIncomingCall: (callId) =>
    set((s) => ({ incomingCalls: s.incomingCalls.filter((x) => x.callId !== callId) })),
  setOutgoingCall: (outgoingCall) => set({ outgoingCall }),
  addConversationCallInvite: (i) =>
    set((s) => ({
      conversationCallInvites: [...s.conversationCallInvites.filter((x) => x.callId !== i.callId), i],
    })),
  removeConversationCallInvite: (callId) =>
    set((s) => ({ conversationCallInvites: s.conversationCallInvites.filter((x) => x.callId !== callId) })),
  setLiveConversationCall: (conversationId, callId) =>
    set((s) => {
      const live = { ...s.liveConversationCalls };
      if (callId) live[conversationId] = callId;
      else delete live[conversationId];
      return { liveConversationCalls: live };
    }),

  setCallHistory: (callHistory) => set({ callHistory }),
  toast: (kind, text) => {
    const id = ++toastSeq;
    set((s) => ({ toasts: [...s.toasts.slice(-4), { id, kind, text }] }));
    setTimeout(() => get().dismissToast(id), 6000);
  },
  dismissToast: (id) => set((s) => ({ toasts: s.toasts.filter((t) => t.id !== id) })),
  reset: () => set({ ...initial }),
}));

export function displayName(userId: string): string {
  return useAppStore.getState().names[userId] ?? userId;
}
