import { useEffect, useState } from 'react';
import { useUserStore } from './stores/userStore';
import { useAppStore } from './stores/appStore';
import { useCallStore } from './stores/callStore';
import { socketService } from './services/socket';
import { registerEvents } from './services/events';
import { teardown } from './services/calls';
import { SignIn } from './components/SignIn';
import { Sidebar } from './components/Sidebar';
import { Thread } from './components/Thread';
import { CallView } from './components/CallView';
import { ConnectionBanner, DeviceSettings, IncomingCalls, OutgoingCall, Toasts } from './components/Overlays';
import { Avatar } from './components/common';
import { Icon } from './components/Icon';
import type { UserStatus } from './types';

registerEvents();

/** Connects with the saved credentials on load (seed 002's useSocketConnection hook). */
function useSocketConnection() {
  useEffect(() => {
    const saved = useUserStore.getState().credentials;
    if (saved && !socketService.socket) socketService.connect(saved);
    const leave = () => teardown();
    window.addEventListener('pagehide', leave);
    return () => window.removeEventListener('pagehide', leave);
  }, []);
}

export function App() {
  useSocketConnection();
  const status = useUserStore((s) => s.connectionStatus);
  const signedIn = useUserStore((s) => !!s.userId) && status !== 'signed-out';
  const inCall = useCallStore((s) => !!s.currentCall);
  const [settings, setSettings] = useState(false);

  if (!signedIn) {
    return (
      <>
        <SignIn />
        <Toasts />
      </>
    );
  }
  return (
    <div className={`app ${inCall ? 'in-call' : ''}`}>
      <TopBar onOpenSettings={() => setSettings(true)} />
      <ConnectionBanner />
      <div className="layout">
        {inCall ? <CallView onOpenSettings={() => setSettings(true)} /> : <Home />}
      </div>
      <IncomingCalls />
      <OutgoingCall />
      <Toasts />
      {settings && <DeviceSettings onClose={() => setSettings(false)} />}
    </div>
  );
}

function Home() {
  const activeId = useAppStore((s) => s.activeConversationId);
  const conversation = useAppStore((s) => s.conversations.find((c) => c.id === s.activeConversationId));
  return (
    <div className={`home ${activeId ? 'has-thread' : ''}`}>
      <Sidebar />
      <main className="main">
        {conversation ? (
          <Thread conversation={conversation} />
        ) : (
          <div className="placeholder">
            <h2>Welcome to Switchboard</h2>
            <p className="muted">Pick a conversation, message or call someone from People, or start a room.</p>
          </div>
        )}
      </main>
    </div>
  );
}

function TopBar({ onOpenSettings }: { onOpenSettings: () => void }) {
  const name = useUserStore((s) => s.name);
  const status = useUserStore((s) => s.connectionStatus);
  const myStatus = useAppStore((s) => s.myStatus);
  const setStatus = (next: UserStatus) => {
    socketService
      .request<{ status: UserStatus }>('presence:status', { status: next })
      .then(() => useAppStore.getState().setMyStatus(next))
      .catch((err) => useAppStore.getState().toast('error', `Could not set status: ${err.message}`));
  };
  const signOut = () => {
    teardown();
    socketService.disconnect();
    useUserStore.getState().setCredentials(null);
    useUserStore.setState({ userId: '', name: '', connectionStatus: 'signed-out' });
    useAppStore.getState().reset();
  };
  return (
    <header className="topbar">
      <div className="brand">
        <span className="brand-mark">≡</span> <span className="brand-name">Switchboard</span>
      </div>
      <span className={`conn conn-${status}`} data-testid="connection-state" title="Connection">
        {status === 'connected' ? 'Connected' : status === 'reconnecting' ? 'Reconnecting…' : 'Connecting…'}
      </span>
      <div className="grow" />
      <select
        className="status-select"
        aria-label="Your status"
        data-testid="my-status"
        value={myStatus === 'in_call' || myStatus === 'offline' ? 'online' : myStatus}
        onChange={(e) => setStatus(e.target.value as UserStatus)}
      >
        <option value="online">● Online</option>
        <option value="away">● Away</option>
        <option value="busy">● Busy</option>
      </select>
      <button className="icon-btn" onClick={onOpenSettings} title="Devices" aria-label="Devices">
        <Icon name="settings" />
      </button>
      <div className="me" data-testid="me">
        <Avatar name={name} status={myStatus} size={30} />
        <span className="me-name">{name}</span>
      </div>
      <button className="small" onClick={signOut}>
        Sign out
      </button>
    </header>
  );
}
