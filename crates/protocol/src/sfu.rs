//! SFU signalling (protocol.md §8, seed 002): the mediasoup-style request
//! and notification payloads.
//!
//! RTP capabilities and parameters, ICE and DTLS parameters, and `appData`
//! are the shapes `mediasoup-client` produces and expects (see
//! sfu-notes.md). They are kept as opaque [`serde_json::Value`]s here; the
//! media layer gives them structure.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rooms::RoomRef;
use crate::wire_enum::wire_enum;

wire_enum! {
    /// A media track kind: the `kind` of producers and consumers (§8) and
    /// the `mediaType` of `call:media-toggled` (§7).
    pub enum MediaKind {
        /// Audio.
        Audio = "audio",
        /// Video.
        Video = "video",
    }
}

/// The direction of a WebRTC transport (§8).
///
/// Serialized as `"send"` or `"receive"`. `"recv"` (mediasoup-client's own
/// spelling) is also accepted when deserializing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TransportDirection {
    /// Client → server media.
    #[serde(rename = "send")]
    Send,
    /// Server → client media.
    #[serde(rename = "receive", alias = "recv")]
    Receive,
}

impl TransportDirection {
    /// The string this value has on the wire.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Receive => "receive",
        }
    }
}

impl std::fmt::Display for TransportDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

wire_enum! {
    /// The conventional `appData.source` of a producer (§8).
    pub enum MediaSource {
        /// Microphone.
        Mic = "mic",
        /// Camera.
        Camera = "camera",
        /// Screen share.
        Screen = "screen",
    }
}

/// C→S `getRouterRtpCapabilities {roomId}` (§8).
pub type GetRouterRtpCapabilities = RoomRef;

/// Response fields of `getRouterRtpCapabilities`: `{rtpCapabilities}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterRtpCapabilitiesResponse {
    /// The router's RTP capabilities (`{codecs, headerExtensions}`).
    pub rtp_capabilities: Value,
}

/// C→S `createTransport {roomId, direction, rtpCapabilities?}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTransport {
    /// The room.
    pub room_id: String,
    /// Send or receive.
    pub direction: TransportDirection,
    /// The device's send capabilities, optionally (see sfu-notes.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtp_capabilities: Option<Value>,
}

/// The `params` of a created transport: `{id, iceParameters, iceCandidates,
/// dtlsParameters, sctpParameters?}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportParams {
    /// Transport id.
    pub id: String,
    /// `{usernameFragment, password, iceLite}`.
    pub ice_parameters: Value,
    /// The server's ICE candidates.
    pub ice_candidates: Vec<Value>,
    /// `{role, fingerprints}`.
    pub dtls_parameters: Value,
    /// Present when data channels are offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp_parameters: Option<Value>,
}

/// Response fields of `createTransport`: `{params}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTransportResponse {
    /// The transport.
    pub params: TransportParams,
}

/// C→S `connectTransport {transportId, dtlsParameters}` → `{success}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectTransport {
    /// The transport.
    pub transport_id: String,
    /// The client's `{role, fingerprints}`.
    pub dtls_parameters: Value,
}

/// C→S `produce {roomId, transportId, kind, rtpParameters, appData?}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Produce {
    /// The room.
    pub room_id: String,
    /// The send transport.
    pub transport_id: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The client's RTP parameters.
    pub rtp_parameters: Value,
    /// Application data, passed on to consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_data: Option<Value>,
}

impl Produce {
    /// `appData.source`, if present and one of the known values.
    pub fn source(&self) -> Option<MediaSource> {
        self.app_data
            .as_ref()?
            .get("source")?
            .as_str()?
            .parse()
            .ok()
    }
}

/// Response fields of `produce`: `{producerId}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProduceResponse {
    /// The new producer.
    pub producer_id: String,
}

/// C→S `consume {roomId, producerId, rtpCapabilities}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consume {
    /// The room.
    pub room_id: String,
    /// The producer to receive.
    pub producer_id: String,
    /// The device's receive capabilities.
    pub rtp_capabilities: Value,
}

/// The `params` of a new consumer: `{id, producerId, kind, rtpParameters,
/// appData}` (§8). The consumer starts paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerParams {
    /// Consumer id.
    pub id: String,
    /// The producer it receives.
    pub producer_id: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// RTP parameters with the router's payload types and extension ids.
    pub rtp_parameters: Value,
    /// The producer's application data.
    pub app_data: Value,
}

