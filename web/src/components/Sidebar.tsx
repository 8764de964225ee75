import { useEffect, useState } from 'react';
import { useAppStore, type Panel } from '../stores/appStore';
import { useUserStore } from '../stores/userStore';
import { useCallStore } from '../stores/callStore';
import * as chat from '../services/chat';
import * as calls from '../services/calls';
import { formatDuration } from '../services/events';
import { Avatar, Modal, statusLabel, timeLabel } from './common';
import { Icon } from './Icon';

const TABS: { id: Panel; label: string }[] = [
  { id: 'chats', label: 'Chats' },
  { id: 'people', label: 'People' },
  { id: 'rooms', label: 'Rooms' },
  { id: 'history', label: 'Calls' },
];

export function Sidebar() {
  const panel = useAppStore((s) => s.panel);
  const unread = useAppStore((s) => s.conversations.reduce((n, c) => n + (c.unreadCount > 0 ? 1 : 0), 0));
  const invitations = useAppStore((s) => s.roomInvitations.length);
  return (
    <aside className="sidebar">
      <nav className="tabs" role="tablist">
        {TABS.map((t) => (
          <button
            key={t.id}
            role="tab"
            aria-selected={panel === t.id}
            className={panel === t.id ? 'active' : ''}
            data-testid={`tab-${t.id}`}
            onClick={() => useAppStore.getState().setPanel(t.id)}
          >
            {t.label}
            {t.id === 'chats' && unread > 0 && <span className="badge">{unread}</span>}
            {t.id === 'rooms' && invitations > 0 && <span className="badge">{invitations}</span>}
          </button>
        ))}
      </nav>
      <div className="panel">
        {panel === 'chats' && <ChatsPanel />}
        {panel === 'people' && <PeoplePanel />}
        {panel === 'rooms' && <RoomsPanel />}
        {panel === 'history' && <HistoryPanel />}
      </div>
    </aside>
  );
}

