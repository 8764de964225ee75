// Wire shapes of the Switchboard protocol (shared/protocol.md), as the client reads them.

export type UserStatus = 'online' | 'away' | 'busy' | 'in_call' | 'offline';

export interface OnlineUser {
  userId: string;
  name: string;
  status: UserStatus;
}

export interface Ack {
  success: boolean;
  error?: string;
  code?: string;
  retryAfterMs?: number;
  [field: string]: unknown;
}

// §5 direct calls
export interface IncomingCallNew {
  callId: string;
  from: string;
  fromName: string;
}

export interface OutgoingCall {
  callId: string;
  to: string;
  toName: string;
  delivery?: 'ringing' | 'push';
}

// §6 rooms
export interface RoomParticipant {
  userId: string;
  name: string;
  socketId: string;
  joinedAt: number;
  isHost: boolean;
  status: string;
  producerIds: string[];
  consumerIds: string[];
  isMuted: boolean;
  isVideoEnabled: boolean;
}

export interface Reaction {
  emoji: string;
  userIds: string[];
  count: number;
}

export interface RoomMessage {
  messageId: string;
  userId: string;
  userName: string;
  content: string;
  timestamp: number;
  replyTo?: { messageId: string; userName: string; content: string };
  reactions: Reaction[];
}

export interface Room {
  roomId: string;
  roomType: 'group' | 'direct';
  roomName: string;
  hostId: string;
  hostName: string;
  status: 'pending' | 'active' | 'ended';
  isPrivate: boolean;
  participants: RoomParticipant[];
  createdAt: number;
  endedAt?: number;
  isHostless: boolean;
  invitedUserIds: string[];
  messages: RoomMessage[];
}

export interface RoomSummary {
  roomId: string;
  roomName: string;
  roomType: 'group' | 'direct';
  hostId: string;
  hostName: string;
  participantCount: number;
  isHostless: boolean;
  isPrivate: boolean;
  createdAt: number;
}

export interface RoomInvitation {
  roomId: string;
  roomType: 'group' | 'direct';
  fromUserId: string;
  fromUserName: string;
}

// §9 chat
export interface Conversation {
  id: string;
  type: 'direct' | 'group';
  name?: string | null;
  memberIds: string[];
  lastMessage?: Message | null;
  unreadCount: number;
  createdAt: number;
  createdBy?: string;
  adminIds?: string[];
}

export interface Message {
  id: string;
  conversationId: string;
  senderId: string;
  senderName: string;
  content: string;
  createdAt: number;
  editedAt?: number | null;
  deleted?: boolean;
  replyTo?: { id: string; senderName: string; content: string } | null;
  reactions: Reaction[];
  clientMessageId?: string | null;
  /** Client-side only: sent but not yet acknowledged. */
  pending?: boolean;
}

// §7 conversation calls
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export interface CallParticipant {
  id: string;
  callSessionId: string;
  userId?: string;
  anonymousId?: string;
  role: string;
  joinedAt: number;
  leftAt?: number;
  isAudioEnabled: boolean;
  isVideoEnabled: boolean;
}

export interface CallSession {
  id: string;
  conversationId?: string;
  type: 'audio' | 'video';
  mode: 'p2p' | 'sfu';
  status: string;
  initiator: string;
  roomId?: string;
  startedAt: number;
  answeredAt?: number;
  connectedAt?: number;
  endedAt?: number;
  duration?: number;
  outcome?: 'completed' | 'missed' | 'rejected' | 'cancelled' | 'failed';
  participants: CallParticipant[];
  kind?: 'direct' | 'room' | 'conversation';
  endReason?: string;
  endedBy?: string;
}

export interface ConversationCallInvite {
  callId: string;
  conversationId: string;
  type: 'audio' | 'video';
  initiator: string;
}

export interface Toast {
  id: number;
  kind: 'info' | 'success' | 'warning' | 'error';
  text: string;
}
