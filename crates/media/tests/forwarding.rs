//! The media workers end to end on loopback, with synthetic str0m peers as clients:
//! ICE-lite with the remote ufrag learned from the first STUN request (sfu-notes.md relies
//! on this undocumented str0m behaviour, so this test guards it), DTLS, and forwarding with
//! payload-type mapping and sequence-number rebasing.

use std::time::Duration;

use serde_json::json;
use switchboard_media::synthetic::SyntheticPeer;
use switchboard_media::{Media, MediaConfig, MediaEvent, MediaKind, parse_producer};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

fn config() -> MediaConfig {
    MediaConfig {
        workers: 2,
        listen_ip: "127.0.0.1".parse().unwrap(),
        announced_ip: None,
        port_base: 0,
    }
}

/// A VP8 payload that starts a keyframe (S=1, PID=0, P=0).
fn vp8_keyframe(len: usize) -> Vec<u8> {
    let mut p = vec![0x10, 0x00, 0x9d, 0x01, 0x2a];
    p.resize(len, 0xab);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_stream_reaches_a_consumer() {
    let (tx, mut events) = mpsc::unbounded_channel();
    let media = Media::start(&config(), tx).unwrap();
    let room = "room-1";

    // The publisher: a send transport, produced with a payload type of its own (100) that
    // it announced in its capabilities.
    let caps = json!({"codecs": [
        {"kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 100, "clockRate": 90000},
        {"kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 101, "clockRate": 90000,
         "parameters": {"apt": 100}}
    ]});
    let send = media
        .create_transport(room, "t-send", true, Some(caps))
        .await
        .unwrap();
    let (mut publisher, dtls) = SyntheticPeer::connect_to(&send).unwrap();
    media
        .connect_transport(room, "t-send", &dtls)
        .await
        .unwrap();
    let spec = parse_producer(
        MediaKind::Video,
        &json!({
            "mid": "0",
            "codecs": [{"mimeType": "video/VP8", "payloadType": 100, "clockRate": 90000},
                       {"mimeType": "video/rtx", "payloadType": 101, "clockRate": 90000,
                        "parameters": {"apt": 100}}],
            "encodings": [{"ssrc": 5555, "rtx": {"ssrc": 5556}}],
            "rtcp": {"cname": "pub"}
        }),
    )
    .unwrap();
    media.produce(room, "t-send", "p1", spec).await.unwrap();
    publisher.declare_send("0", MediaKind::Video, 5555, Some(5556));

    // The subscriber: a receive transport and a paused consumer.
    let recv = media
        .create_transport(room, "t-recv", false, None)
        .await
        .unwrap();
    let (mut subscriber, dtls) = SyntheticPeer::connect_to(&recv).unwrap();
    media
        .connect_transport(room, "t-recv", &dtls)
        .await
        .unwrap();
    let device = json!({"codecs": [{"mimeType": "video/VP8", "clockRate": 90000}]});
    let params = media
        .consume(room, "t-recv", "c1", "p1", device)
        .await
        .unwrap();
    assert_eq!(
        params["codecs"][0]["payloadType"], 96,
        "router payload type"
    );
    subscriber
        .declare_receive(MediaKind::Video, &params)
        .unwrap();
    let consumer_ssrc = params["encodings"][0]["ssrc"].as_u64().unwrap() as u32;

    let (publisher, subscriber) = tokio::task::spawn_blocking(move || {
        assert!(
            publisher_connects(&mut publisher, &mut subscriber),
            "ICE + DTLS"
        );
        (publisher, subscriber)
    })
    .await
    .unwrap();
    let (mut publisher, mut subscriber) = (publisher, subscriber);

    // Nothing flows to a paused consumer.
    let mut seq = 40_000u64;
    let mut ts = 1_000_000u32;
    let mut pump =
        move |publisher: &mut SyntheticPeer, subscriber: &mut SyntheticPeer, n: usize| {
            for _ in 0..n {
                publisher.send_rtp(5555, 100, seq, ts, true, &vp8_keyframe(900));
                seq += 1;
                ts += 3000;
                subscriber.poll_until(Duration::from_millis(5), |_| false);
                publisher.poll();
            }
        };
    pump(&mut publisher, &mut subscriber, 20);
    assert_eq!(subscriber.packets_received, 0);

    media.resume_consumer(room, "c1").await.unwrap();
    let (publisher, subscriber) = tokio::task::spawn_blocking(move || {
        let (mut publisher, mut subscriber) = (publisher, subscriber);
        pump(&mut publisher, &mut subscriber, 50);
        subscriber.poll_until(WAIT, |s| s.packets_received >= 40);
        (publisher, subscriber)
    })
    .await
    .unwrap();
    drop(publisher);
    let c: Vec<String> = media.counters().iter().map(|c| format!("{c:?}")).collect();
    assert!(
        subscriber.packets_received >= 40,
        "got {}; workers {c:?}",
        subscriber.packets_received
    );
    let (ssrc, last_seq, _) = subscriber.last_packet.unwrap();
    assert_eq!(ssrc, consumer_ssrc);
    assert!(
        last_seq < 0x4000 + 100,
        "rebased to a small sequence number: {last_seq}"
    );

    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        seen.contains(&MediaEvent::MediaFlowing {
            room_id: room.into()
        }),
        "{seen:?}"
    );
    assert!(seen.iter().any(|e| matches!(e, MediaEvent::TransportConnected { transport_id, .. } if transport_id == "t-recv")));

    // Closing the producer closes its consumer; the room can be freed.
    media.close_producer(room, "p1").await.unwrap();
    assert!(media.resume_consumer(room, "c1").await.is_err());
    media.close_room(room).await.unwrap();
    assert!(!media.has_room(room));
}

fn publisher_connects(publisher: &mut SyntheticPeer, subscriber: &mut SyntheticPeer) -> bool {
    let end = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < end {
        publisher.poll();
        subscriber.poll();
        if publisher.connected && subscriber.connected {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}