/// Response fields of `consume`: `{params}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumeResponse {
    /// The consumer.
    pub params: ConsumerParams,
}

/// `{roomId, consumerId}`: `resumeConsumer` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerRef {
    /// The room.
    pub room_id: String,
    /// The consumer.
    pub consumer_id: String,
}

/// C→S `resumeConsumer {roomId, consumerId}` → `{success}` (§8).
pub type ResumeConsumer = ConsumerRef;

/// `{roomId, producerId}`: `pauseProducer`, `resumeProducer` and
/// `closeProducer` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerRef {
    /// The room.
    pub room_id: String,
    /// The producer.
    pub producer_id: String,
}

/// C→S `pauseProducer {roomId, producerId}` → `{success}` (§8).
pub type PauseProducer = ProducerRef;
/// C→S `resumeProducer {roomId, producerId}` → `{success}` (§8).
pub type ResumeProducer = ProducerRef;
/// C→S `closeProducer {roomId, producerId}` → `{success}` (§8).
pub type CloseProducer = ProducerRef;

/// C→S `setConsumerPreferredLayers {roomId, consumerId, spatialLayer,
/// temporalLayer?}` → `{success}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetConsumerPreferredLayers {
    /// The room.
    pub room_id: String,
    /// The consumer.
    pub consumer_id: String,
    /// Preferred simulcast layer (0 = lowest).
    pub spatial_layer: u8,
    /// Preferred temporal layer; the highest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal_layer: Option<u8>,
}

/// S→C `newProducer {producerId, userId, kind, appData}`, to the other
/// participants (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewProducer {
    /// The producer.
    pub producer_id: String,
    /// Its owner.
    pub user_id: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// Its application data (`{}` when none was given).
    #[serde(default)]
    pub app_data: Value,
}

/// S→C `{producerId, userId}`: `producerClosed`, `producerPaused` and
/// `producerResumed` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerStateChanged {
    /// The producer.
    pub producer_id: String,
    /// Its owner.
    pub user_id: String,
}

/// S→C `producerClosed {producerId, userId}` (§8).
pub type ProducerClosed = ProducerStateChanged;
/// S→C `producerPaused {producerId, userId}` (§8).
pub type ProducerPaused = ProducerStateChanged;
/// S→C `producerResumed {producerId, userId}` (§8).
pub type ProducerResumed = ProducerStateChanged;

/// S→C `consumerClosed {consumerId, producerId}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerClosed {
    /// The consumer.
    pub consumer_id: String,
    /// The producer it received.
    pub producer_id: String,
}

/// S→C `consumerLayersChanged {consumerId, spatialLayer}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerLayersChanged {
    /// The consumer.
    pub consumer_id: String,
    /// The layer now forwarded.
    pub spatial_layer: u8,
}

