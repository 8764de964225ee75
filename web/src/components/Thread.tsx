import { useEffect, useLayoutEffect, useRef, useState, type FormEvent } from 'react';
import { useAppStore } from '../stores/appStore';
import { useUserStore } from '../stores/userStore';
import { useCallStore } from '../stores/callStore';
import * as chat from '../services/chat';
import * as calls from '../services/calls';
import type { Conversation, Message } from '../types';
import { Avatar, Modal, REACTIONS, timeLabel } from './common';
import { UserPicker } from './Sidebar';
import { Icon } from './Icon';

/** A stable empty list: a selector returning a fresh [] would re-render forever. */
const NOBODY: string[] = [];

/** A conversation's thread; `compact` drops the header (the in-call chat of a conversation call). */
export function Thread({ conversation, compact = false }: { conversation: Conversation; compact?: boolean }) {
  const id = conversation.id;
  const thread = useAppStore((s) => s.threads[id]);
  const names = useAppStore((s) => s.names);
  const typing = useAppStore((s) => s.typing[id]) ?? NOBODY;
  const liveCall = useAppStore((s) => s.liveConversationCalls[id]);
  const inCall = useCallStore((s) => !!s.currentCall);
  const myId = useUserStore((s) => s.userId);
  const [replyTo, setReplyTo] = useState<Message | null>(null);
  const [editing, setEditing] = useState<Message | null>(null);
  const [showMembers, setShowMembers] = useState(false);
  const scroller = useRef<HTMLDivElement>(null);
  const stickToBottom = useRef(true);
  const prevHeight = useRef(0);
  const prevFirst = useRef<string | undefined>(undefined);

  const title = chat.conversationTitle(conversation, myId, names);
  const messages = thread?.messages ?? [];
  const typers = typing.filter((u) => u !== myId).map((u) => names[u] ?? u);

  // Keep the view pinned to the bottom for new messages, and in place when older ones load above.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const first = messages[0]?.id;
    if (prevFirst.current && first !== prevFirst.current && prevHeight.current) {
      el.scrollTop += el.scrollHeight - prevHeight.current;
    } else if (stickToBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
    prevFirst.current = first;
    prevHeight.current = el.scrollHeight;
  }, [messages, typers.length]);

  useEffect(() => {
    stickToBottom.current = true;
    setReplyTo(null);
    setEditing(null);
  }, [id]);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    stickToBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 60;
    prevHeight.current = el.scrollHeight;
    if (el.scrollTop < 80) void chat.loadOlder(id);
  };

  return (
    <section className={`thread ${compact ? 'compact' : ''}`} data-testid="thread">
      {!compact && (
      <header className="thread-head">
        <button className="icon-btn back" aria-label="Back" onClick={() => useAppStore.getState().openConversation(null)}>
          <Icon name="back" />
        </button>
        <Avatar name={title} />
        <div className="grow">
          <div className="title" data-testid="thread-title">
            {title}
          </div>
          <div className="subtitle">
            {conversation.type === 'group' ? `${conversation.memberIds.length} members` : 'Direct conversation'}
          </div>
        </div>
        {liveCall && !inCall ? (
          <button className="primary small" data-testid="join-conversation-call" onClick={() => void calls.joinConversationCall(liveCall, id)}>
            Join call
          </button>
        ) : (
          <button
            className="icon-btn call"
            title="Start a video call"
            aria-label="Start a video call"
            data-testid="start-conversation-call"
            disabled={inCall}
            onClick={() => void calls.startConversationCall(conversation)}
          >
            <Icon name="video" />
          </button>
        )}
        <button className="icon-btn" aria-label="Conversation details" onClick={() => setShowMembers(true)}>
          <Icon name="more" />
        </button>
      </header>
      )}

      <div className="messages" ref={scroller} onScroll={onScroll} data-testid="messages">
        {thread?.loadingOlder && <div className="loading">Loading older messages…</div>}
        {thread && !thread.hasMoreOlder && thread.loaded && (
          <div className="thread-start">This is the beginning of the conversation.</div>
        )}
        {messages.map((m, i) => (
          <MessageRow
            key={m.clientMessageId ?? m.id}
            m={m}
            mine={m.senderId === myId}
            myId={myId}
            grouped={i > 0 && messages[i - 1]!.senderId === m.senderId && m.createdAt - messages[i - 1]!.createdAt < 120_000}
            onReply={() => setReplyTo(m)}
            onEdit={() => setEditing(m)}
          />
        ))}
      </div>
      <div className="typing" data-testid="typing-indicator">
        {typers.length > 0 && `${typers.join(', ')} ${typers.length > 1 ? 'are' : 'is'} typing…`}
      </div>
      <Composer
        conversationId={id}
        replyTo={replyTo}
        editing={editing}
        onDone={() => {
          setReplyTo(null);
          setEditing(null);
          stickToBottom.current = true;
        }}
      />
      {showMembers && <ConversationDetails conversation={conversation} onClose={() => setShowMembers(false)} />}
    </section>
  );
}

