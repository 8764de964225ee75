// The browser side of the SFU test: unmodified mediasoup-client and socket.io-client,
// bundled by esbuild. `window.joinCall` joins (or creates) a room, publishes the fake
// camera and microphone, and consumes every other participant's producers, present and
// future. `window.mediaStats` reads what arrived.
import { Device } from 'mediasoup-client';
import { io } from 'socket.io-client';

const consumers = [];
const log = [];

function request(socket, event, payload) {
  return new Promise((resolve, reject) => {
    socket.timeout(20000).emit(event, payload, (err, reply) => {
      if (err) return reject(new Error(`${event}: no answer`));
      if (!reply || reply.success !== true) {
        return reject(new Error(`${event}: ${JSON.stringify(reply)}`));
      }
      resolve(reply);
    });
  });
}

window.joinCall = async ({ url, userId, roomId }) => {
  const socket = io(url, { auth: { userId, name: userId }, transports: ['websocket'] });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  const room = roomId
    ? (await request(socket, 'joinRoom', { roomId })).room
    : (await request(socket, 'createRoom', { roomType: 'group', roomName: 'browser' })).room;
  roomId = room.roomId;

  const { rtpCapabilities } = await request(socket, 'getRouterRtpCapabilities', { roomId });
  const device = new Device();
  await device.load({ routerRtpCapabilities: rtpCapabilities });

  const wire = (transport) => {
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      request(socket, 'connectTransport', { transportId: transport.id, dtlsParameters })
        .then(() => callback())
        .catch(errback);
    });
    transport.on('connectionstatechange', (state) => log.push(`${transport.direction}: ${state}`));
  };

  const sendParams = (
    await request(socket, 'createTransport', {
      roomId,
      direction: 'send',
      rtpCapabilities: device.sendRtpCapabilities,
    })
  ).params;
  const sendTransport = device.createSendTransport(sendParams);
  wire(sendTransport);
  sendTransport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
    request(socket, 'produce', { roomId, transportId: sendTransport.id, kind, rtpParameters, appData })
      .then(({ producerId }) => callback({ id: producerId }))
      .catch(errback);
  });

  const recvParams = (await request(socket, 'createTransport', { roomId, direction: 'receive' })).params;
  const recvTransport = device.createRecvTransport(recvParams);
  wire(recvTransport);

  const consume = async (producerId) => {
    const { params } = await request(socket, 'consume', {
      roomId,
      producerId,
      rtpCapabilities: device.recvRtpCapabilities,
    });
    const consumer = await recvTransport.consume(params);
    consumers.push(consumer);
    await request(socket, 'resumeConsumer', { roomId, consumerId: consumer.id });
  };
  socket.on('newProducer', ({ producerId }) => {
    consume(producerId).catch((e) => log.push(`consume failed: ${e.message}`));
  });

  const stream = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: 320, height: 240, frameRate: 15 },
  });
  await sendTransport.produce({ track: stream.getAudioTracks()[0], appData: { source: 'mic' } });
  await sendTransport.produce({ track: stream.getVideoTracks()[0], appData: { source: 'camera' } });

  // Producers that were there before we came.
  for (const p of room.participants) {
    if (p.userId === userId) continue;
    for (const producerId of p.producerIds) await consume(producerId);
  }
  return roomId;
};

window.mediaStats = async () => {
  const out = { audioPackets: 0, framesDecoded: 0, consumers: consumers.length, log };
  for (const consumer of consumers) {
    const stats = await consumer.getStats();
    for (const s of stats.values()) {
      if (s.type !== 'inbound-rtp') continue;
      if (s.kind === 'audio') out.audioPackets += s.packetsReceived || 0;
      if (s.kind === 'video') out.framesDecoded += s.framesDecoded || 0;
    }
  }
  return out;
};
