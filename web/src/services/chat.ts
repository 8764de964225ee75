import { socketService, ServerError } from './socket';
import { useAppStore } from '../stores/appStore';
import { useUserStore } from '../stores/userStore';
import type { Conversation, Message, Reaction } from '../types';

// Conversations and messages (protocol §9): what the thread and the conversation list do.

const PAGE = 30;

function store() {
  return useAppStore.getState();
}

export function errorText(err: unknown): string {
  if (err instanceof ServerError) {
    if (err.code === 'RATE_LIMITED') return `Slow down: try again in ${Math.ceil((err.retryAfterMs ?? 1000) / 1000)} s`;
    return err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

/** Learns the display names of users we only know by id (offline members). */
export async function learnNames(userIds: string[]) {
  const known = store().names;
  const missing = [...new Set(userIds)].filter((id) => !known[id]);
  if (!missing.length) return;
  try {
    const { users } = await socketService.request<{ users: { userId: string; name: string }[] }>('users:get', {
      userIds: missing.slice(0, 500),
    });
    store().rememberNames(users);
  } catch {
    /* names fall back to ids */
  }
}

export async function loadConversations() {
  const { conversations } = await socketService.request<{ conversations: Conversation[] }>('conversation:list');
  store().setConversations(conversations);
  void learnNames(conversations.flatMap((c) => c.memberIds));
}

export async function openConversation(conversationId: string) {
  store().openConversation(conversationId);
  const thread = store().threads[conversationId];
  if (!thread?.loaded) {
    const { messages, hasMore } = await socketService.request<{ messages: Message[]; hasMore: boolean }>(
      'message:history',
      { conversationId, limit: PAGE },
    );
    store().setThread(conversationId, { hasMoreOlder: hasMore, loaded: true });
    store().addMessages(conversationId, messages);
  }
  await markRead(conversationId);
}

export async function markRead(conversationId: string) {
  const c = store().conversations.find((x) => x.id === conversationId);
  if (!c || c.unreadCount === 0) return;
  store().setUnread(conversationId, 0);
  await socketService.request('message:read', { conversationId }).catch(() => undefined);
}

export async function loadOlder(conversationId: string) {
  const thread = store().threads[conversationId];
  if (!thread || !thread.hasMoreOlder || thread.loadingOlder || !thread.messages.length) return;
  store().setThread(conversationId, { loadingOlder: true });
  try {
    const before = thread.messages.find((m) => !m.pending)?.id;
    const { messages, hasMore } = await socketService.request<{ messages: Message[]; hasMore: boolean }>(
      'message:history',
      { conversationId, before, limit: PAGE },
    );
    store().addMessages(conversationId, messages);
    store().setThread(conversationId, { hasMoreOlder: hasMore });
  } finally {
    store().setThread(conversationId, { loadingOlder: false });
  }
}

/** After a reconnect: fetches what was sent while we were away (`after` the newest we have). */
export async function catchUp(conversationId: string) {
  for (let page = 0; page < 20; page++) {
    const thread = store().threads[conversationId];
    const confirmed = thread?.messages.filter((m) => !m.pending) ?? [];
    const after = confirmed[confirmed.length - 1]?.id;
    if (!after) return;
    const { messages, hasMore } = await socketService.request<{ messages: Message[]; hasMore: boolean }>(
      'message:history',
      { conversationId, after, limit: 100 },
    );
    store().addMessages(conversationId, messages);
    if (!hasMore || !messages.length) return;
  }
}

export async function sendMessage(conversationId: string, content: string, replyTo?: Message) {
  const { userId, name } = useUserStore.getState();
  const clientMessageId = crypto.randomUUID();
  const optimistic: Message = {
    id: `pending-${clientMessageId}`,
    clientMessageId,
    conversationId,
    senderId: userId,
    senderName: name,
    content,
    createdAt: Date.now(),
    reactions: [],
    replyTo: replyTo ? { id: replyTo.id, senderName: replyTo.senderName, content: replyTo.content } : null,
    pending: true,
  };
  store().upsertMessage(optimistic);
  try {
    const { message } = await socketService.request<{ message: Message }>('message:send', {
      conversationId,
      content,
      clientMessageId,
      ...(replyTo ? { replyTo: replyTo.id } : {}),
    });
    store().upsertMessage(message);
  } catch (err) {
    store().setThread(conversationId, {
      messages: (store().threads[conversationId]?.messages ?? []).filter((m) => m.clientMessageId !== clientMessageId),
    });
    store().toast('error', `Message not sent: ${errorText(err)}`);
  }
}

export async function editMessage(conversationId: string, messageId: string, content: string) {
  const { message } = await socketService.request<{ message: Message }>('message:edit', {
    conversationId,
    messageId,
    content,
  });
  store().upsertMessage(message);
}

export async function deleteMessage(conversationId: string, messageId: string) {
  await socketService.request('message:delete', { conversationId, messageId });
  store().markDeleted(conversationId, messageId);
}

export async function react(conversationId: string, messageId: string, emoji: string) {
  const { reactions } = await socketService.request<{ reactions: Reaction[] }>('message:react', {
    conversationId,
    messageId,
    emoji,
  });
  store().setReactions(conversationId, messageId, reactions);
}

const typingSentAt: Record<string, number> = {};

/** Called on every keystroke: a `typing:start` at most every 3 s (the server expires it after 10 s). */
export function typingActivity(conversationId: string) {
  const now = Date.now();
  if (now - (typingSentAt[conversationId] ?? 0) < 3000) return;
  typingSentAt[conversationId] = now;
  socketService.send('typing:start', { conversationId });
}

export function typingStopped(conversationId: string) {
  if (!typingSentAt[conversationId]) return;
  delete typingSentAt[conversationId];
  socketService.send('typing:stop', { conversationId });
}

export async function createConversation(type: 'direct' | 'group', memberIds: string[], name?: string) {
  const { conversation } = await socketService.request<{ conversation: Conversation }>('conversation:create', {
    type,
    memberIds,
    ...(name ? { name } : {}),
  });
  store().upsertConversation({ ...conversation, unreadCount: conversation.unreadCount ?? 0 });
  await openConversation(conversation.id);
  return conversation;
}

/** Opens (creating if needed) the direct conversation with a user. */
export async function messageUser(userId: string) {
  const existing = store().conversations.find((c) => c.type === 'direct' && c.memberIds.includes(userId));
  if (existing) return openConversation(existing.id);
  await createConversation('direct', [userId]);
}

export async function addMembers(conversationId: string, memberIds: string[]) {
  const { conversation } = await socketService.request<{ conversation: Conversation }>('conversation:add-members', {
    conversationId,
    memberIds,
  });
  store().upsertConversation(conversation);
}

export async function removeMember(conversationId: string, userId: string) {
  const { conversation } = await socketService.request<{ conversation: Conversation }>('conversation:remove-member', {
    conversationId,
    userId,
  });
  store().upsertConversation(conversation);
}

export async function leaveConversation(conversationId: string) {
  await socketService.request('conversation:leave', { conversationId });
  store().removeConversation(conversationId);
}

export async function renameConversation(conversationId: string, name: string) {
  await socketService.request('conversation:rename', { conversationId, name });
}

export async function deleteConversation(conversationId: string) {
  await socketService.request('conversation:delete', { conversationId });
  store().removeConversation(conversationId);
}

export function conversationTitle(c: Conversation, myId: string, names: Record<string, string>): string {
  if (c.name) return c.name;
  const others = c.memberIds.filter((id) => id !== myId).map((id) => names[id] ?? id);
  return others.join(', ') || 'Just you';
}
