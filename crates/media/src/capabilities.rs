//! RTP capabilities and parameters in mediasoup-client's shapes (sfu-notes.md), and how
//! they become str0m codec and extension tables.
//!
//! The router offers opus, VP8 and H264 (each video codec with RTX) and a small set of
//! header extensions. Its payload types and extension ids are the ones every receive
//! transport uses; a send transport uses the device's own (see [`send_tables`]).

use serde_json::{Value, json};
use str0m::format::{Codec, CodecConfig, FormatParams};
use str0m::media::{Frequency, MediaKind, Pt};
use str0m::rtp::{Extension, ExtensionMap};

use crate::MediaError;

/// One codec the router offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterCodec {
    pub kind: MediaKind,
    /// mediasoup-style mime type, e.g. `video/VP8`.
    pub mime_type: &'static str,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub channels: Option<u8>,
    /// The payload type of its RTX stream (video only).
    pub rtx_payload_type: Option<u8>,
}

/// The router's codecs. Opus and VP8 keep Chrome's long-stable payload types (111, 96/97)
/// so that a browser which does not send its capabilities still matches (see
/// [`send_tables`]).
pub const ROUTER_CODECS: [RouterCodec; 3] = [
    RouterCodec {
        kind: MediaKind::Audio,
        mime_type: "audio/opus",
        payload_type: 111,
        clock_rate: 48_000,
        channels: Some(2),
        rtx_payload_type: None,
    },
    RouterCodec {
        kind: MediaKind::Video,
        mime_type: "video/VP8",
        payload_type: 96,
        clock_rate: 90_000,
        channels: None,
        rtx_payload_type: Some(97),
    },
    RouterCodec {
        kind: MediaKind::Video,
        mime_type: "video/H264",
        payload_type: 102,
        clock_rate: 90_000,
        channels: None,
        rtx_payload_type: Some(103),
    },
];

/// The H264 flavour the router offers: constrained baseline 3.1, packetization mode 1.
const H264_PROFILE_LEVEL_ID: &str = "42e01f";

/// The router's header extensions: (id, uri, audio, video). The ids are Chrome's defaults
/// (str0m's `ExtensionMap::standard`), so a browser that does not send its capabilities
/// still agrees on them.
const ROUTER_EXTENSIONS: [(u8, Extension, bool, bool); 5] = [
    (1, Extension::AudioLevel, true, false),
    (2, Extension::AbsoluteSendTime, true, true),
    (3, Extension::TransportSequenceNumber, true, true),
    (4, Extension::RtpMid, true, true),
    (13, Extension::VideoOrientation, false, true),
];

/// Extensions we can map from a device's capabilities by uri.
const KNOWN_EXTENSIONS: [Extension; 7] = [
    Extension::AudioLevel,
    Extension::AbsoluteSendTime,
    Extension::TransportSequenceNumber,
    Extension::RtpMid,
    Extension::RtpStreamId,
    Extension::RepairedRtpStreamId,
    Extension::VideoOrientation,
];

impl RouterCodec {
    fn codec(&self) -> Codec {
        Codec::from(self.mime_type.split('/').nth(1).unwrap_or_default())
    }

    fn parameters(&self) -> Value {
        match self.codec() {
            Codec::Opus => json!({"minptime": 10, "useinbandfec": 1}),
            Codec::H264 => json!({
                "packetization-mode": 1,
                "profile-level-id": H264_PROFILE_LEVEL_ID,
                "level-asymmetry-allowed": 1,
            }),
            _ => json!({}),
        }
    }

    fn rtcp_feedback(&self) -> Value {
        match self.kind {
            MediaKind::Audio => json!([{"type": "transport-cc", "parameter": ""}]),
            MediaKind::Video => json!([
                {"type": "nack", "parameter": ""},
                {"type": "nack", "parameter": "pli"},
                {"type": "ccm", "parameter": "fir"},
                {"type": "transport-cc", "parameter": ""},
            ]),
        }
    }

