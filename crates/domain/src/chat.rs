//! Chat rules (protocol §9, seeds 001–003), sans-IO.
//!
//! The services load a conversation's facts ([`ConversationMeta`], also what the state
//! store caches under `keys::conversation`) and ask these functions who may do what, what a
//! user may see, who is told, and what typing should do. Nothing here reads the clock or
//! touches a backend.

use serde::{Deserialize, Serialize};
pub use switchboard_protocol::chat::ConversationType;

use crate::limits::Limits;
use crate::{DomainError, Millis};

/// One member of a conversation, as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberMeta {
    pub user_id: String,
    /// An admin may manage a group (the creator is always one).
    pub admin: bool,
    pub joined_at: Millis,
    /// When this user deleted (hid) the conversation on their side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Millis>,
}

/// A conversation's facts: kind, name, creator and members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationMeta {
    pub id: String,
    pub kind: ConversationType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_by: String,
    pub created_at: Millis,
    pub members: Vec<MemberMeta>,
}

impl ConversationMeta {
    pub fn member(&self, user_id: &str) -> Option<&MemberMeta> {
        self.members.iter().find(|m| m.user_id == user_id)
    }

    pub fn member_ids(&self) -> Vec<String> {
        self.members.iter().map(|m| m.user_id.clone()).collect()
    }

    /// Admins other than the creator (the wire's `adminIds`).
    pub fn admin_ids(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.admin && m.user_id != self.created_by)
            .map(|m| m.user_id.clone())
            .collect()
    }
}

fn not_member() -> DomainError {
    DomainError::Forbidden("you are not a member of this conversation".into())
}

/// Members may read, send, react, mark read, type, leave and delete on their side.
pub fn require_member<'a>(
    meta: &'a ConversationMeta,
    user_id: &str,
) -> Result<&'a MemberMeta, DomainError> {
    meta.member(user_id).ok_or_else(not_member)
}

/// Whether `user_id` may manage the group (add and remove members, rename): the creator or
/// an admin, of a group. A direct conversation has fixed members and no name.
pub fn require_manager(meta: &ConversationMeta, user_id: &str) -> Result<(), DomainError> {
    let member = require_member(meta, user_id)?;
    if meta.kind == ConversationType::Direct {
        return Err(DomainError::Forbidden(
            "a direct conversation's members and name cannot change".into(),
        ));
    }
    if member.admin || meta.created_by == user_id {
        Ok(())
    } else {
        Err(DomainError::Forbidden(
            "only the creator or an admin may manage this group".into(),
        ))
    }
}

/// Adding members: a manager, and the group stays within `limits.conversation_members`.
/// Returns the ids that are not members yet (deduplicated, in request order).
pub fn plan_add_members(
    meta: &ConversationMeta,
    actor: &str,
    requested: &[String],
    limits: &Limits,
) -> Result<Vec<String>, DomainError> {
    require_manager(meta, actor)?;
    let mut new: Vec<String> = Vec::new();
    for id in requested {
        if meta.member(id).is_none() && !new.contains(id) {
            new.push(id.clone());
        }
    }
    if meta.members.len() + new.len() > limits.conversation_members {
        return Err(DomainError::invalid(format!(
            "a conversation has at most {} members",
            limits.conversation_members
        )));
    }
    Ok(new)
}

/// Removing someone else: a manager, the target a member, and only the creator may remove
/// an admin (nobody removes the creator; the creator may leave).
pub fn check_remove_member(
    meta: &ConversationMeta,
    actor: &str,
    target: &str,
) -> Result<(), DomainError> {
    require_manager(meta, actor)?;
    let Some(member) = meta.member(target) else {
        return Err(DomainError::NotFound(
            "that user is not a member of this conversation".into(),
        ));
    };
    if target == meta.created_by && actor != target {
        return Err(DomainError::Forbidden(
            "the creator of a group cannot be removed".into(),
        ));
    }
    if member.admin && actor != meta.created_by && actor != target {
        return Err(DomainError::Forbidden(
            "only the creator may remove an admin".into(),
        ));
    }
    Ok(())
}

/// The members of a new conversation, creator first, deduplicated.
pub fn plan_create(
    creator: &str,
    kind: ConversationType,
    member_ids: &[String],
    limits: &Limits,
) -> Result<Vec<String>, DomainError> {
    let mut members = vec![creator.to_string()];
    for id in member_ids {
        if !members.contains(id) {
            members.push(id.clone());
        }
    }
    match kind {
        ConversationType::Direct if members.len() != 2 => Err(DomainError::invalid(
            "a direct conversation has exactly one other member",
        )),
        ConversationType::Group if members.len() > limits.conversation_members => {
            Err(DomainError::invalid(format!(
                "a conversation has at most {} members",
                limits.conversation_members
            )))
        }
        _ => Ok(members),
    }
}

/// Message text: not blank, at most `limits.message_bytes` bytes (an oversized string is an
/// invalid payload, protocol §3).
pub fn check_content(limits: &Limits, content: &str) -> Result<(), DomainError> {
    if content.trim().is_empty() {
        return Err(DomainError::invalid("content must not be empty"));
    }
    if content.len() > limits.message_bytes {
        return Err(DomainError::invalid(format!(
            "content is larger than {} bytes",
            limits.message_bytes
        )));
    }
    Ok(())
}

