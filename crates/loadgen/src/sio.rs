//! Engine.IO v4 / Socket.IO v5 text framing, WebSocket transport only.
//!
//! One WebSocket text frame carries one Engine.IO packet: a type digit followed by its data.
//! Engine.IO `4` (message) carries a Socket.IO packet: a type digit, an optional namespace
//! (`/admin,`), an optional ack id, then JSON. Binary attachments are not supported.

use std::fmt::Write as _;

/// An Engine.IO packet, borrowing from the frame it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EioPacket<'a> {
    /// `0{"sid":..,"pingInterval":..}`
    Open(&'a str),
    /// `1`
    Close,
    /// `2` — the server's heartbeat; answer with [`PONG`].
    Ping(&'a str),
    /// `3`
    Pong(&'a str),
    /// `4…` — a Socket.IO packet.
    Message(SioPacket<'a>),
    /// `5` / `6`, only meaningful during a polling upgrade.
    Upgrade,
    Noop,
}

/// A Socket.IO packet of the main or another namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SioPacket<'a> {
    pub kind: SioKind,
    /// `"/"` unless the packet names another namespace.
    pub namespace: &'a str,
    pub ack_id: Option<u64>,
    /// The raw JSON payload (may be empty, e.g. for DISCONNECT).
    pub data: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SioKind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

/// The Engine.IO pong frame.
pub const PONG: &str = "3";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed Socket.IO frame: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

fn err(what: &str, frame: &str) -> ParseError {
    let shown: String = frame.chars().take(80).collect();
    ParseError(format!("{what} in {shown:?}"))
}

/// Parses one WebSocket text frame.
pub fn parse_frame(frame: &str) -> Result<EioPacket<'_>, ParseError> {
    let mut chars = frame.chars();
    let kind = chars.next().ok_or_else(|| err("empty frame", frame))?;
    let rest = &frame[1..];
    Ok(match kind {
        '0' => EioPacket::Open(rest),
        '1' => EioPacket::Close,
        '2' => EioPacket::Ping(rest),
        '3' => EioPacket::Pong(rest),
        '4' => EioPacket::Message(parse_sio(rest).map_err(|e| err(&e.0, frame))?),
        '5' => EioPacket::Upgrade,
        '6' => EioPacket::Noop,
        _ => return Err(err("unknown Engine.IO packet type", frame)),
    })
}

/// Parses the Socket.IO packet inside an Engine.IO message.
pub fn parse_sio(packet: &str) -> Result<SioPacket<'_>, ParseError> {
    let bytes = packet.as_bytes();
    let kind = match bytes.first() {
        Some(b'0') => SioKind::Connect,
        Some(b'1') => SioKind::Disconnect,
        Some(b'2') => SioKind::Event,
        Some(b'3') => SioKind::Ack,
        Some(b'4') => SioKind::ConnectError,
        Some(b'5') => SioKind::BinaryEvent,
        Some(b'6') => SioKind::BinaryAck,
        _ => return Err(err("unknown Socket.IO packet type", packet)),
    };
    let mut rest = &packet[1..];
    if matches!(kind, SioKind::BinaryEvent | SioKind::BinaryAck) {
        // `<attachments>-` precedes the rest; the attachments themselves are not supported.
        let dash = rest
            .find('-')
            .ok_or_else(|| err("binary packet without attachment count", packet))?;
        rest = &rest[dash + 1..];
    }
    let mut namespace = "/";
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        namespace = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack_id = if digits > 0 {
        let id = rest[..digits]
            .parse()
            .map_err(|_| err("ack id out of range", packet))?;
        rest = &rest[digits..];
        Some(id)
    } else {
        None
    };
    Ok(SioPacket {
        kind,
        namespace,
        ack_id,
        data: rest,
    })
}

/// The event name of an EVENT payload (`["name", ...]`), without a full JSON parse when the
/// name has no escapes.
pub fn event_name(data: &str) -> Option<std::borrow::Cow<'_, str>> {
    let inner = data.trim_start().strip_prefix('[')?.trim_start();
    let quoted = inner.strip_prefix('"')?;
    let end = quoted.find(['"', '\\'])?;
    if quoted.as_bytes()[end] == b'"' {
        return Some(std::borrow::Cow::Borrowed(&quoted[..end]));
    }
    let value: serde_json::Value = serde_json::from_str(data).ok()?;
    value
        .get(0)?
        .as_str()
        .map(|s| std::borrow::Cow::Owned(s.to_string()))
}

/// `40{auth}`: CONNECT to the main namespace.
pub fn encode_connect(auth: &serde_json::Value) -> String {
    format!("40{auth}")
}

