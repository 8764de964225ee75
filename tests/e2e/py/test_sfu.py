"""SFU round trip without a browser (protocol §8): pymediasoup + aiortc publish audio and
video through the server's str0m media workers, and a second client consumes both and
decodes frames.

aiortc is pinned to loopback (its host candidates) and to sha-256 fingerprints, as
sfu-notes.md advises; the server's media workers use system-chosen UDP ports.
"""

from __future__ import annotations

import asyncio
import time

import aioice.ice
import pytest
import socketio
from aiortc import rtcdtlstransport
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from pymediasoup import AiortcHandler, Device
from pymediasoup.rtp_parameters import RtpCapabilities, RtpParameters

from conftest import JWT_SECRET, Server, random_id

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
rtcdtlstransport.X509_DIGEST_ALGORITHMS = {
    "sha-256": rtcdtlstransport.X509_DIGEST_ALGORITHMS["sha-256"]
}

TIMEOUT = 30


@pytest.fixture(scope="module")
def media_server():
    server = Server(dev=True, env={
        "SWITCHBOARD_AUTH__JWT_SECRET": JWT_SECRET,
        "SWITCHBOARD_MEDIA__WORKERS": "1",
        "SWITCHBOARD_MEDIA__PORT_BASE": "0",
        "SWITCHBOARD_MEDIA__LISTEN_IP": "127.0.0.1",
    })
    yield server
    server.stop()


def dump(model):
    return model.model_dump(by_alias=True, exclude_none=True)


