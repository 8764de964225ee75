import { useEffect } from 'react';
import { useAppStore } from '../stores/appStore';
import { useUserStore } from '../stores/userStore';
import { useCallStore } from '../stores/callStore';
import { audioDeviceService, useDeviceStore } from '../services/devices';
import * as calls from '../services/calls';
import { conversationTitle } from '../services/chat';
import { Avatar, Modal } from './common';
import { Icon } from './Icon';

/** Ringing: direct calls, room invitations and conversation calls, with accept / decline. */
export function IncomingCalls() {
  const incoming = useAppStore((s) => s.incomingCalls);
  const invitations = useAppStore((s) => s.roomInvitations);
  const convInvites = useAppStore((s) => s.conversationCallInvites);
  const conversations = useAppStore((s) => s.conversations);
  const names = useAppStore((s) => s.names);
  const myId = useUserStore((s) => s.userId);
  const inCall = useCallStore((s) => !!s.currentCall);
  if (!incoming.length && !convInvites.length && (inCall || !invitations.length)) return null;
  return (
    <div className="ring-stack">
      {incoming.map((c) => (
        <div key={c.callId} className="ring-card" data-testid="incoming-call" role="alertdialog" aria-label={`Incoming call from ${c.fromName}`}>
          <Avatar name={c.fromName} size={48} />
          <div className="grow">
            <div className="title">{c.fromName}</div>
            <div className="subtitle ringing">is calling you…</div>
          </div>
          <button className="round accept" data-testid="accept-call" onClick={() => void calls.acceptIncoming(c.callId)} title="Accept">
            <Icon name="phone" />
          </button>
          <button className="round hangup" data-testid="decline-call" onClick={() => void calls.declineIncoming(c.callId)} title="Decline">
            <Icon name="close" />
          </button>
        </div>
      ))}
      {!inCall &&
        invitations.map((i) => (
          <div key={i.roomId} className="ring-card" data-testid="room-invitation">
            <Avatar name={i.fromUserName} size={48} />
            <div className="grow">
              <div className="title">{i.fromUserName}</div>
              <div className="subtitle ringing">invites you to a {i.roomType === 'direct' ? 'call' : 'room'}</div>
            </div>
            <button className="round accept" data-testid="accept-invitation" onClick={() => void calls.acceptRoomInvitation(i.roomId)} title="Join">
              <Icon name="phone" />
            </button>
            <button className="round hangup" onClick={() => void calls.declineRoomInvitation(i.roomId)} title="Decline">
              <Icon name="close" />
            </button>
          </div>
        ))}
      {convInvites.map((i) => {
        const c = conversations.find((x) => x.id === i.conversationId);
        const where = c ? conversationTitle(c, myId, names) : 'a conversation';
        return (
          <div key={i.callId} className="ring-card" data-testid="conversation-call-invite">
            <Avatar name={names[i.initiator] ?? i.initiator} size={48} />
            <div className="grow">
              <div className="title">{names[i.initiator] ?? i.initiator}</div>
              <div className="subtitle ringing">started a {i.type} call in {where}</div>
            </div>
            <button className="round accept" data-testid="join-call" disabled={inCall} onClick={() => void calls.joinConversationCall(i.callId, i.conversationId)} title="Join">
              <Icon name="phone" />
            </button>
            <button className="round hangup" onClick={() => useAppStore.getState().removeConversationCallInvite(i.callId)} title="Dismiss">
              <Icon name="close" />
            </button>
          </div>
        );
      })}
    </div>
  );
}

export function OutgoingCall() {
  const out = useAppStore((s) => s.outgoingCall);
  if (!out) return null;
  return (
    <div className="ring-stack">
      <div className="ring-card" data-testid="outgoing-call">
        <Avatar name={out.toName} size={48} />
        <div className="grow">
          <div className="title">{out.toName}</div>
          <div className="subtitle ringing">{out.delivery === 'push' ? 'Ringing their phone…' : 'Ringing…'}</div>
        </div>
        <button className="round hangup" data-testid="cancel-call" onClick={() => void calls.cancelOutgoing()} title="Cancel">
          <Icon name="close" />
        </button>
      </div>
    </div>
  );
}

export function Toasts() {
  const toasts = useAppStore((s) => s.toasts);
  return (
    <div className="toasts" aria-live="polite">
      {toasts.map((t) => (
        <div key={t.id} className={`toast ${t.kind}`} data-testid="toast" onClick={() => useAppStore.getState().dismissToast(t.id)}>
          {t.text}
        </div>
      ))}
    </div>
  );
}

export function ConnectionBanner() {
  const status = useUserStore((s) => s.connectionStatus);
  if (status !== 'reconnecting') return null;
  return (
    <div className="banner warn" data-testid="reconnecting">
      Connection lost: reconnecting… Your messages and call will resume.
    </div>
  );
}

export function DeviceSettings({ onClose }: { onClose: () => void }) {
  const devices = useDeviceStore((s) => s.devices);
  const choice = useDeviceStore((s) => s.choice);
  useEffect(() => {
    void audioDeviceService.getDevices();
  }, []);
  const list = (kind: MediaDeviceKind) => devices.filter((d) => d.kind === kind);
  const select = (kind: MediaDeviceKind, label: string, value: string, onChange: (id: string) => void) => (
    <label>
      {label}
      <select value={value} onChange={(e) => onChange(e.target.value)}>
        <option value="">System default</option>
        {list(kind).map((d, i) => (
          <option key={d.deviceId || i} value={d.deviceId}>
            {d.label || `${label} ${i + 1}`}
          </option>
        ))}
      </select>
    </label>
  );
  return (
    <Modal title="Devices" onClose={onClose}>
      <div className="form">
        {select('audioinput', 'Microphone', choice.audioInput, (id) => {
          audioDeviceService.setInputDevice(id);
          void calls.switchDevice('audio');
        })}
        {select('videoinput', 'Camera', choice.videoInput, (id) => {
          audioDeviceService.setCameraDevice(id);
          void calls.switchDevice('video');
        })}
        {select('audiooutput', 'Speaker', choice.audioOutput, (id) => audioDeviceService.setOutputDevice(id))}
        {devices.length > 0 && devices.every((d) => !d.label) && (
          <small className="muted">Device names appear once you allowed the camera and microphone (join a call once).</small>
        )}
      </div>
    </Modal>
  );
}