function PeoplePanel() {
  const users = useAppStore((s) => s.onlineUsers);
  const myId = useUserStore((s) => s.userId);
  const others = users.filter((u) => u.userId !== myId);
  return (
    <div>
      <h3 className="panel-title">Online now · {others.length}</h3>
      {others.length === 0 && <p className="empty">Nobody else is online. Open another browser and sign in as someone else.</p>}
      <ul className="list" data-testid="online-users">
        {others.map((u) => (
          <li key={u.userId} className="list-item" data-testid={`user-${u.userId}`}>
            <Avatar name={u.name} status={u.status} />
            <div className="grow">
              <div className="title">{u.name}</div>
              <div className="subtitle" data-testid={`status-${u.userId}`}>
                {statusLabel(u.status)}
              </div>
            </div>
            <button className="icon-btn" title={`Message ${u.name}`} aria-label={`Message ${u.name}`} onClick={() => void chat.messageUser(u.userId)}>
              <Icon name="message" />
            </button>
            <button
              className="icon-btn call"
              title={`Call ${u.name}`}
              aria-label={`Call ${u.name}`}
              data-testid={`call-${u.userId}`}
              disabled={u.status === 'in_call'}
              onClick={() => void calls.callUser(u.userId, u.name)}
            >
              <Icon name="phone" />
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

function ChatsPanel() {
  const conversations = useAppStore((s) => s.conversations);
  const active = useAppStore((s) => s.activeConversationId);
  const names = useAppStore((s) => s.names);
  const typing = useAppStore((s) => s.typing);
  const myId = useUserStore((s) => s.userId);
  const [creating, setCreating] = useState(false);
  return (
    <div>
      <div className="panel-head">
        <h3 className="panel-title">Conversations</h3>
        <button className="small" data-testid="new-group" onClick={() => setCreating(true)}>
          + New group
        </button>
      </div>
      {conversations.length === 0 && <p className="empty">No conversations yet. Message someone from People.</p>}
      <ul className="list" data-testid="conversations">
        {conversations.map((c) => {
          const title = chat.conversationTitle(c, myId, names);
          const last = c.lastMessage;
          const typers = (typing[c.id] ?? []).filter((id) => id !== myId);
          return (
            <li
              key={c.id}
              className={`list-item clickable ${active === c.id ? 'selected' : ''}`}
              data-testid={`conversation-${title}`}
              onClick={() => void chat.openConversation(c.id)}
            >
              <Avatar name={title} />
              <div className="grow">
                <div className="title">
                  {title}
                  {c.type === 'group' && <span className="tag">group</span>}
                </div>
                <div className="subtitle">
                  {typers.length > 0 ? (
                    <em>typing…</em>
                  ) : last ? (
                    last.deleted ? (
                      <em>message deleted</em>
                    ) : (
                      `${last.senderId === myId ? 'You' : last.senderName}: ${last.content}`
                    )
                  ) : (
                    <em>no messages yet</em>
                  )}
                </div>
              </div>
              <div className="meta">
                {last && <span className="time">{timeLabel(last.createdAt)}</span>}
                {c.unreadCount > 0 && (
                  <span className="badge" data-testid="unread-badge">
                    {c.unreadCount}
                  </span>
                )}
              </div>
            </li>
          );
        })}
      </ul>
      {creating && <NewGroup onClose={() => setCreating(false)} />}
    </div>
  );
}

export function UserPicker({
  selected,
  onChange,
  exclude = [],
}: {
  selected: string[];
  onChange: (ids: string[]) => void;
  exclude?: string[];
}) {
  const users = useAppStore((s) => s.onlineUsers);
  const myId = useUserStore((s) => s.userId);
  const candidates = users.filter((u) => u.userId !== myId && !exclude.includes(u.userId));
  if (!candidates.length) return <p className="empty">Nobody online to add.</p>;
  return (
    <ul className="picker">
      {candidates.map((u) => (
        <li key={u.userId}>
          <label>
            <input
              type="checkbox"
              data-testid={`pick-${u.userId}`}
              checked={selected.includes(u.userId)}
              onChange={(e) =>
                onChange(e.target.checked ? [...selected, u.userId] : selected.filter((id) => id !== u.userId))
              }
            />
            <Avatar name={u.name} status={u.status} size={28} /> {u.name}
          </label>
        </li>
      ))}
    </ul>
  );
}

function NewGroup({ onClose }: { onClose: () => void }) {
  const [name, setName] = useState('');
  const [members, setMembers] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  return (
    <Modal title="New group" onClose={onClose}>
      <form
        className="form"
        onSubmit={(e) => {
          e.preventDefault();
          chat
            .createConversation('group', members, name.trim() || undefined)
            .then(onClose, (err) => setError(chat.errorText(err)));
        }}
      >
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} placeholder="Team" maxLength={128} data-testid="group-name" />
        </label>
        <div>Members</div>
        <UserPicker selected={members} onChange={setMembers} />
        {error && <div className="error-box">{error}</div>}
        <button className="primary" type="submit" disabled={!members.length} data-testid="create-group">
          Create group
        </button>
      </form>
    </Modal>
  );
}

function RoomsPanel() {
  const rooms = useAppStore((s) => s.rooms);
  const invitations = useAppStore((s) => s.roomInvitations);
  const inCall = useCallStore((s) => !!s.currentCall);
  const [creating, setCreating] = useState(false);
  const join = (roomId: string) =>
    calls.joinRoom(roomId).catch((err) => useAppStore.getState().toast('error', `Could not join: ${chat.errorText(err)}`));
  return (
    <div>
      {invitations.length > 0 && (
        <>
          <h3 className="panel-title">Invitations</h3>
          <ul className="list">
            {invitations.map((i) => (
              <li key={i.roomId} className="list-item">
                <Avatar name={i.fromUserName} />
                <div className="grow">
                  <div className="title">{i.fromUserName} invited you</div>
                  <div className="subtitle">{i.roomType === 'direct' ? 'Direct call' : 'Group room'}</div>
                </div>
                <button className="small primary" onClick={() => void calls.acceptRoomInvitation(i.roomId)}>
                  Join
                </button>
                <button className="small" onClick={() => void calls.declineRoomInvitation(i.roomId)}>
                  Decline
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
      <div className="panel-head">
        <h3 className="panel-title">Rooms</h3>
        <button className="small" data-testid="new-room" disabled={inCall} onClick={() => setCreating(true)}>
          + New room
        </button>
      </div>
      {rooms.length === 0 && <p className="empty">No live rooms. Create one and invite people.</p>}
      <ul className="list" data-testid="rooms">
        {rooms.map((r) => (
          <li key={r.roomId} className="list-item" data-testid={`room-${r.roomName}`}>
            <Avatar name={r.roomName || r.hostName} />
            <div className="grow">
              <div className="title">
                {r.roomName || `${r.hostName}'s room`}
                {r.isPrivate && <span className="tag">private</span>}
                {r.isHostless && <span className="tag warn">hostless</span>}
              </div>
              <div className="subtitle">
                {r.participantCount} in room · host {r.hostName}
              </div>
            </div>
            <button className="small primary" disabled={inCall} onClick={() => void join(r.roomId)} data-testid="join-room">
              Join
            </button>
          </li>
        ))}
      </ul>
      {creating && <NewRoom onClose={() => setCreating(false)} />}
    </div>
  );
}

function NewRoom({ onClose }: { onClose: () => void }) {
  const [name, setName] = useState('');
  const [invited, setInvited] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  return (
    <Modal title="New room" onClose={onClose}>
      <form
        className="form"
        onSubmit={(e) => {
          e.preventDefault();
          calls.createRoom(name.trim() || 'Room', invited).then(onClose, (err) => setError(chat.errorText(err)));
        }}
      >
        <label>
          Room name
          <input value={name} onChange={(e) => setName(e.target.value)} placeholder="Stand-up" maxLength={128} data-testid="room-name" />
        </label>
        <div>
          Invite <small className="muted">(an invitation makes the room private)</small>
        </div>
        <UserPicker selected={invited} onChange={setInvited} />
        {error && <div className="error-box">{error}</div>}
        <button className="primary" type="submit" data-testid="create-room">
          Create and join
        </button>
      </form>
    </Modal>
  );
}

function HistoryPanel() {
  const history = useAppStore((s) => s.callHistory);
  // Re-render when names arrive (describeCallPeer reads them).
  useAppStore((s) => s.names);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    calls.loadCallHistory().catch((err) => setError(chat.errorText(err)));
  }, []);
  return (
    <div>
      <div className="panel-head">
        <h3 className="panel-title">Call history</h3>
        <button className="small" onClick={() => void calls.loadCallHistory().catch((err) => setError(chat.errorText(err)))}>
          Refresh
        </button>
      </div>
      {error && <div className="error-box">{error}</div>}
      {history.length === 0 && !error && <p className="empty">No calls yet.</p>}
      <ul className="list" data-testid="call-history">
        {history.map((c) => {
          const outcome = c.outcome ?? c.status;
          return (
            <li key={c.id} className="list-item">
              <span className={`outcome outcome-${outcome}`}>{outcomeIcon(outcome)}</span>
              <div className="grow">
                <div className="title">{calls.describeCallPeer(c)}</div>
                <div className="subtitle">
                  {outcomeLabel(outcome)} · {c.kind === 'room' ? 'room' : c.kind === 'conversation' ? 'conversation call' : 'direct call'}
                  {c.duration != null && ` · ${formatDuration(c.duration)}`}
                </div>
              </div>
              <span className="time">{timeLabel(c.startedAt)}</span>
            </li>
          );
        })}
      </ul>
    </div>
  );
}

function outcomeIcon(o: string) {
  return { completed: '✓', missed: '↙', rejected: '✕', cancelled: '↗', failed: '!' }[o] ?? '•';
}

function outcomeLabel(o: string) {
  return (
    { completed: 'Completed', missed: 'Missed', rejected: 'Declined', cancelled: 'Cancelled', failed: 'Failed' }[o] ??
    'In progress'
  );
}
