//! Presence (protocol §4, seed 000's OFFLINE → ONLINE ⇄ IN-CALL machine).
//!
//! A user's displayed status is derived from three facts the store keeps atomically: how
//! many devices are live, the status the user set (`online`, `away`, `busy`), and whether
//! the server has them in a call. Deriving it, instead of storing it, is what makes "leaving
//! a call restores the earlier status" hold by construction.
//!
//! [`notices`] says what friends are told when those facts change.

pub use switchboard_protocol::{PresenceStatus, UserStatus};

/// Reads a stored user-set status; anything unknown (or seed 002's `idle`) is `online`.
pub fn parse_user_status(raw: Option<&str>) -> UserStatus {
    match raw {
        Some("away") => UserStatus::Away,
        Some("busy") => UserStatus::Busy,
        _ => UserStatus::Online,
    }
}

/// The facts presence is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceFacts {
    pub devices: u32,
    pub status: UserStatus,
    pub in_call: bool,
}

impl PresenceFacts {
    pub const OFFLINE: Self = Self {
        devices: 0,
        status: UserStatus::Online,
        in_call: false,
    };

    /// Offline without devices; in a call over any user-set status; else the user's status.
    pub fn display(&self) -> PresenceStatus {
        match (self.devices, self.in_call) {
            (0, _) => PresenceStatus::Offline,
            (_, true) => PresenceStatus::InCall,
            (_, false) => self.status.into(),
        }
    }
}

/// One event for the user's friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendNotice {
    /// `friend_online`: the first device came up.
    Online,
    /// `friend_offline`: the last device went away.
    Offline,
    /// `friend_in_call`.
    InCall,
    /// `friend_out_of_call`.
    OutOfCall,
    /// `friend_status`: the user-set status changed between online, away and busy.
    Status(UserStatus),
}

/// What friends are told when a user's facts go from `before` to `after`, in order.
///
/// An offline user's changes are silent: friends learn the current status and call state
/// with `friend_online` (followed by `friend_in_call` / `friend_status` where needed).
pub fn notices(before: PresenceFacts, after: PresenceFacts) -> Vec<FriendNotice> {
    let was_online = before.devices > 0;
    let is_online = after.devices > 0;
    let mut out = Vec::new();
    match (was_online, is_online) {
        (false, false) => {}
        (true, false) => out.push(FriendNotice::Offline),
        (false, true) => {
            out.push(FriendNotice::Online);
            if after.status != UserStatus::Online {
                out.push(FriendNotice::Status(after.status));
            }
            if after.in_call {
                out.push(FriendNotice::InCall);
            }
        }
        (true, true) => {
            if before.status != after.status {
                out.push(FriendNotice::Status(after.status));
            }
            match (before.in_call, after.in_call) {
                (false, true) => out.push(FriendNotice::InCall),
                (true, false) => out.push(FriendNotice::OutOfCall),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use FriendNotice::*;

    fn facts(devices: u32, status: UserStatus, in_call: bool) -> PresenceFacts {
        PresenceFacts {
            devices,
            status,
            in_call,
        }
    }

    #[test]
    fn display_follows_seed_000s_machine() {
        assert_eq!(PresenceFacts::OFFLINE.display(), PresenceStatus::Offline);
        assert_eq!(
            facts(1, UserStatus::Online, false).display(),
            PresenceStatus::Online
        );
        assert_eq!(
            facts(2, UserStatus::Away, false).display(),
            PresenceStatus::Away
        );
        assert_eq!(
            facts(1, UserStatus::Busy, true).display(),
            PresenceStatus::InCall
        );
        assert_eq!(
            facts(0, UserStatus::Busy, true).display(),
            PresenceStatus::Offline
        );
    }

    #[test]
    fn leaving_a_call_restores_the_user_set_status() {
        let before_call = facts(1, UserStatus::Away, false);
        let in_call = PresenceFacts {
            in_call: true,
            ..before_call
        };
        let after_call = PresenceFacts {
            in_call: false,
            ..in_call
        };
        assert_eq!(in_call.display(), PresenceStatus::InCall);
        assert_eq!(after_call.display(), PresenceStatus::Away);
        assert_eq!(notices(before_call, in_call), vec![InCall]);
        assert_eq!(notices(in_call, after_call), vec![OutOfCall]);
    }

    #[test]
    fn first_and_last_device_are_the_only_online_edges() {
        let off = PresenceFacts::OFFLINE;
        let one = facts(1, UserStatus::Online, false);
        let two = facts(2, UserStatus::Online, false);
        assert_eq!(notices(off, one), vec![Online]);
        assert_eq!(
            notices(one, two),
            vec![],
            "a second device changes nothing for friends"
        );
        assert_eq!(notices(two, one), vec![]);
        assert_eq!(notices(one, off), vec![Offline]);
    }

    #[test]
    fn coming_online_tells_the_status_and_the_call() {
        let off = facts(0, UserStatus::Busy, true);
        let on = facts(1, UserStatus::Busy, true);
        assert_eq!(
            notices(off, on),
            vec![Online, Status(UserStatus::Busy), InCall]
        );
    }

    #[test]
    fn status_changes_are_told_while_online_even_in_a_call() {
        assert_eq!(
            notices(
                facts(1, UserStatus::Online, false),
                facts(1, UserStatus::Away, false)
            ),
            vec![Status(UserStatus::Away)]
        );
        assert_eq!(
            notices(
                facts(1, UserStatus::Online, true),
                facts(1, UserStatus::Busy, true)
            ),
            vec![Status(UserStatus::Busy)]
        );
        assert_eq!(
            notices(
                facts(1, UserStatus::Away, false),
                facts(1, UserStatus::Away, false)
            ),
            vec![]
        );
        assert_eq!(
            notices(
                facts(0, UserStatus::Online, false),
                facts(0, UserStatus::Away, false)
            ),
            vec![],
            "offline users are silent"
        );
    }

    #[test]
    fn going_offline_in_a_call_is_just_offline() {
        assert_eq!(
            notices(
                facts(1, UserStatus::Online, true),
                facts(0, UserStatus::Online, true)
            ),
            vec![Offline]
        );
    }

    #[test]
    fn stored_statuses_are_read_leniently() {
        assert_eq!(parse_user_status(Some("busy")), UserStatus::Busy);
        assert_eq!(parse_user_status(Some("idle")), UserStatus::Online);
        assert_eq!(parse_user_status(None), UserStatus::Online);
    }
}