/// `41`: DISCONNECT from the main namespace.
pub fn encode_disconnect() -> &'static str {
    "41"
}

/// `42[name, ...args]` or, with an ack id, `42<id>[name, ...args]`.
pub fn encode_event(name: &str, args: &[serde_json::Value], ack_id: Option<u64>) -> String {
    let mut out = String::from("42");
    if let Some(id) = ack_id {
        let _ = write!(out, "{id}");
    }
    let mut array = Vec::with_capacity(args.len() + 1);
    array.push(serde_json::Value::String(name.to_string()));
    array.extend_from_slice(args);
    out.push_str(&serde_json::Value::Array(array).to_string());
    out
}

#[allow(dead_code, reason = "no scenario answers server acks yet")]
/// `43<id>[...args]`: answers a server event that asked for an ack.
pub fn encode_ack(ack_id: u64, args: &[serde_json::Value]) -> String {
    format!("43{ack_id}{}", serde_json::Value::Array(args.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_engine_io_control_packets() {
        assert_eq!(
            parse_frame(r#"0{"sid":"abc","pingInterval":25000}"#).unwrap(),
            EioPacket::Open(r#"{"sid":"abc","pingInterval":25000}"#)
        );
        assert_eq!(parse_frame("2").unwrap(), EioPacket::Ping(""));
        assert_eq!(parse_frame("3probe").unwrap(), EioPacket::Pong("probe"));
        assert_eq!(parse_frame("1").unwrap(), EioPacket::Close);
        assert!(parse_frame("").is_err());
        assert!(parse_frame("9").is_err());
    }

    #[test]
    fn parses_connect_ack_and_connect_error() {
        let EioPacket::Message(p) = parse_frame(r#"40{"sid":"xyz"}"#).unwrap() else {
            panic!("not a message");
        };
        assert_eq!(p.kind, SioKind::Connect);
        assert_eq!(p.namespace, "/");
        assert_eq!(p.ack_id, None);
        assert_eq!(p.data, r#"{"sid":"xyz"}"#);

        let EioPacket::Message(p) = parse_frame(r#"44{"message":"unauthorized"}"#).unwrap() else {
            panic!("not a message");
        };
        assert_eq!(p.kind, SioKind::ConnectError);
        assert_eq!(p.data, r#"{"message":"unauthorized"}"#);
    }

    #[test]
    fn parses_events_acks_and_namespaces() {
        let p = parse_sio(r#"2["friend_online",{"userId":"u1"}]"#).unwrap();
        assert_eq!(p.kind, SioKind::Event);
        assert_eq!(p.ack_id, None);
        assert_eq!(event_name(p.data).as_deref(), Some("friend_online"));

        let p = parse_sio(r#"217["ping",1]"#).unwrap();
        assert_eq!(p.ack_id, Some(17));
        assert_eq!(p.data, r#"["ping",1]"#);

        let p = parse_sio(r#"3/admin,5[{"ok":true}]"#).unwrap();
        assert_eq!(p.kind, SioKind::Ack);
        assert_eq!(p.namespace, "/admin");
        assert_eq!(p.ack_id, Some(5));
        assert_eq!(p.data, r#"[{"ok":true}]"#);

        let p = parse_sio("1").unwrap();
        assert_eq!(p.kind, SioKind::Disconnect);
        assert_eq!(p.data, "");

        let p = parse_sio(r#"51-["upload",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(p.kind, SioKind::BinaryEvent);
        assert_eq!(event_name(p.data).as_deref(), Some("upload"));
    }

    #[test]
    fn event_name_handles_escapes_and_garbage() {
        assert_eq!(event_name(r#"["a\"b",1]"#).as_deref(), Some("a\"b"));
        assert_eq!(event_name(r#" [ "x" ]"#).as_deref(), Some("x"));
        assert_eq!(event_name("{}"), None);
        assert_eq!(event_name("[1]"), None);
    }

    #[test]
    fn encodes_round_trip() {
        let auth = json!({"userId": "u1"});
        assert_eq!(encode_connect(&auth), r#"40{"userId":"u1"}"#);
        assert_eq!(encode_disconnect(), "41");
        let frame = encode_event("chat", &[json!({"t": 1})], Some(3));
        assert_eq!(frame, r#"423["chat",{"t":1}]"#);
        let EioPacket::Message(p) = parse_frame(&frame[..]).unwrap() else {
            panic!("not a message");
        };
        assert_eq!(p.ack_id, Some(3));
        assert_eq!(event_name(p.data).as_deref(), Some("chat"));
        assert_eq!(encode_ack(9, &[json!(true)]), "439[true]");
    }
}
