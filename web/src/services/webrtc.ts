import { Device, type types } from 'mediasoup-client';
import { socketService } from './socket';
import { useCallStore } from '../stores/callStore';

// SFU media for a room (seed 002's webrtcService, protocol §8): one mediasoup-client
// Device, a send and a receive transport, our producers, and a consumer per remote
// producer. Producers announced before the receive transport exists wait in a queue
// (seed 002's pending-producer queue).

type Source = 'mic' | 'camera' | 'screen';

interface RemoteProducer {
  producerId: string;
  userId: string;
}

interface TransportParams {
  id: string;
  iceParameters: types.IceParameters;
  iceCandidates: types.IceCandidate[];
  dtlsParameters: types.DtlsParameters;
  sctpParameters?: types.SctpParameters;
}

class WebrtcService {
  private device: Device | null = null;
  private roomId: string | null = null;
  private sendTransport: types.Transport | null = null;
  private recvTransport: types.Transport | null = null;
  private producers = new Map<Source, types.Producer>();
  private consumers = new Map<string, { consumer: types.Consumer; userId: string }>();
  private pendingProducers: RemoteProducer[] = [];
  /** Producer ids consumed or being consumed, so an announcement seen twice is consumed once. */
  private seen = new Set<string>();

  get activeRoomId() {
    return this.roomId;
  }

  /** Joins the room's media: device, transports, then our microphone and camera. */
  async start(roomId: string, local: MediaStream | null) {
    // Producers announced while we were joining stay queued for the new transports.
    const announced = this.pendingProducers;
    this.cleanup();
    this.pendingProducers = announced;
    this.roomId = roomId;
    const { rtpCapabilities } = await socketService.request<{ rtpCapabilities: types.RtpCapabilities }>(
      'getRouterRtpCapabilities',
      { roomId },
    );
    if (this.roomId !== roomId) return;
    const device = new Device();
    await device.load({ routerRtpCapabilities: rtpCapabilities });
    this.device = device;

    await this.createRecvTransport(roomId);
    await this.createSendTransport(roomId);
    await this.processPendingProducers();

    if (local) {
      for (const track of local.getTracks()) {
        const source: Source = track.kind === 'audio' ? 'mic' : 'camera';
        if (device.canProduce(track.kind as types.MediaKind)) await this.produce(track, source);
      }
    }
  }

