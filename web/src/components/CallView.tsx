import { useEffect, useState, type FormEvent } from 'react';
import { useCallStore } from '../stores/callStore';
import { useAppStore } from '../stores/appStore';
import { useUserStore } from '../stores/userStore';
import * as calls from '../services/calls';
import { conversationTitle, openConversation } from '../services/chat';
import type { RoomMessage } from '../types';
import { Avatar, MediaView, REACTIONS, timeLabel } from './common';
import { Icon } from './Icon';
import { Thread } from './Thread';

interface Tile {
  key: string;
  userId: string;
  name: string;
  stream: MediaStream | null;
  isLocal: boolean;
  isScreen: boolean;
  muted: boolean;
  videoOn: boolean;
}

export function CallView({ onOpenSettings }: { onOpenSettings: () => void }) {
  const current = useCallStore((s) => s.currentCall)!;
  const local = useCallStore((s) => s.localStream);
  const screen = useCallStore((s) => s.screenStream);
  const remote = useCallStore((s) => s.remote);
  const peerMedia = useCallStore((s) => s.peerMedia);
  const controls = useCallStore((s) => s.controls);
  const activeSpeaker = useCallStore((s) => s.activeSpeakerId);
  const connecting = useCallStore((s) => s.isConnecting);
  const mediaError = useCallStore((s) => s.mediaError);
  const sidePanel = useCallStore((s) => s.sidePanel);
  const names = useAppStore((s) => s.names);
  const conversations = useAppStore((s) => s.conversations);
  const myId = useUserStore((s) => s.userId);
  const myName = useUserStore((s) => s.name);
  const conversation = current.kind === 'p2p' ? conversations.find((c) => c.id === current.conversationId) : undefined;
  const conversationId = conversation?.id;
  useEffect(() => {
    // The conversation's thread is the chat of its call (and where the user lands after it).
    if (conversationId) void openConversation(conversationId).catch(() => undefined);
  }, [conversationId]);

  const participantIds =
    current.kind === 'room'
      ? current.room.participants.map((p) => p.userId)
      : [...new Set(current.call.participants.filter((p) => !p.leftAt).map((p) => p.userId ?? p.anonymousId ?? ''))];
  const others = [...new Set([...participantIds, ...Object.keys(remote)])].filter((id) => id && id !== myId);

  const title =
    current.kind === 'room'
      ? current.room.roomType === 'direct'
        ? `Call with ${others.map((id) => names[id] ?? id).join(', ') || '…'}`
        : current.room.roomName || 'Room'
      : (() => {
          const c = conversations.find((x) => x.id === current.conversationId);
          if (!c) return 'Call';
          const t = conversationTitle(c, myId, names);
          return c.type === 'direct' ? `Call with ${t}` : t;
        })();

  const tiles: Tile[] = [
    {
      key: 'local',
      userId: myId,
      name: `${myName} (you)`,
      stream: local,
      isLocal: true,
      isScreen: false,
      muted: !controls.audioEnabled,
      videoOn: controls.videoEnabled && !!local?.getVideoTracks().length,
    },
    ...(screen
      ? [{ key: 'local-screen', userId: myId, name: 'Your screen', stream: screen, isLocal: true, isScreen: true, muted: true, videoOn: true }]
      : []),
    ...others.flatMap((id): Tile[] => {
      const media = remote[id];
      const state = peerMedia[id];
      const t: Tile[] = [
        {
          key: id,
          userId: id,
          name: names[id] ?? id,
          stream: media?.stream ?? null,
          isLocal: false,
          isScreen: false,
          muted: state?.isMuted ?? false,
          videoOn: (state?.isVideoEnabled ?? true) && !!media?.stream.getVideoTracks().length,
        },
      ];
      if (media?.screen)
        t.push({ key: `${id}-screen`, userId: id, name: `${names[id] ?? id}'s screen`, stream: media.screen, isLocal: false, isScreen: true, muted: true, videoOn: true });
      return t;
    }),
  ];

  const canEnd =
    current.kind === 'room' &&
    (current.room.roomType === 'direct' || current.room.hostId === myId || current.room.isHostless);
  const set = useCallStore.getState().setSidePanel;

  return (
    <section className="call-screen" data-testid="call-view">
      <header className="call-head">
        <div className="grow">
          <div className="title" data-testid="call-title">
            {title}
          </div>
          <div className="subtitle">
            {current.kind === 'room' ? 'Media server (SFU)' : 'Peer to peer'} · {others.length + 1} in call
            {connecting && ' · connecting…'}
          </div>
        </div>
        {current.kind === 'room' && current.room.isHostless && (
          <span className="tag warn" data-testid="hostless">
            Host left · anyone can end the call
          </span>
        )}
      </header>
      {mediaError && <div className="banner warn">{mediaError}</div>}
      <div className="call-body">
        <div className={`grid n${Math.min(tiles.length, 9)}`} data-testid="video-grid">
          {tiles.map((t) => (
            <div
              key={t.key}
              className={`tile ${activeSpeaker === t.userId && !t.isScreen ? 'speaking' : ''} ${t.isScreen ? 'screen' : ''}`}
              data-testid={t.isLocal ? 'tile-local' : `tile-${t.userId}`}
            >
              <MediaView stream={t.stream} muted={t.isLocal} mirrored={t.isLocal && !t.isScreen} testId={t.isLocal ? undefined : `video-${t.key}`} />
              {!t.videoOn && (
                <div className="tile-placeholder">
                  <Avatar name={t.name} size={72} />
                </div>
              )}
              <div className="tile-label">
                {t.muted && !t.isScreen && <Icon name="mic-off" size={14} />} {t.name}
              </div>
            </div>
          ))}
        </div>
        {sidePanel && (
          <aside className="call-side">
            <div className="segmented">
              <button className={sidePanel === 'chat' ? 'active' : ''} onClick={() => set('chat')}>
                Chat
              </button>
              <button className={sidePanel === 'people' ? 'active' : ''} onClick={() => set('people')}>
                People ({others.length + 1})
              </button>
              <button className="icon-btn" aria-label="Close panel" onClick={() => set(null)}>
                <Icon name="close" size={16} />
              </button>
            </div>
            {sidePanel === 'people' ? (
              <ul className="list" data-testid="participants">
                {[myId, ...others].map((id) => {
                  const state = id === myId ? { isMuted: !controls.audioEnabled, isVideoEnabled: controls.videoEnabled } : peerMedia[id];
                  const isHost = current.kind === 'room' && current.room.hostId === id && !current.room.isHostless;
                  return (
                    <li key={id} className="list-item">
                      <Avatar name={names[id] ?? (id === myId ? myName : id)} size={28} />
                      <div className="grow">
                        {id === myId ? `${myName} (you)` : (names[id] ?? id)}
                        {isHost && <span className="tag">host</span>}
                      </div>
                      <Icon name={state?.isMuted ? 'mic-off' : 'mic'} size={16} />
                      <Icon name={state?.isVideoEnabled === false ? 'video-off' : 'video'} size={16} />
                    </li>
                  );
                })}
              </ul>
            ) : current.kind === 'room' ? (
              <RoomChat />
            ) : conversation ? (
              <Thread conversation={conversation} compact />
            ) : null}
          </aside>
        )}
      </div>
      <footer className="call-controls">
        <button className={`round ${controls.audioEnabled ? '' : 'off'}`} data-testid="toggle-audio" onClick={() => void calls.toggleAudio()} title={controls.audioEnabled ? 'Mute' : 'Unmute'}>
          <Icon name={controls.audioEnabled ? 'mic' : 'mic-off'} />
        </button>
        <button className={`round ${controls.videoEnabled ? '' : 'off'}`} data-testid="toggle-video" onClick={() => void calls.toggleVideo()} title={controls.videoEnabled ? 'Camera off' : 'Camera on'}>
          <Icon name={controls.videoEnabled ? 'video' : 'video-off'} />
        </button>
        <button className={`round ${controls.screenShareEnabled ? 'on' : ''}`} data-testid="toggle-screen" onClick={() => void calls.toggleScreenShare()} title="Share screen">
          <Icon name="screen" />
        </button>
        <button className={`round ${sidePanel === 'chat' ? 'on' : ''}`} data-testid="toggle-chat" onClick={() => set(sidePanel === 'chat' ? null : 'chat')} title="Chat">
          <Icon name="chat" />
        </button>
        <button className={`round ${sidePanel === 'people' ? 'on' : ''}`} onClick={() => set(sidePanel === 'people' ? null : 'people')} title="Participants">
          <Icon name="users" />
        </button>
        <button className="round" onClick={onOpenSettings} title="Devices">
          <Icon name="settings" />
        </button>
        <button className="round hangup" data-testid="leave-call" onClick={() => void calls.leaveCall()} title="Leave">
          Leave
        </button>
        {canEnd && (
          <button className="round hangup" data-testid="end-call" onClick={() => void calls.endRoom()} title="End for everyone">
            End
          </button>
        )}
      </footer>
    </section>
  );
}