/// A reaction emoji: non-empty, at most `limits.emoji_bytes` bytes, no whitespace or
/// control characters.
pub fn check_emoji(limits: &Limits, emoji: &str) -> Result<(), DomainError> {
    if emoji.is_empty() || emoji.len() > limits.emoji_bytes {
        return Err(DomainError::invalid(format!(
            "emoji must be 1 to {} bytes",
            limits.emoji_bytes
        )));
    }
    if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DomainError::invalid(
            "emoji must not contain spaces or control characters",
        ));
    }
    Ok(())
}

/// Only the sender edits or deletes a message.
pub fn require_sender(sender_id: &str, user_id: &str) -> Result<(), DomainError> {
    if sender_id == user_id {
        Ok(())
    } else {
        Err(DomainError::Forbidden(
            "only the sender may change this message".into(),
        ))
    }
}

/// Whether a user who deleted the conversation at `deleted_at` sees a message created at
/// `created_at`: only messages strictly newer than the deletion.
pub fn visible(deleted_at: Option<Millis>, created_at: Millis) -> bool {
    deleted_at.is_none_or(|d| created_at > d)
}

/// Whether a conversation is in the user's list: not deleted, or a newer message came
/// since (which brings it back).
pub fn listed(deleted_at: Option<Millis>, last_message_at: Option<Millis>) -> bool {
    match deleted_at {
        None => true,
        Some(d) => last_message_at.is_some_and(|at| at > d),
    }
}

/// Who gets an unread increment for a new message: every member except the sender.
pub fn unread_recipients(meta: &ConversationMeta, sender_id: &str) -> Vec<String> {
    meta.members
        .iter()
        .filter(|m| m.user_id != sender_id)
        .map(|m| m.user_id.clone())
        .collect()
}

/// What `typing:start` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypingStart {
    /// Tell the others `isTyping: true` and (re)arm the expiry at this time.
    Broadcast { expires_at: Millis },
    /// Over the refresh rate limit: answer success, change nothing. The indicator already
    /// shown stays until its expiry (the client's refreshes within the window armed it).
    Throttled,
}

/// `typing:start` within (`allowed`) or over the refresh rate limit.
pub fn typing_start(allowed: bool, now: Millis, typing_secs: u64) -> TypingStart {
    if allowed {
        let ttl = i64::try_from(typing_secs.max(1).saturating_mul(1000)).unwrap_or(i64::MAX);
        TypingStart::Broadcast {
            expires_at: now.saturating_add(ttl),
        }
    } else {
        TypingStart::Throttled
    }
}

/// `typing:stop` (or the expiry) tells the others only if the user was still typing, i.e.
/// the expiry timer was still pending when it was cancelled.
pub fn typing_stop_broadcasts(timer_was_pending: bool) -> bool {
    timer_was_pending
}

