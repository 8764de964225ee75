import { socketService } from './socket';
import { useCallStore } from '../stores/callStore';
import type { IceServer } from '../types';

// Peer-to-peer media for a conversation call (protocol §7, seed 004 §5.3): one
// RTCPeerConnection per other participant, keyed by user id. The participant already in
// the call offers to each one who joins; the joiner answers. Offers, answers and ICE
// candidates travel through `call:signal`, addressed by user id.

interface Peer {
  pc: RTCPeerConnection;
  /** Candidates that arrived before the remote description. */
  queued: RTCIceCandidateInit[];
}

interface RelayedSignal {
  type: 'offer' | 'answer' | 'ice-candidate';
  from: string;
  to: string;
  sdp?: string | { type: RTCSdpType; sdp: string };
  candidate?: RTCIceCandidateInit;
}

class PeerService {
  private callId: string | null = null;
  private iceServers: IceServer[] = [];
  private peers = new Map<string, Peer>();
  private local: MediaStream | null = null;
  private reportedConnected = false;
  /** Signals for a call we are not in (yet): a peer can offer before our join is answered. */
  private early: Array<{ callId: string; signal: RelayedSignal }> = [];

  start(callId: string, iceServers: IceServer[], local: MediaStream | null) {
    this.stop();
    this.callId = callId;
    this.iceServers = iceServers ?? [];
    this.local = local;
    const early = this.early.filter((e) => e.callId === callId);
    this.early = [];
    for (const e of early) void this.onSignal(callId, e.signal).catch((err) => console.warn('signal failed', err));
  }

  get activeCallId() {
    return this.callId;
  }

  setIceServers(iceServers: IceServer[] | undefined) {
    if (iceServers?.length) this.iceServers = iceServers;
  }

  private peer(userId: string): Peer {
    let peer = this.peers.get(userId);
    if (peer) return peer;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers as RTCIceServer[] });
    peer = { pc, queued: [] };
    this.peers.set(userId, peer);
    for (const track of this.local?.getTracks() ?? []) pc.addTrack(track, this.local!);
    pc.onicecandidate = (e) => {
      if (e.candidate) this.signal(userId, { type: 'ice-candidate', candidate: e.candidate.toJSON() });
    };
    pc.ontrack = (e) => {
      useCallStore.getState().addRemoteTrack(userId, e.track, e.track.kind === 'audio' ? 'mic' : 'camera');
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected' && !this.reportedConnected && this.callId) {
        this.reportedConnected = true;
        socketService.request('call:connected', { callId: this.callId }).catch(() => undefined);
      }
      if (pc.connectionState === 'connected') useCallStore.getState().setConnecting(false);
    };
    return peer;
  }

  private signal(to: string, signal: Omit<RelayedSignal, 'from' | 'to'>) {
    if (!this.callId) return;
    socketService.request('call:signal', { callId: this.callId, signal: { ...signal, to } }).catch((err) => {
      console.warn('call:signal failed', err);
    });
  }

  /** Someone joined after us: we offer. */
  async offerTo(userId: string) {
    // A peer seen again (back after a drop) gets a fresh connection.
    this.close(userId);
    const { pc } = this.peer(userId);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this.signal(userId, { type: 'offer', sdp: offer.sdp });
  }

  async onSignal(callId: string, s: RelayedSignal) {
    if (callId !== this.callId) {
      if (this.early.length < 100) this.early.push({ callId, signal: s });
      return;
    }
    if (s.type === 'offer' && this.peers.get(s.from)?.pc.remoteDescription) this.close(s.from);
    const peer = this.peer(s.from);
    const sdp = typeof s.sdp === 'string' ? s.sdp : s.sdp?.sdp;
    if (s.type === 'offer' && sdp) {
      await peer.pc.setRemoteDescription({ type: 'offer', sdp });
      const answer = await peer.pc.createAnswer();
      await peer.pc.setLocalDescription(answer);
      this.signal(s.from, { type: 'answer', sdp: answer.sdp });
      await this.flush(peer);
    } else if (s.type === 'answer' && sdp) {
      await peer.pc.setRemoteDescription({ type: 'answer', sdp });
      await this.flush(peer);
    } else if (s.type === 'ice-candidate' && s.candidate) {
      if (peer.pc.remoteDescription) await peer.pc.addIceCandidate(s.candidate).catch(() => undefined);
      else peer.queued.push(s.candidate);
    }
  }

  private async flush(peer: Peer) {
    const queued = peer.queued;
    peer.queued = [];
    for (const c of queued) await peer.pc.addIceCandidate(c).catch(() => undefined);
  }

  /** Camera ⇄ screen: swaps the outgoing video track on every connection. */
  async replaceVideoTrack(track: MediaStreamTrack | null) {
    for (const { pc } of this.peers.values()) {
      const sender = pc.getSenders().find((s) => s.track?.kind === 'video' || (!s.track && track?.kind === 'video'));
      await sender?.replaceTrack(track);
    }
  }

  async replaceAudioTrack(track: MediaStreamTrack) {
    for (const { pc } of this.peers.values()) {
      const sender = pc.getSenders().find((s) => s.track?.kind === 'audio');
      await sender?.replaceTrack(track);
    }
  }

  private close(userId: string) {
    this.peers.get(userId)?.pc.close();
    this.peers.delete(userId);
  }

  remove(userId: string) {
    this.close(userId);
    useCallStore.getState().removeRemote(userId);
  }

  stop() {
    for (const { pc } of this.peers.values()) pc.close();
    this.peers.clear();
    this.callId = null;
    this.local = null;
    this.reportedConnected = false;
  }
}

export const peerService = new PeerService();
