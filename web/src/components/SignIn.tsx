import { useState, type FormEvent } from 'react';
import { useUserStore, userIdForName } from '../stores/userStore';
import { socketService } from '../services/socket';

export function SignIn() {
  const authError = useUserStore((s) => s.authError);
  const connecting = useUserStore((s) => s.connectionStatus === 'connecting');
  const [mode, setMode] = useState<'name' | 'token'>('name');
  const [name, setName] = useState('');
  const [token, setToken] = useState('');

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const credentials =
      mode === 'name' ? { userId: userIdForName(name), name: name.trim() } : { token: token.trim() };
    if (mode === 'name' && !name.trim()) return;
    if (mode === 'token' && !token.trim()) return;
    useUserStore.getState().setCredentials(credentials);
    socketService.connect(credentials);
  };

  return (
    <div className="signin">
      <form className="signin-card" onSubmit={submit}>
        <div className="brand big">
          <span className="brand-mark">≡</span> Switchboard
        </div>
        <p className="muted">Chat, calls and rooms on your own server.</p>
        <div className="segmented" role="tablist">
          <button type="button" className={mode === 'name' ? 'active' : ''} onClick={() => setMode('name')}>
            Name (dev mode)
          </button>
          <button type="button" className={mode === 'token' ? 'active' : ''} onClick={() => setMode('token')}>
            Token
          </button>
        </div>
        {mode === 'name' ? (
          <label>
            Your name
            <input
              name="name"
              autoFocus
              autoComplete="nickname"
              maxLength={64}
              placeholder="e.g. Alice"
              value={name}
              onChange={(e) => setName(e.target.value)}
            />
            <small className="muted">
              Works when the server runs with <code>--dev</code>. Your user id will be “{userIdForName(name || '')}”.
            </small>
          </label>
        ) : (
          <label>
            Access token
            <textarea
              name="token"
              rows={4}
              placeholder="eyJhbGciOiJIUzI1NiIs…"
              value={token}
              onChange={(e) => setToken(e.target.value)}
            />
            <small className="muted">
              A JWT from your application backend, or <code>switchboard token --user alice</code>.
            </small>
          </label>
        )}
        {authError && <div className="error-box">{authError}</div>}
        <button className="primary" type="submit" disabled={connecting}>
          {connecting ? 'Connecting…' : 'Sign in'}
        </button>
      </form>
    </div>
  );
}
