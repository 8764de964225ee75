//! Chat services (protocol §9) driven in simulated time, with a recording outbox standing in
//! for Socket.IO: conversations, the group-commit writer, idempotency, rate limits, deletion
//! visibility, unread counts across restarts, history paging, edits, reactions and typing.

use std::sync::Arc;
use std::time::Duration;

use switchboard_db::{Db, DbOptions};
use switchboard_domain::chat::ConversationType;
use switchboard_domain::time::{Clock, ManualClock};
use switchboard_protocol::chat::Message;
use switchboard_server::app::{App, Backends, SharedApp};
use switchboard_server::config::{Overrides, RateLimit, Settings};
use switchboard_server::error::{AppError, AppResult};
use switchboard_server::services::messages::{self, SendRequest};
use switchboard_server::services::{conversations, notifications, typing, users};
use switchboard_store::bus::MemoryBus;
use switchboard_store::memory::MemoryStore;

mod support;
use support::Recorder;

struct Harness {
    app: SharedApp,
    clock: ManualClock,
    outbox: Arc<Recorder>,
    dir: std::path::PathBuf,
    settings: Settings,
}

impl Drop for Harness {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

const START: i64 = 1_800_000_000_000;

fn settings() -> Settings {
    let overrides = Overrides {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
        redis_url: None,
        database_url: None,
    };
    let mut settings = Settings::load_from(None, &overrides, &|_| None).unwrap();
    settings.presence.public = Some(false);
    settings
}

async fn harness_with(settings: Settings) -> Harness {
    let dir = std::env::temp_dir().join(format!("sb-chat-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = ManualClock::new(START);
    let outbox = Arc::new(Recorder::default());
    let app = build(&settings, &dir, &clock, outbox.clone()).await;
    for (id, name) in [
        ("alice", "Alice"),
        ("bob", "Bob"),
        ("carol", "Carol"),
        ("dave", "Dave"),
    ] {
        users::upsert(&app, id, name).await.unwrap();
    }
    Harness {
        app,
        clock,
        outbox,
        dir,
        settings,
    }
}

/// An instance on the database in `dir` with a fresh memory store (a restart, in memory mode).
async fn build(
    settings: &Settings,
    dir: &std::path::Path,
    clock: &ManualClock,
    outbox: Arc<Recorder>,
) -> SharedApp {
    let db = Db::connect(
        &format!("sqlite://{}/t.db?mode=rwc", dir.display()),
        &DbOptions::default(),
    )
    .await
    .unwrap();
    db.migrate().await.unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(clock.clone()) as Arc<dyn Clock>));
    let backends = Backends {
        store,
        db,
        bus: Arc::new(MemoryBus::new()),
    };
    App::new(settings.clone(), backends, Arc::new(clock.clone()), outbox)
}

async fn harness() -> Harness {
    harness_with(settings()).await
}

fn code<T: std::fmt::Debug>(r: AppResult<T>) -> &'static str {
    r.unwrap_err().code().as_str()
}

async fn send(app: &App, from: &str, conversation: &str, content: &str) -> AppResult<Message> {
    send_with(app, from, conversation, content, None).await
}

async fn send_with(
    app: &App,
    from: &str,
    conversation: &str,
    content: &str,
    client_id: Option<&str>,
) -> AppResult<Message> {
    messages::send(
        app,
        SendRequest {
            sender_id: from,
            sender_name: from,
            conversation_id: conversation,
            content,
            reply_to: None,
            client_message_id: client_id,
        },
    )
    .await
}

async fn group(app: &App, creator: &str, others: &[&str]) -> String {
    let others: Vec<String> = others.iter().map(|s| s.to_string()).collect();
    conversations::create(app, creator, ConversationType::Group, &others, Some("Team"))
        .await
        .unwrap()
        .id
}

async fn direct(app: &App, a: &str, b: &str) -> String {
    conversations::create(app, a, ConversationType::Direct, &[b.to_string()], None)
        .await
        .unwrap()
        .id
}

async fn all_history(app: &App, user: &str, conversation: &str) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let (page, more) =
            messages::history(app, user, conversation, before.as_deref(), None, Some(100))
                .await
                .unwrap();
        let first = page.first().map(|m| m.id.clone());
        let mut page = page;
        page.extend(out);
        out = page;
        if !more || first.is_none() {
            return out;
        }
        before = first;
    }
}