  private async createSendTransport(roomId: string) {
    const device = this.device!;
    const { params } = await socketService.request<{ params: TransportParams }>('createTransport', {
      roomId,
      direction: 'send',
      // The browser's own payload types and extension ids (see sfu-notes.md).
      rtpCapabilities: device.sendRtpCapabilities,
    });
    const transport = device.createSendTransport(params);
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      socketService
        .request('connectTransport', { transportId: transport.id, dtlsParameters })
        .then(() => callback(), errback);
    });
    transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      socketService
        .request<{ producerId: string }>('produce', { roomId, transportId: transport.id, kind, rtpParameters, appData })
        .then(({ producerId }) => callback({ id: producerId }), errback);
    });
    this.sendTransport = transport;
  }

  private async createRecvTransport(roomId: string) {
    const device = this.device!;
    const { params } = await socketService.request<{ params: TransportParams }>('createTransport', {
      roomId,
      direction: 'receive',
    });
    const transport = device.createRecvTransport(params);
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      socketService
        .request('connectTransport', { transportId: transport.id, dtlsParameters })
        .then(() => callback(), errback);
    });
    this.recvTransport = transport;
  }

  async produce(track: MediaStreamTrack, source: Source) {
    if (!this.sendTransport || !this.roomId) return;
    const producer = await this.sendTransport.produce({
      track,
      appData: { source },
      stopTracks: false,
    });
    this.producers.set(source, producer);
    if (source === 'screen') {
      track.addEventListener('ended', () => void this.stopProducing('screen'));
    }
  }

  async stopProducing(source: Source) {
    const producer = this.producers.get(source);
    if (!producer || !this.roomId) return;
    this.producers.delete(source);
    producer.close();
    await socketService.request('closeProducer', { roomId: this.roomId, producerId: producer.id }).catch(() => undefined);
  }

  /** Mutes or unmutes a producer without renegotiating (pauseProducer / resumeProducer). */
  async setPaused(source: Source, paused: boolean) {
    const producer = this.producers.get(source);
    if (!producer || !this.roomId) return;
    if (paused) producer.pause();
    else producer.resume();
    await socketService
      .request(paused ? 'pauseProducer' : 'resumeProducer', { roomId: this.roomId, producerId: producer.id })
      .catch(() => undefined);
  }

  /** Swaps the microphone or camera track (device change) in place. */
  async replaceTrack(source: Source, track: MediaStreamTrack) {
    await this.producers.get(source)?.replaceTrack({ track });
  }

  /** A producer of another participant to receive (from the room snapshot or `newProducer`). */
  async consume(producerId: string, userId: string) {
    if (this.seen.has(producerId)) return;
    if (!this.recvTransport || !this.device || !this.roomId) {
      if (!this.pendingProducers.some((p) => p.producerId === producerId)) {
        this.pendingProducers.push({ producerId, userId });
      }
      return;
    }
    this.seen.add(producerId);
    const roomId = this.roomId;
    try {
      const { params } = await socketService.request<{
        params: { id: string; producerId: string; kind: types.MediaKind; rtpParameters: types.RtpParameters; appData?: Record<string, unknown> };
      }>('consume', { roomId, producerId, rtpCapabilities: this.device.rtpCapabilities });
      const consumer = await this.recvTransport.consume({
        id: params.id,
        producerId: params.producerId,
        kind: params.kind,
        rtpParameters: params.rtpParameters,
        appData: params.appData ?? {},
      });
      this.consumers.set(consumer.id, { consumer, userId });
      const source = (params.appData?.source as Source | undefined) ?? (params.kind === 'audio' ? 'mic' : 'camera');
      useCallStore.getState().addRemoteTrack(userId, consumer.track, source);
      await socketService.request('resumeConsumer', { roomId, consumerId: consumer.id });
    } catch (err) {
      this.seen.delete(producerId);
      console.warn('consume failed', producerId, err);
    }
  }

  private async processPendingProducers() {
    const queue = this.pendingProducers;
    this.pendingProducers = [];
    for (const { producerId, userId } of queue) await this.consume(producerId, userId);
  }

  /** `producerClosed` / `consumerClosed`: drop the consumer and its track. */
  closeByProducer(producerId: string) {
    this.seen.delete(producerId);
    this.pendingProducers = this.pendingProducers.filter((p) => p.producerId !== producerId);
    for (const [id, { consumer, userId }] of this.consumers) {
      if (consumer.producerId === producerId) {
        useCallStore.getState().removeRemoteTrack(userId, consumer.track.id);
        consumer.close();
        this.consumers.delete(id);
      }
    }
  }

  closeByConsumer(consumerId: string) {
    const entry = this.consumers.get(consumerId);
    if (entry) this.closeByProducer(entry.consumer.producerId);
  }

  /** Pauses the local copy of a remote producer that its owner paused (camera off). */
  remotePaused(producerId: string, paused: boolean) {
    for (const { consumer } of this.consumers.values()) {
      if (consumer.producerId === producerId) {
        if (paused) consumer.pause();
        else consumer.resume();
      }
    }
  }

  hasProducer(source: Source) {
    return this.producers.has(source);
  }

  cleanup() {
    for (const p of this.producers.values()) p.close();
    for (const { consumer } of this.consumers.values()) consumer.close();
    this.sendTransport?.close();
    this.recvTransport?.close();
    this.producers.clear();
    this.consumers.clear();
    this.pendingProducers = [];
    this.seen.clear();
    this.sendTransport = null;
    this.recvTransport = null;
    this.device = null;
    this.roomId = null;
  }
}

export const webrtcService = new WebrtcService();
