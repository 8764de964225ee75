//! Size limits of protocol §11 and the validation helpers that enforce them.

use crate::DomainError;

/// Configurable limits; the defaults are the protocol's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    pub message_bytes: usize,
    pub sdp_bytes: usize,
    pub ice_candidate_bytes: usize,
    pub name_chars: usize,
    pub id_chars: usize,
    pub emoji_bytes: usize,
    pub room_participants: usize,
    pub conversation_members: usize,
    pub devices_per_user: usize,
    /// Largest id list accepted in one request (e.g. `presence:get`, `users:get`).
    pub id_list_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            message_bytes: 8 * 1024,
            sdp_bytes: 64 * 1024,
            ice_candidate_bytes: 2 * 1024,
            name_chars: 128,
            id_chars: 128,
            emoji_bytes: 32,
            room_participants: 100,
            conversation_members: 1_000,
            devices_per_user: 10,
            id_list_len: 500,
        }
    }
}

impl Limits {
    /// An id: non-empty, at most `id_chars` characters, no control characters.
    pub fn check_id(&self, field: &str, id: &str) -> Result<(), DomainError> {
        if id.is_empty() {
            return Err(DomainError::invalid(format!("{field} must not be empty")));
        }
        if id.chars().count() > self.id_chars {
            return Err(DomainError::invalid(format!(
                "{field} is longer than {} characters",
                self.id_chars
            )));
        }
        if id.chars().any(char::is_control) {
            return Err(DomainError::invalid(format!(
                "{field} contains control characters"
            )));
        }
        Ok(())
    }

    /// A display name: trimmed non-empty, at most `name_chars` characters.
    pub fn check_name(&self, field: &str, name: &str) -> Result<(), DomainError> {
        if name.trim().is_empty() {
            return Err(DomainError::invalid(format!("{field} must not be empty")));
        }
        if name.chars().count() > self.name_chars {
            return Err(DomainError::invalid(format!(
                "{field} is longer than {} characters",
                self.name_chars
            )));
        }
        Ok(())
    }

    /// A list of ids: at most `id_list_len` entries, each a valid id.
    pub fn check_id_list(&self, field: &str, ids: &[String]) -> Result<(), DomainError> {
        if ids.len() > self.id_list_len {
            return Err(DomainError::invalid(format!(
                "{field} has more than {} entries",
                self.id_list_len
            )));
        }
        ids.iter().try_for_each(|id| self.check_id(field, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_non_empty() {
        let limits = Limits::default();
        assert!(limits.check_id("userId", "alice").is_ok());
        assert!(limits.check_id("userId", "").is_err());
        assert!(limits.check_id("userId", &"x".repeat(129)).is_err());
        assert!(limits.check_id("userId", "a\u{0}b").is_err());
    }

    #[test]
    fn names_must_have_visible_text() {
        let limits = Limits::default();
        assert!(limits.check_name("name", "Alice").is_ok());
        assert!(limits.check_name("name", "   ").is_err());
        assert!(limits.check_name("name", &"é".repeat(129)).is_err());
        assert!(limits.check_name("name", &"é".repeat(128)).is_ok());
    }

    #[test]
    fn id_lists_are_capped() {
        let limits = Limits::default();
        let many: Vec<String> = (0..501).map(|i| i.to_string()).collect();
        assert!(limits.check_id_list("userIds", &many).is_err());
        assert!(limits.check_id_list("userIds", &many[..500]).is_ok());
    }
}