/// The deadline-queue id of a user's typing expiry in a conversation: one per pair, so
/// rescheduling replaces it. Length-prefixed so no two pairs collide.
pub fn typing_timer_id(conversation_id: &str, user_id: &str) -> String {
    format!(
        "typing:{}:{conversation_id}:{user_id}",
        conversation_id.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, admin: bool) -> MemberMeta {
        MemberMeta {
            user_id: id.into(),
            admin,
            joined_at: 1,
            deleted_at: None,
        }
    }

    fn group() -> ConversationMeta {
        ConversationMeta {
            id: "c1".into(),
            kind: ConversationType::Group,
            name: Some("Team".into()),
            created_by: "ann".into(),
            created_at: 1,
            members: vec![
                member("ann", true),
                member("bob", true),
                member("cat", false),
            ],
        }
    }

    fn direct() -> ConversationMeta {
        ConversationMeta {
            id: "d1".into(),
            kind: ConversationType::Direct,
            name: None,
            created_by: "ann".into(),
            created_at: 1,
            members: vec![member("ann", false), member("bob", false)],
        }
    }

    fn code(e: DomainError) -> &'static str {
        e.code().as_str()
    }

    #[test]
    fn members_may_act_others_may_not() {
        assert!(require_member(&group(), "cat").is_ok());
        assert_eq!(
            code(require_member(&group(), "eve").unwrap_err()),
            "FORBIDDEN"
        );
    }

    #[test]
    fn groups_are_managed_by_the_creator_or_admins() {
        let g = group();
        assert!(require_manager(&g, "ann").is_ok());
        assert!(require_manager(&g, "bob").is_ok());
        assert_eq!(code(require_manager(&g, "cat").unwrap_err()), "FORBIDDEN");
        assert_eq!(code(require_manager(&g, "eve").unwrap_err()), "FORBIDDEN");
        assert_eq!(g.admin_ids(), vec!["bob".to_string()]);
    }

    #[test]
    fn direct_conversations_cannot_change_members() {
        let d = direct();
        let limits = Limits::default();
        assert_eq!(
            code(plan_add_members(&d, "ann", &["cat".into()], &limits).unwrap_err()),
            "FORBIDDEN"
        );
        assert_eq!(
            code(check_remove_member(&d, "ann", "bob").unwrap_err()),
            "FORBIDDEN"
        );
    }

    #[test]
    fn adding_members_skips_existing_ones_and_respects_the_cap() {
        let g = group();
        let mut limits = Limits::default();
        let new = plan_add_members(
            &g,
            "ann",
            &["cat".into(), "dan".into(), "dan".into(), "eve".into()],
            &limits,
        )
        .unwrap();
        assert_eq!(new, vec!["dan".to_string(), "eve".to_string()]);
        limits.conversation_members = 4;
        assert_eq!(
            code(plan_add_members(&g, "ann", &["dan".into(), "eve".into()], &limits).unwrap_err()),
            "INVALID_PAYLOAD"
        );
        assert!(plan_add_members(&g, "ann", &["dan".into()], &limits).is_ok());
    }

    #[test]
    fn removal_rules() {
        let g = group();
        assert!(check_remove_member(&g, "ann", "cat").is_ok());
        assert!(
            check_remove_member(&g, "ann", "bob").is_ok(),
            "the creator removes an admin"
        );
        assert_eq!(
            code(check_remove_member(&g, "bob", "ann").unwrap_err()),
            "FORBIDDEN"
        );
        assert!(check_remove_member(&g, "bob", "cat").is_ok());
        assert_eq!(
            code(check_remove_member(&g, "ann", "eve").unwrap_err()),
            "NOT_FOUND"
        );
        assert_eq!(
            code(check_remove_member(&g, "cat", "bob").unwrap_err()),
            "FORBIDDEN"
        );
    }

    #[test]
    fn creation_plans() {
        let limits = Limits::default();
        assert_eq!(
            plan_create(
                "ann",
                ConversationType::Direct,
                &["bob".into(), "ann".into()],
                &limits
            )
            .unwrap(),
            vec!["ann".to_string(), "bob".to_string()]
        );
        assert!(plan_create("ann", ConversationType::Direct, &["ann".into()], &limits).is_err());
        assert!(
            plan_create(
                "ann",
                ConversationType::Direct,
                &["bob".into(), "cat".into()],
                &limits
            )
            .is_err()
        );
        let small = Limits {
            conversation_members: 2,
            ..Limits::default()
        };
        assert!(plan_create("ann", ConversationType::Group, &["bob".into()], &small).is_ok());
        assert!(
            plan_create(
                "ann",
                ConversationType::Group,
                &["bob".into(), "cat".into()],
                &small
            )
            .is_err()
        );
    }

    #[test]
    fn content_and_emoji_limits() {
        let limits = Limits::default();
        assert!(check_content(&limits, "hi").is_ok());
        assert!(check_content(&limits, " \n\t ").is_err());
        assert!(check_content(&limits, &"x".repeat(8 * 1024)).is_ok());
        assert_eq!(
            code(check_content(&limits, &"x".repeat(8 * 1024 + 1)).unwrap_err()),
            "INVALID_PAYLOAD"
        );
        assert!(check_emoji(&limits, "👍").is_ok());
        assert!(check_emoji(&limits, "❤️").is_ok());
        assert!(check_emoji(&limits, "").is_err());
        assert!(check_emoji(&limits, &"👍".repeat(9)).is_err());
        assert!(check_emoji(&limits, "a b").is_err());
    }

    #[test]
    fn only_the_sender_changes_a_message() {
        assert!(require_sender("ann", "ann").is_ok());
        assert_eq!(code(require_sender("ann", "bob").unwrap_err()), "FORBIDDEN");
    }

    #[test]
    fn deletion_hides_older_messages_and_a_newer_one_brings_it_back() {
        assert!(visible(None, 5));
        assert!(!visible(Some(10), 9));
        assert!(
            !visible(Some(10), 10),
            "the same millisecond is before the deletion"
        );
        assert!(visible(Some(10), 11));
        assert!(listed(None, None));
        assert!(!listed(Some(10), None));
        assert!(!listed(Some(10), Some(10)));
        assert!(listed(Some(10), Some(11)));
    }

    #[test]
    fn everyone_but_the_sender_gets_unread() {
        assert_eq!(
            unread_recipients(&group(), "bob"),
            vec!["ann".to_string(), "cat".to_string()]
        );
    }

    #[test]
    fn typing_decisions() {
        assert_eq!(
            typing_start(true, 1_000, 10),
            TypingStart::Broadcast { expires_at: 11_000 }
        );
        assert_eq!(typing_start(false, 1_000, 10), TypingStart::Throttled);
        assert!(typing_stop_broadcasts(true));
        assert!(!typing_stop_broadcasts(false));
        assert_ne!(typing_timer_id("a:b", "c"), typing_timer_id("a", "b:c"));
        assert_eq!(typing_timer_id("c1", "u1"), typing_timer_id("c1", "u1"));
    }

    #[test]
    fn meta_round_trips_as_json() {
        let g = group();
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<ConversationMeta>(&json).unwrap(), g);
    }
}