/// S→C `activeSpeaker {roomId, userId}` (§8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveSpeaker {
    /// The room.
    pub room_id: String,
    /// The loudest participant.
    pub user_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_transport() {
        let req: CreateTransport =
            serde_json::from_value(json!({"roomId": "r1", "direction": "send"})).unwrap();
        assert_eq!(req.direction, TransportDirection::Send);
        assert_eq!(req.rtp_capabilities, None);

        let recv: CreateTransport =
            serde_json::from_value(json!({"roomId": "r1", "direction": "receive"})).unwrap();
        assert_eq!(recv.direction, TransportDirection::Receive);
        let alias: CreateTransport =
            serde_json::from_value(json!({"roomId": "r1", "direction": "recv"})).unwrap();
        assert_eq!(alias.direction, TransportDirection::Receive);
        assert_eq!(
            serde_json::to_value(&alias).unwrap()["direction"],
            json!("receive")
        );
        assert!(
            serde_json::from_value::<CreateTransport>(json!({"roomId": "r1", "direction": "both"}))
                .is_err()
        );

        let resp = CreateTransportResponse {
            params: TransportParams {
                id: "t1".into(),
                ice_parameters: json!({"usernameFragment": "uf", "password": "pw", "iceLite": true}),
                ice_candidates: vec![json!({
                    "foundation": "1", "priority": 1, "address": "10.0.0.1", "ip": "10.0.0.1",
                    "port": 40000, "type": "host", "protocol": "udp"
                })],
                dtls_parameters: json!({"role": "auto", "fingerprints": [{"algorithm": "sha-256", "value": "AB"}]}),
                sctp_parameters: None,
            },
        };
        let acked = crate::ack_ok(&resp);
        assert_eq!(acked["success"], json!(true));
        assert_eq!(acked["params"]["id"], json!("t1"));
        assert_eq!(acked["params"]["iceParameters"]["iceLite"], json!(true));
        assert!(acked["params"].get("sctpParameters").is_none());
    }

    #[test]
    fn produce_and_consume() {
        let req: Produce = serde_json::from_value(json!({
            "roomId": "r1", "transportId": "t1", "kind": "video",
            "rtpParameters": {"mid": "0", "codecs": [], "encodings": [{"ssrc": 1}]},
            "appData": {"source": "screen"}
        }))
        .unwrap();
        assert_eq!(req.kind, MediaKind::Video);
        assert_eq!(req.source(), Some(MediaSource::Screen));
        assert!(
            serde_json::from_value::<Produce>(json!({
                "roomId": "r1", "transportId": "t1", "kind": "data", "rtpParameters": {}
            }))
            .is_err()
        );
        assert_eq!(
            crate::ack_ok(&ProduceResponse {
                producer_id: "p1".into()
            }),
            json!({"success": true, "producerId": "p1"})
        );

        let consume: Consume = serde_json::from_value(
            json!({"roomId": "r1", "producerId": "p1", "rtpCapabilities": {"codecs": []}}),
        )
        .unwrap();
        assert_eq!(consume.producer_id, "p1");
        assert!(
            serde_json::from_value::<Consume>(json!({"roomId": "r1", "producerId": "p1"})).is_err()
        );

        let resp = ConsumeResponse {
            params: ConsumerParams {
                id: "c1".into(),
                producer_id: "p1".into(),
                kind: MediaKind::Audio,
                rtp_parameters: json!({"mid": "1"}),
                app_data: json!({"source": "mic"}),
            },
        };
        assert_eq!(
            crate::ack_ok(&resp),
            json!({
                "success": true,
                "params": {
                    "id": "c1", "producerId": "p1", "kind": "audio",
                    "rtpParameters": {"mid": "1"}, "appData": {"source": "mic"}
                }
            })
        );
    }

    #[test]
    fn small_requests() {
        let connect: ConnectTransport = serde_json::from_value(json!({
            "transportId": "t1", "dtlsParameters": {"role": "client", "fingerprints": []}
        }))
        .unwrap();
        assert_eq!(connect.transport_id, "t1");

        let resume: ResumeConsumer =
            serde_json::from_value(json!({"roomId": "r1", "consumerId": "c1"})).unwrap();
        assert_eq!(resume.consumer_id, "c1");
        let pause: PauseProducer =
            serde_json::from_value(json!({"roomId": "r1", "producerId": "p1"})).unwrap();
        assert_eq!(pause.producer_id, "p1");

        let layers: SetConsumerPreferredLayers =
            serde_json::from_value(json!({"roomId": "r1", "consumerId": "c1", "spatialLayer": 2}))
                .unwrap();
        assert_eq!(layers.spatial_layer, 2);
        assert_eq!(layers.temporal_layer, None);
        assert!(
            serde_json::from_value::<SetConsumerPreferredLayers>(
                json!({"roomId": "r1", "consumerId": "c1", "spatialLayer": "high"})
            )
            .is_err()
        );

        let rtp: GetRouterRtpCapabilities =
            serde_json::from_value(json!({"roomId": "r1"})).unwrap();
        assert_eq!(rtp.room_id, "r1");
    }

    #[test]
    fn notifications() {
        let new = NewProducer {
            producer_id: "p1".into(),
            user_id: "u1".into(),
            kind: MediaKind::Video,
            app_data: json!({"source": "camera"}),
        };
        assert_eq!(
            serde_json::to_value(&new).unwrap(),
            json!({"producerId": "p1", "userId": "u1", "kind": "video", "appData": {"source": "camera"}})
        );
        let paused: ProducerPaused =
            serde_json::from_value(json!({"producerId": "p1", "userId": "u1"})).unwrap();
        assert_eq!(paused.user_id, "u1");
        let layers = ConsumerLayersChanged {
            consumer_id: "c1".into(),
            spatial_layer: 1,
        };
        assert_eq!(
            serde_json::to_value(&layers).unwrap(),
            json!({"consumerId": "c1", "spatialLayer": 1})
        );
        let speaker = ActiveSpeaker {
            room_id: "r1".into(),
            user_id: "u2".into(),
        };
        assert_eq!(
            serde_json::to_value(&speaker).unwrap(),
            json!({"roomId": "r1", "userId": "u2"})
        );
    }
}
