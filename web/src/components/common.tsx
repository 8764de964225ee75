import { useEffect, useRef, type ReactNode } from 'react';
import { applySink } from '../services/devices';
import type { UserStatus } from '../types';
import { Icon } from './Icon';

export function Avatar({ name, status, size = 36 }: { name: string; status?: UserStatus; size?: number }) {
  const initials = name
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0]!.toUpperCase())
    .join('');
  let hue = 0;
  for (const ch of name) hue = (hue * 31 + ch.charCodeAt(0)) % 360;
  return (
    <span className="avatar" style={{ width: size, height: size, background: `hsl(${hue} 55% 45%)` }}>
      {initials || '?'}
      {status && <span className={`status-dot status-${status}`} title={statusLabel(status)} />}
    </span>
  );
}

export function statusLabel(s: UserStatus): string {
  return { online: 'Online', away: 'Away', busy: 'Busy', in_call: 'In a call', offline: 'Offline' }[s] ?? s;
}

export function Modal({ title, onClose, children }: { title: string; onClose: () => void; children: ReactNode }) {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && onClose();
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [onClose]);
  return (
    <div className="modal-backdrop" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <div className="modal" role="dialog" aria-label={title}>
        <div className="modal-head">
          <h2>{title}</h2>
          <button className="icon-btn" aria-label="Close" onClick={onClose}>
            <Icon name="close" />
          </button>
        </div>
        {children}
      </div>
    </div>
  );
}

/** A <video> (or <audio>) bound to a MediaStream, routed to the chosen speaker. */
export function MediaView({
  stream,
  muted,
  mirrored,
  audioOnly,
  testId,
}: {
  stream: MediaStream | null | undefined;
  muted?: boolean;
  mirrored?: boolean;
  audioOnly?: boolean;
  testId?: string;
}) {
  const ref = useRef<HTMLVideoElement & HTMLAudioElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    if (el.srcObject !== stream) el.srcObject = stream ?? null;
    applySink(el);
    if (stream) el.play().catch(() => undefined);
  }, [stream]);
  if (audioOnly) return <audio ref={ref} autoPlay data-testid={testId} />;
  return (
    <video
      ref={ref}
      autoPlay
      playsInline
      muted={muted}
      className={mirrored ? 'mirrored' : undefined}
      data-testid={testId}
    />
  );
}

export function timeLabel(ms: number): string {
  const d = new Date(ms);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return sameDay ? time : `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

export const REACTIONS = ['👍', '❤️', '😂', '🎉', '😮', '😢'];