function MessageRow({
  m,
  mine,
  myId,
  grouped,
  onReply,
  onEdit,
}: {
  m: Message;
  mine: boolean;
  myId: string;
  grouped: boolean;
  onReply: () => void;
  onEdit: () => void;
}) {
  const [picking, setPicking] = useState(false);
  const react = (emoji: string) => {
    setPicking(false);
    chat.react(m.conversationId, m.id, emoji).catch((err) => useAppStore.getState().toast('error', chat.errorText(err)));
  };
  return (
    <div className={`msg ${mine ? 'mine' : ''} ${grouped ? 'grouped' : ''} ${m.pending ? 'pending' : ''}`} data-testid="message">
      {!grouped && !mine && <div className="msg-author">{m.senderName}</div>}
      <div className="bubble">
        {m.replyTo && (
          <div className="quote">
            <strong>{m.replyTo.senderName}</strong> {m.replyTo.content || <em>deleted</em>}
          </div>
        )}
        {m.deleted ? (
          <em className="muted">This message was deleted</em>
        ) : (
          <span className="content" data-testid="message-content">
            {m.content}
          </span>
        )}
        <span className="msg-time">
          {m.editedAt && !m.deleted && 'edited · '}
          {m.pending ? 'sending…' : timeLabel(m.createdAt)}
        </span>
      </div>
      {m.reactions?.length > 0 && (
        <div className="reactions">
          {m.reactions.map((r) => (
            <button
              key={r.emoji}
              className={`reaction ${r.userIds.includes(myId) ? 'mine' : ''}`}
              onClick={() => react(r.emoji)}
              data-testid="reaction"
            >
              {r.emoji} {r.count}
            </button>
          ))}
        </div>
      )}
      {!m.deleted && !m.pending && (
        <div className="msg-actions">
          <button onClick={() => setPicking((p) => !p)} aria-label="React">
            <Icon name="smile" size={16} />
          </button>
          <button onClick={onReply} aria-label="Reply">
            <Icon name="reply" size={16} />
          </button>
          {mine && (
            <>
              <button onClick={onEdit} aria-label="Edit">
                <Icon name="edit" size={16} />
              </button>
              <button
                onClick={() =>
                  chat.deleteMessage(m.conversationId, m.id).catch((err) => useAppStore.getState().toast('error', chat.errorText(err)))
                }
                aria-label="Delete"
              >
                <Icon name="trash" size={16} />
              </button>
            </>
          )}
          {picking && (
            <div className="emoji-picker">
              {REACTIONS.map((e) => (
                <button key={e} onClick={() => react(e)}>
                  {e}
                </button>
              ))}
            </div>
          )}
        </div>
      )}
    </div>
  );
}