class Peer:
    """One pymediasoup device on one Socket.IO connection."""

    def __init__(self, url: str, user_id: str):
        self.url = url
        self.user_id = user_id
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, dict]] = []
        self.device: Device | None = None
        self.send_transport = None
        self.recv_transport = None

        @self.sio.on("*")
        async def _any(event, data=None):
            self.events.append((event, data))

    async def call(self, event: str, data: dict) -> dict:
        return await self.sio.call(event, data, timeout=TIMEOUT)

    async def ok(self, event: str, data: dict) -> dict:
        reply = await self.call(event, data)
        assert reply.get("success") is True, f"{event}: {reply}"
        return reply

    async def connect(self):
        await self.sio.connect(self.url, auth={"userId": self.user_id, "name": self.user_id},
                               transports=["websocket"], wait_timeout=10)

    async def load(self, room_id: str, tracks):
        self.room_id = room_id
        caps = (await self.ok("getRouterRtpCapabilities", {"roomId": room_id}))["rtpCapabilities"]
        self.device = Device(handlerFactory=AiortcHandler.createFactory(tracks=tracks))
        await self.device.load(RtpCapabilities(**caps))

    def _wire(self, transport):
        @transport.on("connect")
        async def on_connect(dtlsParameters):
            await self.ok("connectTransport", {
                "transportId": transport.id, "dtlsParameters": dump(dtlsParameters)})

    async def create_send(self, announce_capabilities: bool = True):
        request = {"roomId": self.room_id, "direction": "send"}
        if announce_capabilities:
            request["rtpCapabilities"] = dump(self.device.sendRtpCapabilities)
        params = (await self.ok("createTransport", request))["params"]
        self.send_transport = self.device.createSendTransport(
            id=params["id"], iceParameters=params["iceParameters"],
            iceCandidates=params["iceCandidates"], dtlsParameters=params["dtlsParameters"],
            sctpParameters=None)
        self._wire(self.send_transport)

        @self.send_transport.on("produce")
        async def on_produce(kind, rtpParameters, appData):
            reply = await self.ok("produce", {
                "roomId": self.room_id, "transportId": self.send_transport.id, "kind": kind,
                "rtpParameters": dump(rtpParameters), "appData": appData})
            return reply["producerId"]

    async def create_recv(self):
        params = (await self.ok("createTransport",
                                {"roomId": self.room_id, "direction": "receive"}))["params"]
        self.recv_transport = self.device.createRecvTransport(
            id=params["id"], iceParameters=params["iceParameters"],
            iceCandidates=params["iceCandidates"], dtlsParameters=params["dtlsParameters"],
            sctpParameters=None)
        self._wire(self.recv_transport)

    async def consume(self, producer_id: str):
        reply = await self.ok("consume", {
            "roomId": self.room_id, "producerId": producer_id,
            "rtpCapabilities": dump(self.device.rtpCapabilities)})
        p = reply["params"]
        consumer = await self.recv_transport.consume(
            id=p["id"], producerId=p["producerId"], kind=p["kind"],
            rtpParameters=RtpParameters(**p["rtpParameters"]))
        await self.ok("resumeConsumer", {"roomId": self.room_id, "consumerId": p["id"]})
        return consumer, p

    async def wait_event(self, name: str, timeout: float = TIMEOUT, where=lambda d: True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event, data in self.events:
                if event == name and where(data):
                    return data
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {name} within {timeout} s; saw {[e for e, _ in self.events]}")

    async def close(self):
        for t in (self.send_transport, self.recv_transport):
            if t is not None:
                try:
                    await t.close()
                except Exception:
                    pass
        await self.sio.disconnect()


async def receive_frames(track, count: int, timeout: float = TIMEOUT):
    frames = []
    async def pull():
        while len(frames) < count:
            frames.append(await track.recv())
    await asyncio.wait_for(pull(), timeout)
    return frames


async def round_trip(url: str, announce_capabilities: bool):
    alice = Peer(url, random_id("alice"))
    bob = Peer(url, random_id("bob"))
    await alice.connect()
    await bob.connect()
    try:
        room = (await alice.ok("createRoom", {"roomType": "group", "roomName": "sfu"}))["room"]
        room_id = room["roomId"]
        await bob.ok("joinRoom", {"roomId": room_id})

        audio, video = AudioStreamTrack(), VideoStreamTrack()
        await alice.load(room_id, [audio, video])
        await alice.create_send(announce_capabilities)
        mic = await alice.send_transport.produce(track=audio, stopTracks=False,
                                                 appData={"source": "mic"})
        cam = await alice.send_transport.produce(track=video, stopTracks=False,
                                                 appData={"source": "camera"})

        announced = await bob.wait_event("newProducer", where=lambda d: d["producerId"] == cam.id)
        assert announced == {"producerId": cam.id, "userId": alice.user_id, "kind": "video",
                             "appData": {"source": "camera"}}

        # A late joiner finds the producers in the room's participants.
        joined = (await bob.ok("joinRoom", {"roomId": room_id}))["room"]
        owner = next(p for p in joined["participants"] if p["userId"] == alice.user_id)
        assert sorted(owner["producerIds"]) == sorted([mic.id, cam.id])

        await bob.load(room_id, [])
        await bob.create_recv()
        audio_consumer, audio_params = await bob.consume(mic.id)
        video_consumer, video_params = await bob.consume(cam.id)
        assert audio_params["kind"] == "audio" and video_params["kind"] == "video"
        assert audio_params["appData"] == {"source": "mic"}
        assert audio_params["rtpParameters"]["mid"] != video_params["rtpParameters"]["mid"]

        audio_frames = await receive_frames(audio_consumer.track, 10)
        video_frames = await receive_frames(video_consumer.track, 5)
        assert all(f.sample_rate == 48000 for f in audio_frames)
        assert video_frames[-1].width == 640 and video_frames[-1].height == 480

        # Bob's consumers are in the room too; the room's call connected.
        room_after = (await bob.ok("joinRoom", {"roomId": room_id}))["room"]
        me = next(p for p in room_after["participants"] if p["userId"] == bob.user_id)
        assert sorted(me["consumerIds"]) == sorted([audio_params["id"], video_params["id"]])

        # Pausing and closing reach the consumer's side.
        await alice.ok("pauseProducer", {"roomId": room_id, "producerId": cam.id})
        await bob.wait_event("producerPaused", where=lambda d: d["producerId"] == cam.id)
        await alice.ok("resumeProducer", {"roomId": room_id, "producerId": cam.id})
        await bob.wait_event("producerResumed", where=lambda d: d["producerId"] == cam.id)
        await receive_frames(video_consumer.track, 2)
        await alice.ok("closeProducer", {"roomId": room_id, "producerId": mic.id})
        closed = await bob.wait_event("consumerClosed",
                                      where=lambda d: d["producerId"] == mic.id)
        assert closed["consumerId"] == audio_params["id"]
        await bob.wait_event("producerClosed", where=lambda d: d["producerId"] == mic.id)

        # Alice leaving closes her camera for Bob.
        await alice.ok("leaveRoom", {"roomId": room_id})
        await bob.wait_event("consumerClosed", where=lambda d: d["producerId"] == cam.id)
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.timeout(120)
def test_audio_and_video_round_trip(media_server):
    asyncio.run(round_trip(media_server.url, announce_capabilities=True))


@pytest.mark.timeout(120)
def test_round_trip_without_announced_capabilities(media_server):
    """A client that does not send its capabilities on createTransport (the fallback
    payload-type table) still gets its media through."""
    asyncio.run(round_trip(media_server.url, announce_capabilities=False))


async def refusals(url: str):
    alice = Peer(url, random_id("alice"))
    mallory = Peer(url, random_id("mallory"))
    await alice.connect()
    await mallory.connect()
    try:
        room_id = (await alice.ok("createRoom", {"roomType": "group"}))["room"]["roomId"]
        # Outsiders cannot use the room's media.
        reply = await mallory.call("getRouterRtpCapabilities", {"roomId": room_id})
        assert reply["success"] is False and reply["code"] == "FORBIDDEN"
        reply = await mallory.call("createTransport", {"roomId": room_id, "direction": "send"})
        assert reply["code"] == "FORBIDDEN"
        # Malformed payloads change nothing.
        for event, payload in [
            ("createTransport", {"roomId": room_id, "direction": "sideways"}),
            ("createTransport", {"roomId": room_id, "direction": "send", "rtpCapabilities": 5}),
            ("connectTransport", {"transportId": "t"}),
            ("produce", {"roomId": room_id, "transportId": "t", "kind": "data",
                         "rtpParameters": {}}),
            ("produce", {"roomId": room_id, "transportId": "t", "kind": "audio",
                         "rtpParameters": {}, "appData": {"source": "tv"}}),
            ("consume", {"roomId": room_id, "producerId": "p"}),
            ("resumeConsumer", {"roomId": room_id}),
        ]:
            reply = await alice.call(event, payload)
            assert reply["success"] is False and reply["code"] == "INVALID_PAYLOAD", (event, reply)
        # Ids belong to the socket that created them.
        params = (await alice.ok("createTransport",
                                 {"roomId": room_id, "direction": "send"}))["params"]
        await mallory.ok("joinRoom", {"roomId": room_id})
        reply = await mallory.call("connectTransport", {
            "transportId": params["id"],
            "dtlsParameters": {"role": "client",
                               "fingerprints": [{"algorithm": "sha-256", "value": "AB:CD"}]}})
        assert reply["code"] == "FORBIDDEN"
        reply = await alice.call("produce", {
            "roomId": room_id, "transportId": params["id"], "kind": "video",
            "rtpParameters": {"mid": "0", "codecs": [{"mimeType": "video/VP9",
                              "payloadType": 98, "clockRate": 90000}],
                              "encodings": [{"ssrc": 1}]}})
        assert reply["code"] == "INVALID_PAYLOAD"
        reply = await alice.call("consume", {"roomId": room_id, "producerId": "nope",
                                             "rtpCapabilities": {"codecs": []}})
        assert reply["code"] == "NOT_FOUND"
        room = (await alice.ok("joinRoom", {"roomId": room_id}))["room"]
        assert all(p["producerIds"] == [] for p in room["participants"])
    finally:
        await alice.close()
        await mallory.close()


@pytest.mark.timeout(60)
def test_only_participants_and_owners(media_server):
    asyncio.run(refusals(media_server.url))


async def pause_follows_media_state(url: str):
    alice = Peer(url, random_id("alice"))
    bob = Peer(url, random_id("bob"))
    await alice.connect()
    await bob.connect()
    try:
        room_id = (await alice.ok("createRoom", {"roomType": "group"}))["room"]["roomId"]
        await bob.ok("joinRoom", {"roomId": room_id})
        audio = AudioStreamTrack()
        await alice.load(room_id, [audio])
        await alice.create_send()
        mic = await alice.send_transport.produce(track=audio, stopTracks=False,
                                                 appData={"source": "mic"})
        await bob.wait_event("newProducer", where=lambda d: d["producerId"] == mic.id)

        def alice_in(room):
            return next(p for p in room["participants"] if p["userId"] == alice.user_id)

        def media_updates():
            return [d for e, d in bob.events
                    if e == "participantMediaStateUpdated" and d["userId"] == alice.user_id]

        # Pausing the mic mutes Alice for the room; pausing it again changes nothing.
        await alice.ok("pauseProducer", {"roomId": room_id, "producerId": mic.id})
        update = await bob.wait_event("participantMediaStateUpdated",
                                      where=lambda d: d["userId"] == alice.user_id)
        assert update["isMuted"] is True and update["isVideoEnabled"] is False
        room = (await bob.ok("joinRoom", {"roomId": room_id}))["room"]
        assert alice_in(room)["isMuted"] is True
        await alice.ok("pauseProducer", {"roomId": room_id, "producerId": mic.id})

        # Unmuting through mediaStateChanged resumes the mic for the others.
        await alice.ok("mediaStateChanged",
                       {"roomId": room_id, "isMuted": False, "isVideoEnabled": True})
        await bob.wait_event("producerResumed", where=lambda d: d["producerId"] == mic.id)
        await bob.wait_event("participantMediaStateUpdated",
                             where=lambda d: d["userId"] == alice.user_id
                             and d["isMuted"] is False)
        # One update per change: the repeated pause and the resume it caused add none.
        assert [u["isMuted"] for u in media_updates()] == [True, False]
        room = (await bob.ok("joinRoom", {"roomId": room_id}))["room"]
        assert alice_in(room)["isMuted"] is False

        def announced(event):
            return [d for e, d in bob.events if e == event and d["producerId"] == mic.id]

        # An unchanged isMuted leaves the mic alone; muting pauses it.
        await alice.ok("mediaStateChanged",
                       {"roomId": room_id, "isMuted": False, "isVideoEnabled": False})
        await alice.ok("mediaStateChanged",
                       {"roomId": room_id, "isMuted": True, "isVideoEnabled": False})
        deadline = time.monotonic() + TIMEOUT
        while len(announced("producerPaused")) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(announced("producerPaused")) == 3  # two explicit, one from muting
        assert len(announced("producerResumed")) == 1
    finally:
        await alice.close()
        await bob.close()


@pytest.mark.timeout(60)
def test_producer_pause_follows_media_state(media_server):
    """pauseProducer on a mic mutes the participant for the room, and mediaStateChanged
    resumes the mic producer, each announced once per change (docs/protocol.md §8)."""
    asyncio.run(pause_follows_media_state(url=media_server.url))
