import { io, type Socket } from 'socket.io-client';
import type { Ack } from '../types';
import { useUserStore, type Credentials } from '../stores/userStore';

// The one Socket.IO connection (seed 002's socketService). `request` sends an event with
// an acknowledgement and turns a `{success:false}` answer into a thrown `ServerError`, so
// callers write straight-line code and show `error.message` to the user.

export class ServerError extends Error {
  constructor(
    public code: string,
    message: string,
    public retryAfterMs?: number,
  ) {
    super(message);
  }
}

const REQUEST_TIMEOUT_MS = 10_000;

/** The server the app talks to: the page's own origin unless VITE_SERVER_URL says otherwise. */
function serverUrl(): string {
  return (import.meta.env.VITE_SERVER_URL as string | undefined) || window.location.origin;
}

type Listener = (...args: never[]) => void;

class SocketService {
  socket: Socket | null = null;
  private listeners: Array<[string, Listener]> = [];
  private lifecycle: {
    onConnect: (isReconnect: boolean) => void;
    onDisconnect: (reason: string) => void;
  } | null = null;
  private everConnected = false;

  /** Registers the event handlers once; they are attached to every socket this opens. */
  on(event: string, handler: Listener) {
    this.listeners.push([event, handler]);
    this.socket?.on(event, handler as never);
  }

  onLifecycle(l: SocketService['lifecycle']) {
    this.lifecycle = l;
  }

  connect(credentials: Credentials) {
    this.disconnect();
    const { deviceId } = useUserStore.getState();
    const auth: Record<string, string> = credentials.token
      ? { token: credentials.token }
      : { userId: credentials.userId ?? '', name: credentials.name ?? '' };
    if (deviceId && !credentials.token) auth.deviceId = deviceId;
    useUserStore.getState().setConnectionStatus('connecting');
    useUserStore.getState().setAuthError(null);
    this.everConnected = false;

    const socket = io(serverUrl(), {
      auth,
      transports: ['websocket', 'polling'],
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
    });
    this.socket = socket;
    for (const [event, handler] of this.listeners) socket.on(event, handler as never);

    socket.on('connect', () => {
      const isReconnect = this.everConnected;
      this.everConnected = true;
      useUserStore.getState().setConnectionStatus('connected');
      this.lifecycle?.onConnect(isReconnect);
    });
    socket.on('disconnect', (reason) => {
      if (this.socket !== socket) return;
      useUserStore.getState().setConnectionStatus(reason === 'io client disconnect' ? 'signed-out' : 'reconnecting');
      this.lifecycle?.onDisconnect(reason);
      // The server closing us (a replaced device, a revoked session) does not reconnect by itself.
      if (reason === 'io server disconnect' && this.everConnected) {
        setTimeout(() => this.socket === socket && socket.connect(), 1000);
      }
    });
    socket.on('connect_error', (err) => {
      if (this.socket !== socket) return;
      const refused = ['unauthorized', 'invalid_auth', 'too_many_devices'].includes(err.message);
      if (refused) {
        useUserStore.getState().setAuthError(
          err.message === 'too_many_devices'
            ? 'Too many devices are signed in as this user.'
            : 'The server refused these credentials.',
        );
        this.disconnect();
        useUserStore.getState().setConnectionStatus('signed-out');
        useUserStore.getState().setCredentials(null);
        return;
      }
      useUserStore.getState().setConnectionStatus(this.everConnected ? 'reconnecting' : 'connecting');
    });
    socket.io.on('reconnect_attempt', () => useUserStore.getState().setConnectionStatus('reconnecting'));
  }

  disconnect() {
    const s = this.socket;
    this.socket = null;
    if (s) {
      s.removeAllListeners();
      s.disconnect();
    }
  }

  get connected(): boolean {
    return !!this.socket?.connected;
  }

  /** Emits `event` and resolves with the acknowledgement's fields, or throws ServerError. */
  async request<T = Ack>(event: string, payload: object = {}): Promise<T & Ack> {
    const socket = this.socket;
    if (!socket) throw new ServerError('OFFLINE', 'Not connected');
    let ack: Ack;
    try {
      ack = (await socket.timeout(REQUEST_TIMEOUT_MS).emitWithAck(event, payload)) as Ack;
    } catch {
      throw new ServerError('TIMEOUT', 'The server did not answer in time');
    }
    if (!ack || ack.success !== true) {
      throw new ServerError(ack?.code ?? 'INTERNAL', ack?.error ?? 'Request failed', ack?.retryAfterMs);
    }
    return ack as T & Ack;
  }

  /** Fire-and-forget (typing, media state): failures do not matter to the user. */
  send(event: string, payload: object = {}) {
    this.socket?.emit(event, payload);
  }
}

export const socketService = new SocketService();