function Composer({
  conversationId,
  replyTo,
  editing,
  onDone,
}: {
  conversationId: string;
  replyTo: Message | null;
  editing: Message | null;
  onDone: () => void;
}) {
  const [text, setText] = useState('');
  const input = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    if (editing) setText(editing.content);
    if (editing || replyTo) input.current?.focus();
  }, [editing, replyTo]);
  useEffect(() => () => chat.typingStopped(conversationId), [conversationId]);

  const submit = (e?: FormEvent) => {
    e?.preventDefault();
    const content = text.trim();
    if (!content) return;
    setText('');
    chat.typingStopped(conversationId);
    if (editing) {
      chat
        .editMessage(conversationId, editing.id, content)
        .catch((err) => useAppStore.getState().toast('error', chat.errorText(err)));
    } else {
      void chat.sendMessage(conversationId, content, replyTo ?? undefined);
    }
    onDone();
  };

  return (
    <form className="composer" onSubmit={submit}>
      {(replyTo || editing) && (
        <div className="composer-context">
          {editing ? 'Editing message' : `Replying to ${replyTo!.senderName}: ${replyTo!.content.slice(0, 80)}`}
          <button
            type="button"
            className="icon-btn"
            aria-label="Cancel"
            onClick={() => {
              if (editing) setText('');
              onDone();
            }}
          >
            <Icon name="close" size={16} />
          </button>
        </div>
      )}
      <div className="composer-row">
        <textarea
          ref={input}
          rows={1}
          placeholder="Write a message…"
          value={text}
          data-testid="composer"
          onChange={(e) => {
            setText(e.target.value);
            if (e.target.value) chat.typingActivity(conversationId);
            else chat.typingStopped(conversationId);
          }}
          onBlur={() => chat.typingStopped(conversationId)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey) submit(e);
          }}
        />
        <button className="primary" type="submit" data-testid="send" disabled={!text.trim()}>
          {editing ? 'Save' : 'Send'}
        </button>
      </div>
    </form>
  );
}

function ConversationDetails({ conversation, onClose }: { conversation: Conversation; onClose: () => void }) {
  const names = useAppStore((s) => s.names);
  const myId = useUserStore((s) => s.userId);
  const [adding, setAdding] = useState<string[]>([]);
  const [name, setName] = useState(conversation.name ?? '');
  const isGroup = conversation.type === 'group';
  const isAdmin = conversation.createdBy === myId || (conversation.adminIds ?? []).includes(myId);
  const fail = (err: unknown) => useAppStore.getState().toast('error', chat.errorText(err));
  return (
    <Modal title={isGroup ? 'Group details' : 'Conversation'} onClose={onClose}>
      <div className="form">
        {isGroup && isAdmin && (
          <label>
            Name
            <div className="row">
              <input value={name} onChange={(e) => setName(e.target.value)} maxLength={128} />
              <button className="small" onClick={() => void chat.renameConversation(conversation.id, name.trim()).catch(fail)}>
                Rename
              </button>
            </div>
          </label>
        )}
        <div>Members</div>
        <ul className="list">
          {conversation.memberIds.map((uid) => (
            <li key={uid} className="list-item">
              <Avatar name={names[uid] ?? uid} size={28} />
              <div className="grow">
                {names[uid] ?? uid}
                {uid === myId && ' (you)'}
                {uid === conversation.createdBy && <span className="tag">creator</span>}
              </div>
              {isGroup && isAdmin && uid !== myId && uid !== conversation.createdBy && (
                <button className="small" onClick={() => void chat.removeMember(conversation.id, uid).catch(fail)}>
                  Remove
                </button>
              )}
            </li>
          ))}
        </ul>
        {isGroup && isAdmin && (
          <>
            <div>Add people</div>
            <UserPicker selected={adding} onChange={setAdding} exclude={conversation.memberIds} />
            <button
              className="small"
              disabled={!adding.length}
              onClick={() => void chat.addMembers(conversation.id, adding).then(() => setAdding([]), fail)}
            >
              Add selected
            </button>
          </>
        )}
        <div className="row danger-zone">
          <button
            className="danger small"
            data-testid="delete-conversation"
            onClick={() => void chat.deleteConversation(conversation.id).then(onClose, fail)}
          >
            Delete for me
          </button>
          {isGroup && (
            <button className="danger small" onClick={() => void chat.leaveConversation(conversation.id).then(onClose, fail)}>
              Leave group
            </button>
          )}
        </div>
      </div>
    </Modal>
  );
}