#[tokio::test]
async fn a_direct_conversation_is_unique_per_pair_even_when_created_concurrently() {
    let h = harness().await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let app = h.app.clone();
        tasks.push(tokio::spawn(async move {
            let (a, b) = if i % 2 == 0 {
                ("alice", "bob")
            } else {
                ("bob", "alice")
            };
            direct(&app, a, b).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every creator got the same conversation");
    let list = conversations::list(&h.app, "alice").await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].conversation_type, ConversationType::Direct);
    let mut members = list[0].member_ids.clone();
    members.sort();
    assert_eq!(members, ["alice", "bob"]);
    // Both members' sockets are told to join the room.
    let joins = h.outbox.joins();
    assert!(joins.contains(&("user:bob".into(), format!("conv:{}", ids[0]))));
    // Self-chat and three-way "direct" conversations are refused.
    let r = conversations::create(
        &h.app,
        "alice",
        ConversationType::Direct,
        &["alice".into()],
        None,
    )
    .await;
    assert_eq!(code(r), "INVALID_PAYLOAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_are_group_committed_acked_and_stored_exactly_once() {
    let mut s = settings();
    s.rate_limits.message = RateLimit::new(10_000, 10);
    let h = harness_with(s).await;
    let conv = group(&h.app, "alice", &["bob", "carol", "dave"]).await;
    let senders = ["alice", "bob", "carol", "dave"];
    let mut tasks = Vec::new();
    for i in 0..200 {
        let app = h.app.clone();
        let conv = conv.clone();
        let from = senders[i % senders.len()];
        tasks.push(tokio::spawn(async move {
            send(&app, from, &conv, &format!("message {i}")).await
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap().expect("every send is acked"));
    }
    let history = all_history(&h.app, "alice", &conv).await;
    assert_eq!(history.len(), 200);
    let mut contents: Vec<&str> = history.iter().map(|m| m.content.as_str()).collect();
    contents.sort();
    contents.dedup();
    assert_eq!(contents.len(), 200, "each message stored exactly once");
    let mut ids: Vec<&str> = acked.iter().map(|m| m.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    let batches = h.app.messages.batches();
    assert!(
        batches <= 100,
        "group commit: {batches} transactions for 200 messages"
    );
    assert_eq!(
        h.outbox
            .to_room(&format!("conv:{conv}"), "message:new")
            .len(),
        200
    );
    // Every member but the sender counts each message: 150 unread each.
    for user in senders {
        let counts = messages::unread_counts(&h.app, user).await.unwrap();
        assert_eq!(counts.get(&conv).copied(), Some(150), "{user}");
    }
    eprintln!("group commit: 200 messages in {batches} transactions");
}

#[tokio::test]
async fn a_queued_burst_is_one_transaction() {
    let mut s = settings();
    s.rate_limits.message = RateLimit::new(10_000, 10);
    let h = harness_with(s).await;
    let conv = group(&h.app, "alice", &["bob"]).await;
    let before = h.app.messages.batches();
    // On one thread every send queues before the writer first runs.
    let sends = (0..50).map(|i| {
        let app = h.app.clone();
        let conv = conv.clone();
        async move { send(&app, "bob", &conv, &format!("m{i}")).await }
    });
    let results = futures::future::join_all(sends).await;
    assert!(results.iter().all(|r| r.is_ok()));
    assert_eq!(h.app.messages.batches() - before, 1);
}

#[tokio::test]
async fn a_retried_client_message_id_never_creates_a_second_message() {
    let h = harness().await;
    let conv = direct(&h.app, "alice", "bob").await;
    let first = send_with(&h.app, "alice", &conv, "hello", Some("local-1"))
        .await
        .unwrap();
    let again = send_with(&h.app, "alice", &conv, "hello", Some("local-1"))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(again.client_message_id.as_deref(), Some("local-1"));
    // Concurrent retries (likely in one batch) also resolve to one message.
    let (a, b) = tokio::join!(
        send_with(&h.app, "alice", &conv, "again", Some("local-2")),
        send_with(&h.app, "alice", &conv, "again", Some("local-2")),
    );
    assert_eq!(a.unwrap().id, b.unwrap().id);
    let history = all_history(&h.app, "bob", &conv).await;
    assert_eq!(history.len(), 2);
    assert_eq!(
        h.outbox
            .to_room(&format!("conv:{conv}"), "message:new")
            .len(),
        2,
        "a retry is not broadcast again"
    );
    assert_eq!(
        messages::unread_counts(&h.app, "bob").await.unwrap()[&conv],
        2,
        "a retry is not counted again"
    );
    // Another sender may use the same client id.
    let other = send_with(&h.app, "bob", &conv, "hi", Some("local-1"))
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
}

#[tokio::test]
async fn sending_is_rate_limited_with_retry_after() {
    let h = harness().await;
    let conv = direct(&h.app, "alice", "bob").await;
    for i in 0..10 {
        send(&h.app, "alice", &conv, &format!("m{i}"))
            .await
            .unwrap();
        h.clock.advance(100);
    }
    let refused = send(&h.app, "alice", &conv, "one too many")
        .await
        .unwrap_err();
    assert_eq!(refused.code().as_str(), "RATE_LIMITED");
    let retry = refused.retry_after_ms().expect("retryAfterMs");
    assert!(retry > 0 && retry <= 10_000, "{retry}");
    let ack = serde_json::to_value(refused.to_ack()).unwrap();
    assert_eq!(ack["retryAfterMs"], retry);
    // Other users have their own window.
    send(&h.app, "bob", &conv, "fine").await.unwrap();
    h.clock.advance(retry as i64);
    send(&h.app, "alice", &conv, "after the window")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_deleted_conversation_shows_only_newer_messages_and_comes_back_with_one() {
    let h = harness().await;
    let conv = direct(&h.app, "alice", "bob").await;
    send(&h.app, "alice", &conv, "old 1").await.unwrap();
    send(&h.app, "alice", &conv, "old 2").await.unwrap();
    h.clock.advance(1_000);
    let deleted_at = conversations::delete(&h.app, "bob", &conv).await.unwrap();
    assert_eq!(deleted_at, START + 1_000);
    assert!(conversations::list(&h.app, "bob").await.unwrap().is_empty());
    assert!(all_history(&h.app, "bob", &conv).await.is_empty());
    assert!(
        messages::unread_counts(&h.app, "bob")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        all_history(&h.app, "alice", &conv).await.len(),
        2,
        "only bob's side"
    );
    assert_eq!(conversations::list(&h.app, "alice").await.unwrap().len(), 1);

    h.clock.advance(1_000);
    let new = send(&h.app, "alice", &conv, "new").await.unwrap();
    let list = conversations::list(&h.app, "bob").await.unwrap();
    assert_eq!(list.len(), 1, "a newer message brings it back");
    assert_eq!(list[0].last_message.as_ref().unwrap().id, new.id);
    assert_eq!(list[0].unread_count, 1);
    let history = all_history(&h.app, "bob", &conv).await;
    assert_eq!(
        history
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["new"]
    );
    // Deleting again hides it again.
    h.clock.advance(1_000);
    conversations::delete(&h.app, "bob", &conv).await.unwrap();
    assert!(conversations::list(&h.app, "bob").await.unwrap().is_empty());
}

#[tokio::test]
async fn unread_counts_rise_reset_on_read_and_survive_a_restart_with_a_fresh_memory_store() {
    let h = harness().await;
    let conv = group(&h.app, "alice", &["bob", "carol"]).await;
    for i in 0..3 {
        send(&h.app, "alice", &conv, &format!("m{i}"))
            .await
            .unwrap();
        h.clock.advance(10);
    }
    assert!(
        messages::unread_counts(&h.app, "alice")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        messages::unread_counts(&h.app, "bob").await.unwrap()[&conv],
        3
    );
    let updates = h.outbox.to_room("user:bob", "unread:updated");
    assert_eq!(updates.last().unwrap()["count"], 3);
    assert_eq!(updates.last().unwrap()["conversationId"], conv.as_str());
    assert!(h.outbox.to_room("user:alice", "unread:updated").is_empty());

    h.clock.advance(10);
    let read_at = messages::mark_read(&h.app, "bob", &conv).await.unwrap();
    assert!(
        messages::unread_counts(&h.app, "bob")
            .await
            .unwrap()
            .is_empty()
    );
    let read = h
        .outbox
        .to_room(&format!("conv:{conv}"), "conversation:read");
    assert_eq!(read[0]["userId"], "bob");
    assert_eq!(read[0]["readAt"], read_at);
    assert_eq!(
        h.outbox
            .to_room("user:bob", "unread:updated")
            .last()
            .unwrap()["count"],
        0
    );

    // A restart in memory mode: same database, empty store.
    h.clock.advance(10);
    let restarted = build(&h.settings, &h.dir, &h.clock, Arc::new(Recorder::default())).await;
    // A message arrives before carol asks: it must not be counted twice.
    send(&restarted, "bob", &conv, "after restart")
        .await
        .unwrap();
    assert_eq!(
        messages::unread_counts(&restarted, "carol").await.unwrap()[&conv],
        4
    );
    assert_eq!(
        messages::unread_counts(&restarted, "bob")
            .await
            .unwrap()
            .get(&conv),
        None
    );
    assert_eq!(
        messages::unread_counts(&restarted, "alice").await.unwrap()[&conv],
        1
    );
    let listed = conversations::list(&restarted, "carol").await.unwrap();
    assert_eq!(listed[0].unread_count, 4);
    // And keeps counting from there.
    send(&restarted, "alice", &conv, "more").await.unwrap();
    assert_eq!(
        messages::unread_counts(&restarted, "carol").await.unwrap()[&conv],
        5
    );
}

#[tokio::test]
async fn history_pages_backwards_and_catches_up_forwards() {
    let mut s = settings();
    s.rate_limits.message = RateLimit::new(10_000, 10);
    let h = harness_with(s).await;
    let conv = direct(&h.app, "alice", "bob").await;
    let mut sent = Vec::new();
    for i in 0..130 {
        sent.push(
            send(&h.app, "alice", &conv, &format!("m{i}"))
                .await
                .unwrap(),
        );
        h.clock.advance(1);
    }
    let (newest, more) = messages::history(&h.app, "bob", &conv, None, None, None)
        .await
        .unwrap();
    assert_eq!(newest.len(), 50, "default page");
    assert!(more);
    assert_eq!(newest.first().unwrap().content, "m80");
    assert_eq!(newest.last().unwrap().content, "m129");
    let (older, more) =
        messages::history(&h.app, "bob", &conv, Some(&newest[0].id), None, Some(500))
            .await
            .unwrap();
    assert_eq!(older.len(), 80, "capped at 100 but only 80 are older");
    assert!(!more);
    assert_eq!(older.first().unwrap().content, "m0");
    assert_eq!(older.last().unwrap().content, "m79");
    // A reconnecting client that last saw m119 catches up.
    let (missed, more) =
        messages::history(&h.app, "bob", &conv, None, Some(&sent[119].id), Some(5))
            .await
            .unwrap();
    assert_eq!(
        missed
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["m120", "m121", "m122", "m123", "m124"]
    );
    assert!(more);
    let (rest, more) = messages::history(&h.app, "bob", &conv, None, Some(&missed[4].id), None)
        .await
        .unwrap();
    assert_eq!(rest.len(), 5);
    assert!(!more);
    // Between two cursors.
    let (between, _) = messages::history(
        &h.app,
        "bob",
        &conv,
        Some(&sent[10].id),
        Some(&sent[5].id),
        None,
    )
    .await
    .unwrap();
    assert_eq!(between.len(), 4);
    // Unknown cursors and non-members.
    assert_eq!(
        code(messages::history(&h.app, "bob", &conv, Some("nope"), None, None).await),
        "NOT_FOUND"
    );
    assert_eq!(
        code(messages::history(&h.app, "carol", &conv, None, None, None).await),
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn only_the_sender_edits_or_deletes_and_everyone_is_told() {
    let h = harness().await;
    let conv = direct(&h.app, "alice", "bob").await;
    let m = send(&h.app, "alice", &conv, "helo").await.unwrap();
    assert_eq!(
        code(messages::edit(&h.app, "bob", &conv, &m.id, "hijack").await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(messages::delete(&h.app, "bob", &conv, &m.id).await),
        "FORBIDDEN"
    );
    h.clock.advance(5);
    let edited = messages::edit(&h.app, "alice", &conv, &m.id, "hello")
        .await
        .unwrap();
    assert_eq!(edited.content, "hello");
    assert_eq!(edited.edited_at, Some(START + 5));
    let told = h.outbox.to_room(&format!("conv:{conv}"), "message:edited");
    assert_eq!(told[0]["message"]["content"], "hello");

    let deleted = messages::delete(&h.app, "alice", &conv, &m.id)
        .await
        .unwrap();
    assert_eq!(deleted.deleted, Some(true));
    assert_eq!(deleted.content, "");
    let told = h.outbox.to_room(&format!("conv:{conv}"), "message:deleted");
    assert_eq!(told[0]["messageId"], m.id.as_str());
    assert_eq!(told[0]["conversationId"], conv.as_str());
    assert_eq!(
        code(messages::edit(&h.app, "alice", &conv, &m.id, "back").await),
        "CONFLICT"
    );
    let history = all_history(&h.app, "bob", &conv).await;
    assert_eq!(history[0].deleted, Some(true));
    // A message id of another conversation is not found here.
    let other = direct(&h.app, "alice", "carol").await;
    let elsewhere = send(&h.app, "alice", &other, "psst").await.unwrap();
    assert_eq!(
        code(messages::edit(&h.app, "alice", &conv, &elsewhere.id, "x").await),
        "NOT_FOUND"
    );
}

#[tokio::test]
async fn reactions_toggle_per_user_and_emoji() {
    let h = harness().await;
    let conv = group(&h.app, "alice", &["bob", "carol"]).await;
    let m = send(&h.app, "alice", &conv, "lunch?").await.unwrap();
    let r = messages::react(&h.app, "bob", &conv, &m.id, "👍")
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].emoji.as_str(), r[0].count), ("👍", 1));
    let r = messages::react(&h.app, "carol", &conv, &m.id, "👍")
        .await
        .unwrap();
    assert_eq!(r[0].count, 2);
    let r = messages::react(&h.app, "carol", &conv, &m.id, "🍕")
        .await
        .unwrap();
    assert_eq!(r.len(), 2);
    let r = messages::react(&h.app, "bob", &conv, &m.id, "👍")
        .await
        .unwrap();
    assert_eq!(r[0].user_ids, ["carol"]);
    let told = h
        .outbox
        .to_room(&format!("conv:{conv}"), "message:reaction-updated");
    assert_eq!(told.len(), 4);
    assert_eq!(told[3]["reactions"][0]["count"], 1);
    assert_eq!(
        code(messages::react(&h.app, "dave", &conv, &m.id, "👍").await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(messages::react(&h.app, "bob", &conv, &m.id, &"👍".repeat(9)).await),
        "INVALID_PAYLOAD"
    );
    let history = all_history(&h.app, "alice", &conv).await;
    assert_eq!(history[0].reactions.len(), 2);
}

#[tokio::test]
async fn typing_expires_through_the_deadline_queue_unless_refreshed_or_stopped() {
    let h = harness().await;
    let conv = direct(&h.app, "alice", "bob").await;
    let room = format!("conv:{conv}");
    assert!(typing::start(&h.app, "alice", &conv).await.unwrap());
    let told = h.outbox.events("typing");
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].rooms, std::slice::from_ref(&room));
    assert_eq!(
        told[0].except.as_deref(),
        Some("user:alice"),
        "not to the typist's devices"
    );
    assert_eq!(told[0].data["isTyping"], true);

    // A refresh after 5 s pushes the expiry to 15 s.
    h.clock.advance(5_000);
    typing::start(&h.app, "alice", &conv).await.unwrap();
    h.clock.advance(6_000);
    assert!(
        claim(&h.app).await.is_empty(),
        "the refresh replaced the timer"
    );
    h.clock.advance(4_000);
    let due = claim(&h.app).await;
    assert_eq!(due.len(), 1);
    h.outbox.clear();
    typing::expired(&h.app, &due[0]).await;
    let told = h.outbox.events("typing");
    assert_eq!(told[0].data["isTyping"], false);
    assert_eq!(told[0].data["userId"], "alice");
    h.app
        .store
        .timer_complete(&due[0].id, "test")
        .await
        .unwrap();

    // typing:stop cancels the expiry and tells the others once.
    typing::start(&h.app, "bob", &conv).await.unwrap();
    h.outbox.clear();
    assert!(typing::stop(&h.app, "bob", &conv).await.unwrap());
    assert!(!typing::stop(&h.app, "bob", &conv).await.unwrap());
    assert_eq!(h.outbox.events("typing").len(), 1);
    h.clock.advance(60_000);
    assert!(claim(&h.app).await.is_empty());

    // Non-members may not type.
    assert_eq!(
        code(typing::start(&h.app, "carol", &conv).await),
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn typing_refreshes_over_the_limit_succeed_quietly() {
    let mut s = settings();
    s.rate_limits.typing = RateLimit::new(2, 10);
    let h = harness_with(s).await;
    let conv = direct(&h.app, "alice", "bob").await;
    assert!(typing::start(&h.app, "alice", &conv).await.unwrap());
    assert!(typing::start(&h.app, "alice", &conv).await.unwrap());
    assert!(
        !typing::start(&h.app, "alice", &conv).await.unwrap(),
        "throttled"
    );
    assert_eq!(h.outbox.events("typing").len(), 2);
}

async fn claim(app: &App) -> Vec<switchboard_store::Timer> {
    app.store
        .timers_claim_due(app.now(), 100, "test", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == typing::TYPING_TIMER)
        .collect()
}

#[tokio::test]
async fn groups_are_managed_by_their_creator_and_admins() {
    let h = harness().await;
    let conv = group(&h.app, "alice", &["bob"]).await;
    assert_eq!(
        code(conversations::add_members(&h.app, "bob", &conv, &["carol".into()]).await),
        "FORBIDDEN"
    );
    h.outbox.clear();
    let c = conversations::add_members(&h.app, "alice", &conv, &["carol".into(), "dave".into()])
        .await
        .unwrap();
    assert_eq!(c.member_ids.len(), 4);
    assert!(
        h.outbox
            .joins()
            .contains(&("user:carol".into(), format!("conv:{conv}")))
    );
    let updated = h.outbox.to_room("user:dave", "conversation:updated");
    assert_eq!(
        updated[0]["conversation"]["memberIds"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // New members can read and send right away (the cached membership was invalidated).
    send(&h.app, "carol", &conv, "hi all").await.unwrap();

    let c = conversations::remove_member(&h.app, "alice", &conv, "dave")
        .await
        .unwrap();
    assert_eq!(c.member_ids.len(), 3);
    assert!(
        h.outbox
            .leaves()
            .contains(&("user:dave".into(), format!("conv:{conv}")))
    );
    assert!(
        !h.outbox
            .to_room("user:dave", "conversation:updated")
            .is_empty(),
        "the removed member is told"
    );
    assert_eq!(
        code(send(&h.app, "dave", &conv, "let me in").await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(conversations::remove_member(&h.app, "bob", &conv, "alice").await),
        "FORBIDDEN"
    );

    assert_eq!(
        code(conversations::rename(&h.app, "bob", &conv, "Mine").await),
        "FORBIDDEN"
    );
    conversations::rename(&h.app, "alice", &conv, "Crew")
        .await
        .unwrap();
    let list = conversations::list(&h.app, "bob").await.unwrap();
    assert_eq!(list[0].name.as_deref(), Some("Crew"));

    conversations::leave(&h.app, "bob", &conv).await.unwrap();
    assert!(conversations::list(&h.app, "bob").await.unwrap().is_empty());
    assert_eq!(
        code(conversations::leave(&h.app, "bob", &conv).await),
        "FORBIDDEN"
    );

    let dm = direct(&h.app, "alice", "bob").await;
    assert_eq!(
        code(conversations::add_members(&h.app, "alice", &dm, &["carol".into()]).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(conversations::remove_member(&h.app, "alice", &dm, "bob").await),
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn group_size_is_capped() {
    let mut s = settings();
    s.limits.conversation_members = 3;
    let h = harness_with(s).await;
    let r = conversations::create(
        &h.app,
        "alice",
        ConversationType::Group,
        &["bob".into(), "carol".into(), "dave".into()],
        None,
    )
    .await;
    assert_eq!(code(r), "INVALID_PAYLOAD");
    let conv = group(&h.app, "alice", &["bob", "carol"]).await;
    assert_eq!(
        code(conversations::add_members(&h.app, "alice", &conv, &["dave".into()]).await),
        "INVALID_PAYLOAD"
    );
}

#[tokio::test]
async fn a_failed_commit_is_unavailable_and_nothing_is_broadcast() {
    let h = harness().await;
    let conv = direct(&h.app, "alice", "bob").await;
    send(&h.app, "alice", &conv, "before").await.unwrap();
    h.outbox.clear();
    h.app.db.close().await;
    let err: AppError = send(&h.app, "alice", &conv, "lost").await.unwrap_err();
    assert_eq!(err.code().as_str(), "UNAVAILABLE");
    assert!(h.outbox.events("message:new").is_empty());
    assert!(h.outbox.events("unread:updated").is_empty());
}

#[tokio::test]
async fn content_is_validated() {
    let h = harness().await;
    let conv = direct(&h.app, "alice", "bob").await;
    assert_eq!(
        code(send(&h.app, "alice", &conv, "   ").await),
        "INVALID_PAYLOAD"
    );
    let big = "x".repeat(8 * 1024 + 1);
    assert_eq!(
        code(send(&h.app, "alice", &conv, &big).await),
        "INVALID_PAYLOAD"
    );
    assert_eq!(
        code(send(&h.app, "alice", "no-such", "hi").await),
        "NOT_FOUND"
    );
    let m = send(&h.app, "alice", &conv, "named").await.unwrap();
    assert_eq!(m.sender_name, "Alice", "from the users directory");
}

/// The page the database alone answers, for comparison with the service (cache first).
async fn db_page(
    app: &App,
    conversation: &str,
    before: Option<&str>,
    after: Option<&str>,
    limit: u32,
    not_before: Option<i64>,
) -> (Vec<String>, bool) {
    let (page, more) = app
        .db
        .message_history(conversation, before, after, Some(limit), not_before)
        .await
        .unwrap();
    (page.into_iter().map(|m| m.id).collect(), more)
}

#[tokio::test]
async fn history_from_the_recent_cache_matches_the_database_across_the_boundary() {
    let mut s = settings();
    s.rate_limits.message = RateLimit::new(10_000, 10);
    s.chat.message_cache_size = 40;
    let h = harness_with(s).await;
    let conv = direct(&h.app, "alice", "bob").await;
    // Bursts in one millisecond (group-committed together) and spread-out messages.
    let mut ids = Vec::new();
    for round in 0..6 {
        let burst = (0..10).map(|i| {
            let app = h.app.clone();
            let conv = conv.clone();
            async move {
                send(&app, "alice", &conv, &format!("r{round} m{i}"))
                    .await
                    .unwrap()
            }
        });
        ids.extend(
            futures::future::join_all(burst)
                .await
                .into_iter()
                .map(|m| m.id),
        );
        h.clock.advance(1);
    }
    let stats = &h.app.messages.stats;
    use std::sync::atomic::Ordering::Relaxed;
    let check = |before: Option<String>, after: Option<String>, limit: u32| {
        let app = h.app.clone();
        let conv = conv.clone();
        async move {
            let (page, more) = messages::history(
                &app,
                "bob",
                &conv,
                before.as_deref(),
                after.as_deref(),
                Some(limit),
            )
            .await
            .unwrap();
            let got: Vec<String> = page.into_iter().map(|m| m.id).collect();
            let want = db_page(
                &app,
                &conv,
                before.as_deref(),
                after.as_deref(),
                limit,
                None,
            )
            .await;
            assert_eq!(
                (got, more),
                want,
                "before={before:?} after={after:?} limit={limit}"
            );
        }
    };
    check(None, None, 20).await;
    assert_eq!(
        stats.history_from_cache.load(Relaxed),
        1,
        "filled, then served from the cache"
    );
    check(None, None, 40).await; // 41 needed to know `hasMore`, 40 cached: database
    check(Some(ids[50].clone()), None, 10).await;
    check(Some(ids[30].clone()), None, 10).await; // reaches past the cache: database
    check(Some(ids[25].clone()), None, 100).await;
    check(None, Some(ids[10].clone()), 100).await; // cursor not cached: database
    check(None, Some(ids[45].clone()), 5).await;
    check(None, Some(ids[58].clone()), 5).await;
    check(Some(ids[55].clone()), Some(ids[40].clone()), 5).await;
    assert_eq!(stats.history_from_cache.load(Relaxed), 5);
    assert_eq!(stats.history_from_db.load(Relaxed), 4);

    // The warm cache follows new messages, edits, reactions and deletions.
    let newest = send(&h.app, "bob", &conv, "fresh").await.unwrap();
    messages::edit(&h.app, "alice", &conv, &ids[59], "edited")
        .await
        .unwrap();
    messages::react(&h.app, "bob", &conv, &ids[58], "👍")
        .await
        .unwrap();
    messages::delete(&h.app, "alice", &conv, &ids[57])
        .await
        .unwrap();
    let cached_before = stats.history_from_cache.load(Relaxed);
    let (page, _) = messages::history(&h.app, "bob", &conv, None, None, Some(4))
        .await
        .unwrap();
    assert_eq!(stats.history_from_cache.load(Relaxed), cached_before + 1);
    assert_eq!(page[3].id, newest.id);
    assert_eq!(page[2].content, "edited");
    assert_eq!(page[1].reactions[0].count, 1);
    assert_eq!(
        (page[0].deleted, page[0].content.as_str()),
        (Some(true), "")
    );

    // A user who deleted the conversation sees only newer messages, from the cache too.
    h.clock.advance(1);
    conversations::delete(&h.app, "bob", &conv).await.unwrap();
    h.clock.advance(1);
    let after_delete = send(&h.app, "alice", &conv, "hello again").await.unwrap();
    let (page, more) = messages::history(&h.app, "bob", &conv, None, None, Some(10))
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|m| &m.id).collect::<Vec<_>>(),
        [&after_delete.id]
    );
    assert!(!more);
    let (page, more) = messages::history(&h.app, "bob", &conv, None, Some(&ids[10]), Some(10))
        .await
        .unwrap();
    assert_eq!(page.len(), 1, "a forward page from before the deletion");
    assert!(!more);
}

#[tokio::test]
async fn a_member_with_no_connected_device_gets_a_push_notification() {
    let h = harness().await;
    let conversation = group(&h.app, "alice", &["bob", "carol"]).await;
    // Bob has a live device; Carol has none.
    h.app
        .store
        .presence_connect("bob", "phone", h.app.now(), Duration::from_secs(300))
        .await
        .unwrap();
    send(&h.app, "alice", &conversation, "lunch at noon?")
        .await
        .unwrap();

    let (carol, _) = notifications::list(&h.app, "carol", None, Some(10))
        .await
        .unwrap();
    assert_eq!(carol.len(), 1, "the offline member is notified");
    assert_eq!(carol[0].kind, "message");
    assert_eq!(carol[0].body, "lunch at noon?");
    assert_eq!(carol[0].data["conversationId"], conversation.as_str());
    assert!(
        notifications::list(&h.app, "bob", None, Some(10))
            .await
            .unwrap()
            .0
            .is_empty(),
        "a connected member is not"
    );
    assert!(
        notifications::list(&h.app, "alice", None, Some(10))
            .await
            .unwrap()
            .0
            .is_empty(),
        "nor is the sender"
    );
}

/// A writer killed between its commit and its recent-cache add (or merely slower than a
/// reader) must not make the warm cache hide the committed message: history reads the
/// database while the send is marked in flight, and once the marker's deadline passes the
/// reader drops the cache, which is refilled with the message.
#[tokio::test]
async fn a_send_interrupted_between_commit_and_cache_never_hides_the_message() {
    use std::sync::atomic::Ordering::Relaxed;
    use switchboard_db::NewMessage;
    use switchboard_store::keys;

    let h = harness().await;
    let conv = direct(&h.app, "alice", "bob").await;
    let first = send(&h.app, "alice", &conv, "first").await.unwrap();
    let (page, _) = messages::history(&h.app, "bob", &conv, None, None, None)
        .await
        .unwrap();
    assert_eq!(page.len(), 1, "the cache is now warm");

    // Another task (or instance) committed a message and died before caching it.
    h.clock.advance(5);
    let marker_key = keys::messages_in_flight(&conv);
    h.app
        .store
        .counter_add(&marker_key, "dead-writer", h.clock.now_ms() + 30_000)
        .await
        .unwrap();
    let orphan = NewMessage {
        id: "orphan-message".into(),
        conversation_id: conv.clone(),
        sender_id: "alice".into(),
        content: "committed, never cached".into(),
        created_at: h.clock.now_ms(),
        reply_to_id: None,
        client_message_id: None,
    };
    h.app.db.insert_messages(&[orphan]).await.unwrap();

    let stats = &h.app.messages.stats;
    let from_db = stats.history_from_db.load(Relaxed);
    let (caught_up, _) = messages::history(&h.app, "bob", &conv, None, Some(&first.id), None)
        .await
        .unwrap();
    assert_eq!(
        caught_up.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["orphan-message"],
        "catching up with `after` finds the committed message"
    );
    assert_eq!(
        stats.history_from_db.load(Relaxed),
        from_db + 1,
        "read from the database"
    );

    // Past the deadline the writer is presumed dead: the cache is rebuilt and serves again.
    h.clock.advance(30_001);
    let (page, _) = messages::history(&h.app, "bob", &conv, None, None, None)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
        ["first", "committed, never cached"]
    );
    assert!(
        h.app.store.counters(&marker_key).await.unwrap().is_empty(),
        "stale marker cleared"
    );
    let from_cache = stats.history_from_cache.load(Relaxed);
    let (again, _) = messages::history(&h.app, "bob", &conv, None, Some(&first.id), None)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        stats.history_from_cache.load(Relaxed),
        from_cache + 1,
        "the rebuilt cache answers"
    );

    // Ordinary sends leave no marker behind.
    send(&h.app, "bob", &conv, "reply").await.unwrap();
    assert!(h.app.store.counters(&marker_key).await.unwrap().is_empty());
}
