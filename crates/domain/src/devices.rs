//! Device sessions (protocol §2, seed 001): one record per (user, device), created on connect
//! and kept after disconnect until its TTL lapses, so a sleeping phone can still be rung.
//!
//! The functions here are the transition rules; the store applies them atomically.

use serde::{Deserialize, Serialize};

use crate::Millis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSession {
    pub user_id: String,
    pub device_id: String,
    /// The socket currently holding the device, if connected.
    pub socket_id: Option<String>,
    /// The instance that socket is connected to.
    pub instance_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Millis,
    pub connected_at: Option<Millis>,
    pub last_active_at: Millis,
}

/// Who is connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConnect {
    pub user_id: String,
    pub device_id: String,
    pub socket_id: String,
    pub instance_id: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The session after a connect, and the socket it displaced, if another socket held it.
pub fn connect(
    current: Option<DeviceSession>,
    c: &DeviceConnect,
    now: Millis,
) -> (DeviceSession, Option<String>) {
    let replaced = current
        .as_ref()
        .and_then(|s| s.socket_id.clone())
        .filter(|sid| *sid != c.socket_id);
    let created_at = current.as_ref().map_or(now, |s| s.created_at);
    let session = DeviceSession {
        user_id: c.user_id.clone(),
        device_id: c.device_id.clone(),
        socket_id: Some(c.socket_id.clone()),
        instance_id: Some(c.instance_id.clone()),
        ip: c.ip.clone(),
        user_agent: c.user_agent.clone(),
        created_at,
        connected_at: Some(now),
        last_active_at: now,
    };
    (session, replaced)
}

/// The session after `socket_id` disconnected, or `None` when that socket no longer holds
/// the device (it was replaced), in which case nothing changes.
pub fn disconnect(
    current: Option<DeviceSession>,
    socket_id: &str,
    now: Millis,
) -> Option<DeviceSession> {
    let session = current?;
    if session.socket_id.as_deref() != Some(socket_id) {
        return None;
    }
    Some(DeviceSession {
        socket_id: None,
        instance_id: None,
        connected_at: None,
        last_active_at: now,
        ..session
    })
}

/// Whether a device may connect when the user already has `connected` live devices.
/// A device that is already connected (a replacement) never counts against the cap.
pub fn within_device_cap(connected: &[String], device_id: &str, max_devices: usize) -> bool {
    connected.iter().any(|d| d == device_id) || connected.len() < max_devices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(socket: &str) -> DeviceConnect {
        DeviceConnect {
            user_id: "alice".into(),
            device_id: "phone".into(),
            socket_id: socket.into(),
            instance_id: "i1".into(),
            ip: Some("127.0.0.1".into()),
            user_agent: Some("test".into()),
        }
    }

    #[test]
    fn first_connect_creates_the_session() {
        let (s, replaced) = connect(None, &conn("s1"), 100);
        assert_eq!(replaced, None);
        assert_eq!(s.socket_id.as_deref(), Some("s1"));
        assert_eq!(
            (s.created_at, s.connected_at, s.last_active_at),
            (100, Some(100), 100)
        );
    }

    #[test]
    fn a_second_socket_replaces_the_first() {
        let (s, _) = connect(None, &conn("s1"), 100);
        let (s, replaced) = connect(Some(s), &conn("s2"), 200);
        assert_eq!(replaced.as_deref(), Some("s1"));
        assert_eq!(s.socket_id.as_deref(), Some("s2"));
        assert_eq!(s.created_at, 100, "the session keeps its creation time");
    }

    #[test]
    fn the_replaced_socket_disconnecting_changes_nothing() {
        let (s, _) = connect(None, &conn("s1"), 100);
        let (s, _) = connect(Some(s), &conn("s2"), 200);
        assert_eq!(disconnect(Some(s.clone()), "s1", 300), None);
        let after = disconnect(Some(s), "s2", 300).expect("the holder disconnects");
        assert_eq!(after.socket_id, None);
        assert_eq!(after.last_active_at, 300);
    }

    #[test]
    fn reconnecting_after_disconnect_replaces_nobody() {
        let (s, _) = connect(None, &conn("s1"), 100);
        let s = disconnect(Some(s), "s1", 150).unwrap();
        let (_, replaced) = connect(Some(s), &conn("s2"), 200);
        assert_eq!(replaced, None);
    }

    #[test]
    fn the_device_cap_counts_new_devices_only() {
        let live = vec!["a".to_string(), "b".to_string()];
        assert!(!within_device_cap(&live, "c", 2));
        assert!(
            within_device_cap(&live, "a", 2),
            "a replacement is always allowed"
        );
        assert!(within_device_cap(&live, "c", 3));
    }
}