function RoomChat() {
  const messages = useCallStore((s) => s.messages);
  const myId = useUserStore((s) => s.userId);
  const [text, setText] = useState('');
  const [replyTo, setReplyTo] = useState<RoomMessage | null>(null);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const content = text.trim();
    if (!content) return;
    setText('');
    void calls.sendRoomMessage(content, replyTo?.messageId);
    setReplyTo(null);
  };
  return (
    <div className="room-chat">
      <div className="messages" data-testid="room-messages">
        {messages.length === 0 && <p className="empty">Messages here are seen by everyone in the call.</p>}
        {messages.map((m) => (
          <div key={m.messageId} className={`msg ${m.userId === myId ? 'mine' : ''}`} data-testid="room-message">
            {m.userId !== myId && <div className="msg-author">{m.userName}</div>}
            <div className="bubble">
              {m.replyTo && (
                <div className="quote">
                  <strong>{m.replyTo.userName}</strong> {m.replyTo.content}
                </div>
              )}
              <span className="content">{m.content}</span>
              <span className="msg-time">{timeLabel(m.timestamp)}</span>
            </div>
            {m.reactions?.length > 0 && (
              <div className="reactions">
                {m.reactions.map((r) => (
                  <button key={r.emoji} className={`reaction ${r.userIds.includes(myId) ? 'mine' : ''}`} onClick={() => void calls.reactToRoomMessage(m.messageId, r.emoji)}>
                    {r.emoji} {r.count}
                  </button>
                ))}
              </div>
            )}
            <div className="msg-actions">
              {REACTIONS.slice(0, 3).map((e) => (
                <button key={e} onClick={() => void calls.reactToRoomMessage(m.messageId, e)}>
                  {e}
                </button>
              ))}
              <button onClick={() => setReplyTo(m)} aria-label="Reply">
                <Icon name="reply" size={16} />
              </button>
            </div>
          </div>
        ))}
      </div>
      <form className="composer" onSubmit={submit}>
        {replyTo && (
          <div className="composer-context">
            Replying to {replyTo.userName}
            <button type="button" className="icon-btn" onClick={() => setReplyTo(null)} aria-label="Cancel reply">
              <Icon name="close" size={16} />
            </button>
          </div>
        )}
        <div className="composer-row">
          <input value={text} onChange={(e) => setText(e.target.value)} placeholder="Message everyone" data-testid="room-composer" />
          <button className="primary" type="submit" disabled={!text.trim()}>
            Send
          </button>
        </div>
      </form>
    </div>
  );
}
