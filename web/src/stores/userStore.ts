import { create } from 'zustand';

// Who is signed in and how the connection is doing (seed 002's userStore). The
// credentials live in localStorage; the server-assigned device id lives in
// sessionStorage, so a reload keeps its device session while a second tab is a second
// device (one device id per tab: a shared one would replace the other tab's socket).

export type ConnectionStatus = 'signed-out' | 'connecting' | 'connected' | 'reconnecting';

export interface Credentials {
  /** Dev mode: the handshake names the user directly. */
  userId?: string;
  name?: string;
  /** Outside dev mode: a JWT minted by the application backend. */
  token?: string;
}

interface UserState {
  credentials: Credentials | null;
  userId: string;
  name: string;
  deviceId: string | null;
  connectionStatus: ConnectionStatus;
  /** Why the last connection attempt failed, shown on the sign-in screen. */
  authError: string | null;
  setCredentials: (c: Credentials | null) => void;
  setIdentity: (userId: string, name: string, deviceId: string) => void;
  setConnectionStatus: (s: ConnectionStatus) => void;
  setAuthError: (e: string | null) => void;
}

const STORAGE_KEY = 'switchboard.credentials';
const DEVICE_KEY = 'switchboard.deviceId';

function load(): Credentials | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as Credentials) : null;
  } catch {
    return null;
  }
}

export const useUserStore = create<UserState>((set) => ({
  credentials: load(),
  userId: '',
  name: '',
  deviceId: sessionStorage.getItem(DEVICE_KEY),
  connectionStatus: 'signed-out',
  authError: null,
  setCredentials: (credentials) => {
    if (credentials) localStorage.setItem(STORAGE_KEY, JSON.stringify(credentials));
    else localStorage.removeItem(STORAGE_KEY);
    set({ credentials });
  },
  setIdentity: (userId, name, deviceId) => {
    sessionStorage.setItem(DEVICE_KEY, deviceId);
    set({ userId, name, deviceId });
  },
  setConnectionStatus: (connectionStatus) => set({ connectionStatus }),
  setAuthError: (authError) => set({ authError }),
}));

/** A stable user id for a display name typed on the dev sign-in screen. */
export function userIdForName(name: string): string {
  const slug = name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return slug || 'guest';
}