    fn format_params(&self) -> FormatParams {
        match self.codec() {
            Codec::Opus => FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                ..Default::default()
            },
            Codec::H264 => FormatParams {
                level_asymmetry_allowed: Some(true),
                packetization_mode: Some(1),
                profile_level_id: Some(0x42e01f),
                ..Default::default()
            },
            _ => FormatParams::default(),
        }
    }

    /// The codec entry of `rtpParameters.codecs` (router payload type).
    fn rtp_codec(&self) -> Value {
        let mut codec = json!({
            "mimeType": self.mime_type,
            "payloadType": self.payload_type,
            "clockRate": self.clock_rate,
            "parameters": self.parameters(),
            "rtcpFeedback": self.rtcp_feedback(),
        });
        if let Some(channels) = self.channels {
            codec["channels"] = json!(channels);
        }
        codec
    }

    fn rtx_codec(&self) -> Option<Value> {
        let rtx = self.rtx_payload_type?;
        Some(json!({
            "mimeType": format!("{}/rtx", kind_str(self.kind)),
            "payloadType": rtx,
            "clockRate": self.clock_rate,
            "parameters": {"apt": self.payload_type},
            "rtcpFeedback": [],
        }))
    }
}

pub fn kind_str(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// `getRouterRtpCapabilities`: `{codecs, headerExtensions}` with mandatory `kind`s and RTX
/// as codecs of their own (sfu-notes.md).
pub fn router_rtp_capabilities() -> Value {
    let mut codecs = Vec::new();
    for c in &ROUTER_CODECS {
        let mut codec = json!({
            "kind": kind_str(c.kind),
            "mimeType": c.mime_type,
            "preferredPayloadType": c.payload_type,
            "clockRate": c.clock_rate,
            "parameters": c.parameters(),
            "rtcpFeedback": c.rtcp_feedback(),
        });
        if let Some(channels) = c.channels {
            codec["channels"] = json!(channels);
        }
        codecs.push(codec);
        if let Some(rtx) = c.rtx_payload_type {
            codecs.push(json!({
                "kind": kind_str(c.kind),
                "mimeType": format!("{}/rtx", kind_str(c.kind)),
                "preferredPayloadType": rtx,
                "clockRate": c.clock_rate,
                "parameters": {"apt": c.payload_type},
                "rtcpFeedback": [],
            }));
        }
    }
    let mut extensions = Vec::new();
    for (id, ext, audio, video) in &ROUTER_EXTENSIONS {
        for (kind, on) in [("audio", *audio), ("video", *video)] {
            if on {
                extensions.push(json!({
                    "kind": kind,
                    "uri": ext.as_uri(),
                    "preferredId": id,
                    "preferredEncrypt": false,
                    "direction": "sendrecv",
                }));
            }
        }
    }
    json!({"codecs": codecs, "headerExtensions": extensions})
}

/// The router's codec table for an `Rtc`: every receive transport uses it.
pub fn router_codec_config() -> CodecConfig {
    let mut config = CodecConfig::empty();
    for c in &ROUTER_CODECS {
        add_codec(&mut config, c.payload_type, c.rtx_payload_type, c);
    }
    config
}

fn add_codec(config: &mut CodecConfig, pt: u8, rtx: Option<u8>, c: &RouterCodec) {
    config.add_config(
        Pt::from(pt),
        rtx.map(Pt::from),
        c.codec(),
        Frequency::new(c.clock_rate).unwrap_or(Frequency::NINETY_KHZ),
        c.channels,
        c.format_params(),
    );
}

/// The router's extension map.
pub fn router_extension_map() -> ExtensionMap {
    let mut map = ExtensionMap::empty();
    for (id, ext, _, _) in &ROUTER_EXTENSIONS {
        map.set(*id, ext.clone());
    }
    map
}

fn dynamic_payload_types() -> impl Iterator<Item = u8> {
    (35u8..=63).chain(96u8..=127)
}

/// The tables of a send transport's `Rtc`, fixed when it is built (str0m's direct API
/// cannot change them later; sfu-notes.md "The one real gap").
///
/// - With the device's send capabilities (`createTransport {rtpCapabilities}`, e.g.
///   mediasoup-client's `device.sendRtpCapabilities`): exactly its payload types (with
///   their RTX pairs) and extension ids for the codecs the router knows, and every other
///   dynamic payload type accepted as a plain media type.
/// - Without: every dynamic payload type accepted as a plain media type (opus's usual 111
///   with its clock rate), no RTX pairing and no header extensions. Guessing pairs or ids
///   is worse than knowing none: a client whose media type is our guessed RTX type would
///   have its packets unwrapped as retransmissions, and a misread extension can drop a
///   packet.
///
/// Either way packets are bound to producers by SSRC, retransmissions by the RTX SSRC that
/// `produce` announces, and the outgoing payload type is the consumer's own, so str0m never
/// needs the codec behind an incoming payload type. What the fallback costs is RTCP detail:
/// no transport-cc feedback (the client's bandwidth estimate grows more slowly) and
/// receiver-report jitter computed at 90 kHz for audio types other than 111.
pub fn send_tables(device_caps: Option<&Value>) -> (CodecConfig, ExtensionMap) {
    let mut config = CodecConfig::empty();
    let mut taken = [false; 128];
    let mut exts = ExtensionMap::empty();
    if let Some(caps) = device_caps {
        for (pt, rtx, router) in device_codecs(caps) {
            if taken[pt as usize] || rtx.is_some_and(|r| taken[r as usize]) {
                continue;
            }
            add_codec(&mut config, pt, rtx, router);
            taken[pt as usize] = true;
            if let Some(r) = rtx {
                taken[r as usize] = true;
            }
        }
        exts = device_extension_map(caps).unwrap_or_else(router_extension_map);
    } else {
        let opus = &ROUTER_CODECS[0];
        add_codec(&mut config, opus.payload_type, None, opus);
        taken[opus.payload_type as usize] = true;
    }
    let catch_all = &ROUTER_CODECS[1];
    for pt in dynamic_payload_types() {
        if !taken[pt as usize] {
            add_codec(&mut config, pt, None, catch_all);
        }
    }
    (config, exts)
}

/// The device's codecs the router knows: (payload type, RTX payload type, router codec).
fn device_codecs(caps: &Value) -> Vec<(u8, Option<u8>, &'static RouterCodec)> {
    let Some(codecs) = caps.get("codecs").and_then(Value::as_array) else {
        return Vec::new();
    };
    let pt_of = |c: &Value| {
        c.get("preferredPayloadType")
            .or_else(|| c.get("payloadType"))
            .and_then(Value::as_u64)
            .filter(|pt| *pt < 128)
            .map(|pt| pt as u8)
    };
    let mut out = Vec::new();
    for codec in codecs {
        let Some(pt) = pt_of(codec) else { continue };
        let Some(router) = match_router_codec(codec) else {
            continue;
        };
        let rtx = codecs
            .iter()
            .filter(|c| is_rtx(c))
            .find(|c| apt(c) == Some(pt))
            .and_then(pt_of);
        out.push((pt, rtx, router));
    }
    out
}

fn device_extension_map(caps: &Value) -> Option<ExtensionMap> {
    let list = caps.get("headerExtensions")?.as_array()?;
    let mut map = ExtensionMap::empty();
    let mut any = false;
    for e in list {
        let (Some(uri), Some(id)) = (
            e.get("uri").and_then(Value::as_str),
            e.get("preferredId")
                .or_else(|| e.get("id"))
                .and_then(Value::as_u64),
        ) else {
            continue;
        };
        if !(1..=14).contains(&id) {
            continue;
        }
        if let Some(ext) = KNOWN_EXTENSIONS.iter().find(|k| k.as_uri() == uri) {
            map.set(id as u8, ext.clone());
            any = true;
        }
    }
    any.then_some(map)
}

fn mime(c: &Value) -> String {
    c.get("mimeType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn is_rtx(c: &Value) -> bool {
    mime(c).ends_with("/rtx")
}

fn apt(c: &Value) -> Option<u8> {
    let apt = c.get("parameters")?.get("apt")?;
    apt.as_u64()
        .or_else(|| apt.as_str().and_then(|s| s.parse().ok()))
        .filter(|v| *v < 128)
        .map(|v| v as u8)
}

fn param_u64(c: &Value, name: &str) -> Option<u64> {
    let v = c.get("parameters")?.get(name)?;
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The router codec a device codec (capability or parameter entry) corresponds to: same
/// mime type, clock rate and channels; for H264 the same packetization mode and a
/// baseline-family profile.
pub fn match_router_codec(codec: &Value) -> Option<&'static RouterCodec> {
    let mime = mime(codec);
    let clock = codec.get("clockRate").and_then(Value::as_u64)?;
    ROUTER_CODECS.iter().find(|r| {
        if r.mime_type.to_ascii_lowercase() != mime || u64::from(r.clock_rate) != clock {
            return false;
        }
        if r.kind == MediaKind::Audio {
            let channels = codec.get("channels").and_then(Value::as_u64).unwrap_or(1);
            if Some(channels as u8) != r.channels {
                return false;
            }
        }
        if r.codec() == Codec::H264 {
            let mode = param_u64(codec, "packetization-mode").unwrap_or(0);
            let profile = codec
                .get("parameters")
                .and_then(|p| p.get("profile-level-id"))
                .and_then(Value::as_str)
                .unwrap_or("42e01f");
            return mode == 1 && h264_baseline(profile);
        }
        true
    })
}

/// Constrained baseline or baseline (profile_idc 0x42), which every browser decodes.
fn h264_baseline(profile_level_id: &str) -> bool {
    profile_level_id.len() == 6 && profile_level_id[..2].eq_ignore_ascii_case("42")
}

/// What `produce` announced, reduced to what forwarding needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSpec {
    pub kind: MediaKind,
    pub mid: String,
    pub codec: &'static RouterCodec,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    pub cname: String,
}

/// Reads `produce`'s `rtpParameters`. Everything wrong is a client error: the request is
/// refused and nothing changes.
pub fn parse_producer(kind: MediaKind, params: &Value) -> Result<ProducerSpec, MediaError> {
    let invalid = |m: &str| MediaError::Invalid(m.to_string());
    let mid = params
        .get("mid")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty() && m.len() <= 16)
        .ok_or_else(|| invalid("rtpParameters.mid must be a string of 1 to 16 characters"))?;
    let codecs = params
        .get("codecs")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("rtpParameters.codecs must be an array"))?;
    let main = codecs
        .iter()
        .find(|c| !is_rtx(c))
        .ok_or_else(|| invalid("rtpParameters.codecs has no media codec"))?;
    let codec = match_router_codec(main).ok_or_else(|| {
        invalid("the codec is not one the router offers (opus, VP8, H264 42e01f)")
    })?;
    if codec.kind != kind {
        return Err(invalid("the codec does not match kind"));
    }
    let encodings = params
        .get("encodings")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("rtpParameters.encodings must be an array"))?;
    if encodings.len() != 1 {
        return Err(invalid(
            "exactly one encoding is supported (simulcast is not available yet)",
        ));
    }
    let encoding = &encodings[0];
    let ssrc_of = |v: Option<&Value>| {
        v.and_then(Value::as_u64)
            .filter(|s| *s > 0 && *s <= u64::from(u32::MAX))
            .map(|s| s as u32)
    };
    let ssrc = ssrc_of(encoding.get("ssrc"))
        .ok_or_else(|| invalid("encodings[0].ssrc must be a non-zero 32-bit number"))?;
    let rtx_ssrc = ssrc_of(encoding.get("rtx").and_then(|r| r.get("ssrc")));
    if rtx_ssrc == Some(ssrc) {
        return Err(invalid("the RTX ssrc equals the media ssrc"));
    }
    let cname = params
        .get("rtcp")
        .and_then(|r| r.get("cname"))
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty() && c.len() <= 255)
        .unwrap_or("switchboard")
        .to_string();
    Ok(ProducerSpec {
        kind,
        mid: mid.to_string(),
        codec,
        ssrc,
        rtx_ssrc,
        cname,
    })
}

/// Whether a device (its `rtpCapabilities` from `consume`) can receive the router codec.
pub fn can_consume(device_caps: &Value, codec: &RouterCodec) -> bool {
    device_caps
        .get("codecs")
        .and_then(Value::as_array)
        .is_some_and(|codecs| {
            codecs
                .iter()
                .any(|c| match_router_codec(c).is_some_and(|r| r == codec))
        })
}

/// The consumer's `rtpParameters`: router payload types and extension ids, one encoding
/// with its SSRC and RTX SSRC, and the producer's cname.
pub fn consumer_rtp_parameters(
    codec: &RouterCodec,
    mid: &str,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
    cname: &str,
) -> Value {
    let mut codecs = vec![codec.rtp_codec()];
    let mut encoding = json!({"ssrc": ssrc});
    if let (Some(rtx_codec), Some(rtx_ssrc)) = (codec.rtx_codec(), rtx_ssrc) {
        codecs.push(rtx_codec);
        encoding["rtx"] = json!({"ssrc": rtx_ssrc});
    }
    let audio = codec.kind == MediaKind::Audio;
    let header_extensions: Vec<Value> = ROUTER_EXTENSIONS
        .iter()
        .filter(|(_, _, a, v)| if audio { *a } else { *v })
        .map(|(id, ext, _, _)| json!({"uri": ext.as_uri(), "id": id, "encrypt": false, "parameters": {}}))
        .collect();
    json!({
        "mid": mid,
        "codecs": codecs,
        "headerExtensions": header_extensions,
        "encodings": [encoding],
        "rtcp": {"cname": cname, "reducedSize": true, "mux": true},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Chrome-like device: its own payload types, differing from the router's for H264.
    fn chrome_caps() -> Value {
        json!({
            "codecs": [
                {"kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 111, "clockRate": 48000, "channels": 2},
                {"kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 96, "clockRate": 90000},
                {"kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}},
                {"kind": "video", "mimeType": "video/H264", "preferredPayloadType": 108, "clockRate": 90000,
                 "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f", "level-asymmetry-allowed": 1}},
                {"kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 109, "clockRate": 90000, "parameters": {"apt": 108}},
                {"kind": "video", "mimeType": "video/VP9", "preferredPayloadType": 98, "clockRate": 90000},
            ],
            "headerExtensions": [
                {"kind": "video", "uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "preferredId": 5},
                {"kind": "video", "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "preferredId": 9},
                {"kind": "video", "uri": "urn:x-unknown", "preferredId": 7},
            ]
        })
    }

    #[test]
    fn router_capabilities_have_kinds_and_rtx() {
        let caps = router_rtp_capabilities();
        let codecs = caps["codecs"].as_array().unwrap();
        assert_eq!(codecs.len(), 5);
        assert!(codecs.iter().all(|c| c["kind"].is_string()));
        let rtx: Vec<&Value> = codecs
            .iter()
            .filter(|c| c["mimeType"] == "video/rtx")
            .collect();
        assert_eq!(rtx.len(), 2);
        assert_eq!(rtx[0]["parameters"]["apt"], json!(96));
        let vp8 = codecs
            .iter()
            .find(|c| c["mimeType"] == "video/VP8")
            .unwrap();
        let fb: Vec<String> = vp8["rtcpFeedback"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f["type"].as_str().unwrap(),
                    f["parameter"].as_str().unwrap()
                )
            })
            .collect();
        assert!(fb.contains(&"nack pli".to_string()));
        assert!(fb.contains(&"ccm fir".to_string()));
        assert!(fb.contains(&"transport-cc ".to_string()));
        let exts = caps["headerExtensions"].as_array().unwrap();
        assert!(
            exts.iter()
                .all(|e| e["kind"] == "audio" || e["kind"] == "video")
        );
        assert!(
            exts.iter().any(|e| e["kind"] == "audio"
                && e["uri"] == "urn:ietf:params:rtp-hdrext:ssrc-audio-level")
        );
    }

    #[test]
    fn codecs_match_by_mime_clock_channels_and_h264_profile() {
        let caps = chrome_caps();
        let codecs = caps["codecs"].as_array().unwrap();
        assert_eq!(match_router_codec(&codecs[0]).unwrap().payload_type, 111);
        assert_eq!(match_router_codec(&codecs[1]).unwrap().payload_type, 96);
        assert_eq!(match_router_codec(&codecs[3]).unwrap().payload_type, 102);
        assert!(
            match_router_codec(&codecs[5]).is_none(),
            "VP9 is not offered"
        );
        let mono_opus = json!({"mimeType": "audio/opus", "clockRate": 48000, "channels": 1});
        assert!(match_router_codec(&mono_opus).is_none());
        let high = json!({"mimeType": "video/H264", "clockRate": 90000,
            "parameters": {"packetization-mode": 1, "profile-level-id": "640c1f"}});
        assert!(match_router_codec(&high).is_none());
        let mode0 = json!({"mimeType": "video/H264", "clockRate": 90000,
            "parameters": {"packetization-mode": 0, "profile-level-id": "42e01f"}});
        assert!(match_router_codec(&mode0).is_none());
        assert!(can_consume(&caps, &ROUTER_CODECS[2]));
        assert!(!can_consume(
            &json!({"codecs": [codecs[0]]}),
            &ROUTER_CODECS[1]
        ));
        assert!(!can_consume(&json!({}), &ROUTER_CODECS[0]));
    }

    fn pt_entry(config: &CodecConfig, pt: u8) -> Option<(Codec, Option<u8>)> {
        config
            .params()
            .iter()
            .find(|p| *p.pt() == pt)
            .map(|p| (p.spec().codec, p.resend().map(|r| *r)))
    }

    #[test]
    fn send_tables_follow_the_device_and_accept_any_dynamic_type() {
        let (config, exts) = send_tables(Some(&chrome_caps()));
        assert_eq!(pt_entry(&config, 108), Some((Codec::H264, Some(109))));
        assert_eq!(pt_entry(&config, 96), Some((Codec::Vp8, Some(97))));
        assert_eq!(pt_entry(&config, 111).map(|e| e.0), Some(Codec::Opus));
        // Unknown types are caught, as plain media types.
        assert_eq!(pt_entry(&config, 102), Some((Codec::Vp8, None)));
        assert!(pt_entry(&config, 98).is_some());
        assert!(pt_entry(&config, 40).is_some());
        let pts: Vec<u8> = config.params().iter().map(|p| *p.pt()).collect();
        let mut unique = pts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(pts.len(), unique.len(), "no payload type twice");
        // RTX types are resend types, never main entries.
        assert!(pt_entry(&config, 97).is_none());
        assert!(pt_entry(&config, 109).is_none());
        assert_eq!(exts.id_of(Extension::TransportSequenceNumber), Some(5));
        assert_eq!(exts.id_of(Extension::RtpMid), Some(9));
        assert_eq!(exts.lookup(7), None);

        // Without capabilities: every dynamic type is a plain media type (aiortc sends
        // VP8 as 97, which must not be taken for Chrome's RTX type), no extensions.
        let (fallback, fallback_exts) = send_tables(None);
        assert_eq!(pt_entry(&fallback, 96), Some((Codec::Vp8, None)));
        assert_eq!(pt_entry(&fallback, 97), Some((Codec::Vp8, None)));
        assert_eq!(pt_entry(&fallback, 111), Some((Codec::Opus, None)));
        assert_eq!(fallback.params().len(), 29 + 32);
        assert_eq!(fallback_exts.iter().count(), 0);
    }

    fn produce_params() -> Value {
        json!({
            "mid": "0",
            "codecs": [
                {"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000, "parameters": {}, "rtcpFeedback": []},
                {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 96}}
            ],
            "headerExtensions": [],
            "encodings": [{"ssrc": 1111, "rtx": {"ssrc": 2222}}],
            "rtcp": {"cname": "abc"}
        })
    }

    #[test]
    fn producer_parameters_are_read_and_checked() {
        let spec = parse_producer(MediaKind::Video, &produce_params()).unwrap();
        assert_eq!(spec.mid, "0");
        assert_eq!(spec.ssrc, 1111);
        assert_eq!(spec.rtx_ssrc, Some(2222));
        assert_eq!(spec.cname, "abc");
        assert_eq!(spec.codec.mime_type, "video/VP8");

        let refused = |f: &dyn Fn(&mut Value), kind| {
            let mut p = produce_params();
            f(&mut p);
            matches!(parse_producer(kind, &p), Err(MediaError::Invalid(_)))
        };
        assert!(refused(&|_| {}, MediaKind::Audio), "kind mismatch");
        assert!(refused(&|p| p["mid"] = json!(""), MediaKind::Video));
        assert!(refused(&|p| p["mid"] = json!(5), MediaKind::Video));
        assert!(refused(&|p| p["codecs"] = json!([]), MediaKind::Video));
        assert!(refused(
            &|p| p["codecs"][0]["mimeType"] = json!("video/AV1"),
            MediaKind::Video
        ));
        assert!(refused(
            &|p| p["encodings"] = json!([{"rid": "r0"}, {"rid": "r1"}]),
            MediaKind::Video
        ));
        assert!(refused(
            &|p| p["encodings"][0]["ssrc"] = json!(0),
            MediaKind::Video
        ));
        assert!(refused(
            &|p| p["encodings"][0]["ssrc"] = json!(1u64 << 33),
            MediaKind::Video
        ));
        assert!(refused(
            &|p| p["encodings"][0]["rtx"]["ssrc"] = json!(1111),
            MediaKind::Video
        ));
        assert!(!refused(
            &|p| p
                .as_object_mut()
                .unwrap()
                .remove("rtcp")
                .map(|_| ())
                .unwrap_or(()),
            MediaKind::Video
        ));
    }

    #[test]
    fn consumer_parameters_use_router_types() {
        let p = consumer_rtp_parameters(&ROUTER_CODECS[2], "3", 42, Some(43), "cn");
        assert_eq!(p["mid"], "3");
        assert_eq!(p["codecs"][0]["payloadType"], 102);
        assert_eq!(p["codecs"][1]["parameters"]["apt"], 102);
        assert_eq!(p["encodings"][0], json!({"ssrc": 42, "rtx": {"ssrc": 43}}));
        assert_eq!(p["rtcp"]["cname"], "cn");
        let audio = consumer_rtp_parameters(&ROUTER_CODECS[0], "4", 7, None, "cn");
        assert_eq!(audio["codecs"].as_array().unwrap().len(), 1);
        assert_eq!(audio["codecs"][0]["channels"], 2);
        assert!(
            audio["headerExtensions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["id"] == 1)
        );
        assert!(
            !audio["headerExtensions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["id"] == 13)
        );
    }
}
