//! The backend conformance suite: every case is written once, against [`Db`], and run on
//! every backend by [`conformance_suite!`](crate::conformance_suite) (see `tests/sqlite.rs`
//! and `tests/postgres.rs`). Each case gets a fresh database: a temporary SQLite file, or a
//! PostgreSQL database created for it and dropped afterwards.
//!
//! PostgreSQL is reached at `SWITCHBOARD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, used only to create and drop the test
//! databases). When it is unreachable the PostgreSQL cases are skipped with a note, unless
//! `SWITCHBOARD_REQUIRE_BACKENDS=1`, which turns the skip into a failure (CI sets it).
//!
//! The cases assert what a user would notice (a duplicate message, a conversation that
//! comes back, a page out of order), not how the rows are laid out. They may be reused by
//! other crates' tests through the fixtures.

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use switchboard_domain::Millis;

use crate::types::*;
use crate::{Db, DbError, DbOptions, redact_url};

/// Names the PostgreSQL server the suite creates its databases on.
pub const TEST_DATABASE_URL_ENV: &str = "SWITCHBOARD_TEST_DATABASE_URL";
/// Set to `1` to fail, instead of skip, when a backend is unreachable.
pub const REQUIRE_BACKENDS_ENV: &str = "SWITCHBOARD_REQUIRE_BACKENDS";
const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Instantiates every conformance case as a `#[tokio::test]` using `$fixture`, an async fn
/// returning `Option<Fixture>` (`None` skips). Add new cases to the list below, once.
#[doc(hidden)]
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:path) => {
        $crate::conformance_suite!(@cases $fixture;
            migrations_are_idempotent,
            closed_database_is_unavailable,
            upsert_user_updates_name,
            friends_are_mutual_and_replaced,
            direct_conversation_is_unique_per_pair,
            direct_conversation_unique_under_concurrency,
            group_conversation_membership,
            conversation_list_hides_deleted_until_new_message,
            client_message_id_is_idempotent,
            concurrent_inserts_of_one_client_message_id,
            history_pages_in_ascending_order,
            history_respects_not_before,
            edit_delete_and_reply_preview,
            reactions_toggle_on_and_off,
            call_sessions_and_participants,
            call_history_newest_first_with_cursor,
            unicode_round_trips,
            large_content_round_trips,
            notifications_and_dead_letters,
        );
    };
    (@cases $fixture:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::run_case($fixture().await, $crate::conformance::$case).await;
            }
        )+
    };
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// A fresh, migrated database and how to dispose of it.
pub struct Fixture {
    pub db: Db,
    teardown: Teardown,
}

enum Teardown {
    SqliteFile(PathBuf),
    Postgres { admin_url: String, database: String },
}

fn test_options() -> DbOptions {
    // Generous acquire timeout: the test host is small and runs cases in parallel.
    DbOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(15),
        ..DbOptions::default()
    }
}

/// A migrated database in a new temporary SQLite file.
pub async fn sqlite_fixture() -> Option<Fixture> {
    let path = std::env::temp_dir().join(format!(
        "switchboard-test-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let db = Db::connect(&url, &test_options())
        .await
        .expect("open a SQLite test database");
    db.migrate()
        .await
        .expect("migrate the SQLite test database");
    Some(Fixture {
        db,
        teardown: Teardown::SqliteFile(path),
    })
}

/// Remembers that PostgreSQL was unreachable so later cases skip without waiting again.
static POSTGRES_UNREACHABLE: OnceLock<String> = OnceLock::new();

/// A migrated database created for this case on the test PostgreSQL server, or `None`
/// (with a printed note) when the server is unreachable and not required.
pub async fn postgres_fixture() -> Option<Fixture> {
    let admin_url = std::env::var(TEST_DATABASE_URL_ENV)
        .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
    let required = std::env::var(REQUIRE_BACKENDS_ENV).is_ok_and(|v| v == "1" || v == "true");
    if let Some(reason) = POSTGRES_UNREACHABLE.get() {
        return skip(required, reason);
    }
    let admin = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&admin_url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            let reason = format!(
                "PostgreSQL at {} is unreachable: {e}",
                redact_url(&admin_url)
            );
            let _ = POSTGRES_UNREACHABLE.set(reason.clone());
            return skip(required, &reason);
        }
    };
    // Lowercase hex only, so the name needs no quoting.
    let database = format!("sbtest_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await
        .expect("create the PostgreSQL test database");
    admin.close().await;

    let mut url = url::Url::parse(&admin_url).expect("SWITCHBOARD_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{database}"));
    let db = Db::connect(url.as_str(), &test_options())
        .await
        .expect("connect to the PostgreSQL test database");
    db.migrate()
        .await
        .expect("migrate the PostgreSQL test database");
    Some(Fixture {
        db,
        teardown: Teardown::Postgres {
            admin_url,
            database,
        },
    })
}

fn skip(required: bool, reason: &str) -> Option<Fixture> {
    if required {
        panic!("{reason}, and {REQUIRE_BACKENDS_ENV}=1 requires every backend");
    }
    eprintln!("note: skipping a PostgreSQL conformance case: {reason}");
    None
}

impl Fixture {
    /// Closes the database and removes it, best effort.
    pub async fn teardown(self) {
        self.db.close().await;
        match self.teardown {
            Teardown::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Teardown::Postgres {
                admin_url,
                database,
            } => {
                let dropped = async {
                    let admin = sqlx::PgPool::connect(&admin_url).await?;
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await?;
                    admin.close().await;
                    Ok::<_, sqlx::Error>(())
                }
                .await;
                if let Err(e) = dropped {
                    eprintln!("note: could not drop test database {database}: {e}");
                }
            }
        }
    }
}

/// Runs one case on a fixture (`None`: skipped), tears the fixture down even when the case
/// panics, then re-raises the panic.
pub async fn run_case<F, Fut>(fixture: Option<Fixture>, case: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(fixture) = fixture else { return };
    let outcome = tokio::spawn(case(fixture.db.clone())).await;
    fixture.teardown().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("conformance case did not finish: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

const T0: Millis = 1_700_000_000_000;

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn new_message(conversation: &str, sender: &str, content: &str, at: Millis) -> NewMessage {
    NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        conversation_id: conversation.to_owned(),
        sender_id: sender.to_owned(),
        content: content.to_owned(),
        created_at: at,
        reply_to_id: None,
        client_message_id: None,
    }
}

fn with_client_id(mut m: NewMessage, client_id: &str) -> NewMessage {
    m.client_message_id = Some(client_id.to_owned());
    m
}

async fn send(db: &Db, m: NewMessage) -> Message {
    let mut out = db.insert_messages(&[m]).await.expect("insert message");
    assert_eq!(out.len(), 1);
    let inserted = out.remove(0);
    assert!(!inserted.duplicate);
    inserted.message
}

fn contents(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.content.clone()).collect()
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i:02}")).collect()
}

fn new_call(id: &str, initiator: &str, invitees: &[&str], started_at: Millis) -> NewCallSession {
    NewCallSession {
        id: id.to_owned(),
        kind: CallKind::Conversation,
        conversation_id: Some("conv-1".to_owned()),
        room_id: None,
        media_type: MediaType::Video,
        mode: CallMode::P2p,
        status: CallStatus::Initiated,
        initiator_id: initiator.to_owned(),
        started_at,
        invitees: ids(invitees),
        metadata: None,
    }
}

fn joiner(call_id: &str, user: &str, role: ParticipantRole, at: Millis) -> NewCallParticipant {
    NewCallParticipant {
        call_id: call_id.to_owned(),
        user_id: Some(user.to_owned()),
        anonymous_id: None,
        role,
        joined_at: at,
        audio_enabled: true,
        video_enabled: true,
    }
}

fn finish(at: Millis, outcome: CallOutcome) -> FinishCall {
    FinishCall {
        ended_at: at,
        outcome,
        duration_secs: None,
        end_reason: None,
        ended_by: None,
    }
}

// ---------------------------------------------------------------------------------------
// Cases

/// Migrating again (as every server start does) changes nothing and loses nothing.
pub async fn migrations_are_idempotent(db: Db) {
    assert!(matches!(db.backend(), "sqlite" | "postgres"));
    db.upsert_user("u1", "Ada", T0).await.unwrap();
    db.migrate().await.expect("second migrate");
    db.migrate().await.expect("third migrate");
    assert_eq!(db.get_user("u1").await.unwrap().unwrap().name, "Ada");
    let latency = db.ping().await.expect("ping");
    assert!(latency < Duration::from_secs(5));
}

/// A database that cannot serve is reported as unavailable (the server answers
/// UNAVAILABLE), not as an internal error.
pub async fn closed_database_is_unavailable(db: Db) {
    db.close().await;
    let err = db.ping().await.expect_err("ping a closed database");
    assert!(err.is_unavailable(), "{err:?}");
    let err = db
        .upsert_user("u1", "Ada", T0)
        .await
        .expect_err("write to a closed database");
    assert!(err.is_unavailable(), "{err:?}");
}

/// Connecting again with a new display name renames the user.
pub async fn upsert_user_updates_name(db: Db) {
    db.upsert_user("u1", "Ada", T0).await.unwrap();
    db.upsert_user("u2", "Bob", T0).await.unwrap();
    db.upsert_user("u1", "Ada Lovelace", T0 + 1).await.unwrap();
    db.upsert_user("u1", "Ada Lovelace", T0 + 2).await.unwrap();

    let u1 = db.get_user("u1").await.unwrap().expect("u1 exists");
    assert_eq!(
        u1,
        UserRow {
            id: "u1".into(),
            name: "Ada Lovelace".into()
        }
    );
    assert_eq!(db.get_user("nobody").await.unwrap(), None);
    assert_eq!(
        db.count_users().await.unwrap(),
        2,
        "upserts do not duplicate users"
    );

    let users = db
        .get_users(&ids(&["u2", "nobody", "u1", "u2"]))
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = users
        .iter()
        .map(|u| (u.id.as_str(), u.name.as_str()))
        .collect();
    assert_eq!(names, [("u1", "Ada Lovelace"), ("u2", "Bob")]);
    assert!(db.get_users(&[]).await.unwrap().is_empty());
}

/// Setting a friend list makes each friend see the user too; setting it again replaces it
/// on both sides.
pub async fn friends_are_mutual_and_replaced(db: Db) {
    db.set_friends("a", &ids(&["b", "c", "b", "a"]), T0)
        .await
        .unwrap();
    assert_eq!(db.get_friends("a").await.unwrap(), ids(&["b", "c"]));
    assert_eq!(db.get_friends("b").await.unwrap(), ids(&["a"]));
    assert_eq!(db.get_friends("c").await.unwrap(), ids(&["a"]));

    db.set_friends("a", &ids(&["c", "d"]), T0 + 1)
        .await
        .unwrap();
    assert_eq!(db.get_friends("a").await.unwrap(), ids(&["c", "d"]));
    assert!(
        db.get_friends("b").await.unwrap().is_empty(),
        "b was dropped by a"
    );
    assert_eq!(db.get_friends("d").await.unwrap(), ids(&["a"]));

    // b lists a again: the friendship is back for both.
    db.set_friends("b", &ids(&["a"]), T0 + 2).await.unwrap();
    assert_eq!(db.get_friends("a").await.unwrap(), ids(&["b", "c", "d"]));

    db.set_friends("a", &[], T0 + 3).await.unwrap();
    assert!(db.get_friends("a").await.unwrap().is_empty());
    assert!(db.get_friends("b").await.unwrap().is_empty());
    assert!(db.get_friends("c").await.unwrap().is_empty());
}

/// Creating a direct conversation again, in either order, returns the same one.
pub async fn direct_conversation_is_unique_per_pair(db: Db) {
    let (ab, created) = db.create_direct_conversation("a", "b", T0).await.unwrap();
    assert!(created);
    assert_eq!(ab.kind, ConversationKind::Direct);
    assert_eq!(ab.member_ids(), ids(&["a", "b"]));
    assert_eq!(ab.created_by, "a");

    let (ba, created) = db
        .create_direct_conversation("b", "a", T0 + 5)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(ba.id, ab.id);
    assert_eq!(ba.created_at, T0);

    let (ac, created) = db.create_direct_conversation("a", "c", T0).await.unwrap();
    assert!(created);
    assert_ne!(ac.id, ab.id);

    // A user who left the pair's conversation is back in it when it is created again.
    db.remove_member(&ab.id, "b", T0 + 6).await.unwrap();
    let (again, created) = db
        .create_direct_conversation("a", "b", T0 + 7)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, ab.id);
    assert_eq!(again.member_ids().len(), 2);

    assert_eq!(db.get_conversation("missing").await.unwrap(), None);
}

/// Eight simultaneous creates of one pair (both orders) yield one conversation.
pub async fn direct_conversation_unique_under_concurrency(db: Db) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let (a, b) = if i % 2 == 0 {
                    ("alice", "bob")
                } else {
                    ("bob", "alice")
                };
                db.create_direct_conversation(a, b, T0 + i).await
            })
        })
        .collect();
    let mut ids_seen = Vec::new();
    let mut created = 0;
    for task in tasks {
        let (conversation, was_created) = task.await.unwrap().expect("create direct conversation");
        ids_seen.push(conversation.id);
        created += usize::from(was_created);
    }
    ids_seen.dedup();
    assert_eq!(
        ids_seen.len(),
        1,
        "one conversation for the pair: {ids_seen:?}"
    );
    assert_eq!(created, 1, "exactly one create wins");
    let list = db.list_conversations_for_user("alice").await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].conversation.member_ids(), ids(&["alice", "bob"]));
}

/// Group members, roles, renames and the rules that refuse changes.
pub async fn group_conversation_membership(db: Db) {
    let group = db
        .create_group_conversation("a", Some("Team"), &ids(&["b", "c", "b", "a"]), T0)
        .await
        .unwrap();
    assert_eq!(group.kind, ConversationKind::Group);
    assert_eq!(group.name.as_deref(), Some("Team"));
    assert_eq!(group.members.len(), 3);
    assert_eq!(group.member("a").unwrap().role, MemberRole::Admin);
    assert_eq!(group.member("b").unwrap().role, MemberRole::Member);

    let group = db
        .add_members(&group.id, &ids(&["d", "b"]), T0 + 1)
        .await
        .unwrap();
    let mut members = group.member_ids();
    members.sort();
    assert_eq!(members, ids(&["a", "b", "c", "d"]));
    assert_eq!(group.updated_at, T0 + 1);

    db.remove_member(&group.id, "c", T0 + 2).await.unwrap();
    assert_eq!(
        db.remove_member(&group.id, "c", T0 + 3).await,
        Err(DbError::NotFound)
    );
    assert_eq!(db.get_member(&group.id, "c").await.unwrap(), None);
    assert_eq!(
        db.get_member(&group.id, "d")
            .await
            .unwrap()
            .unwrap()
            .joined_at,
        T0 + 1
    );

    let renamed = db
        .rename_conversation(&group.id, Some("Crew"), T0 + 4)
        .await
        .unwrap();
    assert_eq!(renamed.name.as_deref(), Some("Crew"));
    assert_eq!(renamed.members.len(), 3);
    assert_eq!(
        db.rename_conversation("missing", None, T0).await,
        Err(DbError::NotFound)
    );

    let (direct, _) = db.create_direct_conversation("a", "b", T0).await.unwrap();
    assert!(matches!(
        db.add_members(&direct.id, &ids(&["c"]), T0).await,
        Err(DbError::Conflict(_))
    ));
    assert_eq!(
        db.add_members("missing", &ids(&["c"]), T0).await,
        Err(DbError::NotFound)
    );

    let c_list = db.list_conversations_for_user("c").await.unwrap();
    assert!(
        c_list.is_empty(),
        "a removed member no longer sees the group"
    );
}

/// Deleting a conversation hides it and its history for that user only, until a newer
/// message brings it back; unread counts follow the read and deletion marks.
pub async fn conversation_list_hides_deleted_until_new_message(db: Db) {
    db.upsert_user("a", "Ada", T0).await.unwrap();
    db.upsert_user("b", "Bob", T0).await.unwrap();
    let (direct, _) = db.create_direct_conversation("a", "b", T0).await.unwrap();
    let group = db
        .create_group_conversation("a", Some("G"), &ids(&["b"]), T0 + 1)
        .await
        .unwrap();

    send(&db, new_message(&direct.id, "b", "hi a", T0 + 10)).await;
    send(&db, new_message(&direct.id, "b", "still there?", T0 + 11)).await;
    send(&db, new_message(&direct.id, "a", "yes", T0 + 12)).await;
    send(&db, new_message(&group.id, "b", "group hello", T0 + 20)).await;

    let list = db.list_conversations_for_user("a").await.unwrap();
    let order: Vec<&str> = list.iter().map(|i| i.conversation.id.as_str()).collect();
    assert_eq!(
        order,
        [group.id.as_str(), direct.id.as_str()],
        "most recent activity first"
    );
    assert_eq!(list[0].unread_count, 1);
    assert_eq!(list[1].unread_count, 2, "own messages are never unread");
    let last = list[1].last_message.as_ref().unwrap();
    assert_eq!(last.content, "yes");
    assert_eq!(last.sender_name.as_deref(), Some("Ada"));

    db.mark_read(&direct.id, "a", T0 + 11).await.unwrap();
    db.mark_read(&direct.id, "a", T0 + 5).await.unwrap(); // never moves backwards
    let counts = db.unread_counts("a").await.unwrap();
    assert_eq!(counts.get(&direct.id), Some(&0));
    assert_eq!(counts.get(&group.id), Some(&1));
    assert_eq!(
        db.mark_read(&direct.id, "stranger", T0).await,
        Err(DbError::NotFound)
    );

    // a deletes the direct conversation: gone from a's list, not from b's.
    let deleted_at = db
        .hide_conversation(&direct.id, "a", T0 + 30)
        .await
        .unwrap();
    assert_eq!(deleted_at, T0 + 30);
    let a_ids: Vec<String> = db
        .list_conversations_for_user("a")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.conversation.id)
        .collect();
    assert_eq!(a_ids, std::slice::from_ref(&group.id));
    assert_eq!(db.list_conversations_for_user("b").await.unwrap().len(), 2);
    let member = db.get_member(&direct.id, "a").await.unwrap().unwrap();
    assert_eq!(member.deleted_at, Some(T0 + 30));
    let (visible, has_more) = db
        .message_history(&direct.id, None, None, None, member.deleted_at)
        .await
        .unwrap();
    assert!(visible.is_empty() && !has_more);

    // A newer message brings it back, with only the newer history.
    send(&db, new_message(&direct.id, "b", "you there?", T0 + 40)).await;
    let list = db.list_conversations_for_user("a").await.unwrap();
    assert_eq!(list[0].conversation.id, direct.id);
    assert_eq!(list[0].unread_count, 1);
    let (visible, _) = db
        .message_history(&direct.id, None, None, None, member.deleted_at)
        .await
        .unwrap();
    assert_eq!(contents(&visible), ["you there?"]);
    assert_eq!(
        db.hide_conversation(&direct.id, "stranger", T0).await,
        Err(DbError::NotFound)
    );
}

/// The same clientMessageId from the same sender stores one message, within a batch and
/// across batches; other senders and messages without an id are unaffected.
pub async fn client_message_id_is_idempotent(db: Db) {
    let (conv, _) = db.create_direct_conversation("a", "b", T0).await.unwrap();
    let first = with_client_id(new_message(&conv.id, "a", "hello", T0 + 1), "c-1");
    let batch = vec![
        first.clone(),
        with_client_id(new_message(&conv.id, "a", "hello (retry)", T0 + 2), "c-1"),
        with_client_id(
            new_message(&conv.id, "b", "same id, other sender", T0 + 3),
            "c-1",
        ),
        new_message(&conv.id, "a", "no id", T0 + 4),
        new_message(&conv.id, "a", "no id", T0 + 5),
    ];
    let out = db.insert_messages(&batch).await.unwrap();
    assert_eq!(out.len(), 5);
    assert!(!out[0].duplicate);
    assert_eq!(out[0].message.id, first.id);
    assert_eq!(out[0].message.client_message_id.as_deref(), Some("c-1"));
    assert!(out[1].duplicate);
    assert_eq!(
        out[1].message.id, first.id,
        "the retry returns the first message"
    );
    assert_eq!(out[1].message.content, "hello");
    assert!(!out[2].duplicate);
    assert!(!out[3].duplicate && !out[4].duplicate);
    assert_ne!(out[3].message.id, out[4].message.id);

    let later = db
        .insert_messages(&[with_client_id(
            new_message(&conv.id, "a", "again", T0 + 9),
            "c-1",
        )])
        .await
        .unwrap();
    assert!(later[0].duplicate);
    assert_eq!(later[0].message.id, first.id);

    let (history, _) = db
        .message_history(&conv.id, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(
        contents(&history),
        ["hello", "same id, other sender", "no id", "no id"]
    );
    assert!(db.insert_messages(&[]).await.unwrap().is_empty());
}

/// Eight concurrent sends of one clientMessageId store exactly one message.
pub async fn concurrent_inserts_of_one_client_message_id(db: Db) {
    let (conv, _) = db.create_direct_conversation("a", "b", T0).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let db = db.clone();
            let m = with_client_id(
                new_message(&conv.id, "a", &format!("try {i}"), T0 + i),
                "same",
            );
            tokio::spawn(async move { db.insert_messages(&[m]).await })
        })
        .collect();
    let mut stored_ids = Vec::new();
    let mut fresh = 0;
    for task in tasks {
        let out = task.await.unwrap().expect("insert");
        fresh += usize::from(!out[0].duplicate);
        stored_ids.push(out[0].message.id.clone());
    }
    stored_ids.dedup();
    assert_eq!(stored_ids.len(), 1, "every sender sees the same message");
    assert_eq!(fresh, 1);
    let (history, _) = db
        .message_history(&conv.id, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
}

/// Pages come in ascending order; before/after/limit/has_more walk the whole history
/// without gaps or repeats, even across messages of the same millisecond.
pub async fn history_pages_in_ascending_order(db: Db) {
    let (conv, _) = db.create_direct_conversation("a", "b", T0).await.unwrap();
    let (other, _) = db.create_direct_conversation("a", "c", T0).await.unwrap();
    let (empty, more) = db
        .message_history(&conv.id, None, None, None, None)
        .await
        .unwrap();
    assert!(empty.is_empty() && !more);

    // 25 messages, two per millisecond, written as one batch. The id (compared byte by
    // byte, like the state store's recent cache) breaks the ties, not the insertion order:
    // each millisecond's pair is written newest id first.
    let mut batch: Vec<NewMessage> = (0..25)
        .map(|i| {
            let mut m = new_message(
                &conv.id,
                if i % 2 == 0 { "a" } else { "b" },
                &format!("m{i:02}"),
                T0 + (i / 2) as i64,
            );
            m.id = format!("{}-m{i:02}", conv.id);
            m
        })
        .collect();
    for pair in batch.chunks_mut(2) {
        pair.reverse();
    }
    db.insert_messages(&batch).await.unwrap();
    let id_of = |i: usize| format!("{}-m{i:02}", conv.id);
    let foreign = send(&db, new_message(&other.id, "a", "elsewhere", T0)).await;

    let (page, more) = db
        .message_history(&conv.id, None, None, Some(10), None)
        .await
        .unwrap();
    assert_eq!(contents(&page), numbered(15..25));
    assert!(more);
    let (page, more) = db
        .message_history(&conv.id, Some(&id_of(15)), None, Some(10), None)
        .await
        .unwrap();
    assert_eq!(contents(&page), numbered(5..15));
    assert!(more);
    let (page, more) = db
        .message_history(&conv.id, Some(&id_of(5)), None, Some(10), None)
        .await
        .unwrap();
    assert_eq!(contents(&page), numbered(0..5));
    assert!(!more);

    let (page, more) = db
        .message_history(&conv.id, None, Some(&id_of(4)), Some(10), None)
        .await
        .unwrap();
    assert_eq!(contents(&page), numbered(5..15));
    assert!(more);
    let (page, more) = db
        .message_history(&conv.id, None, Some(&id_of(19)), Some(10), None)
        .await
        .unwrap();
    assert_eq!(contents(&page), numbered(20..25));
    assert!(!more);
    let (page, more) = db
        .message_history(&conv.id, None, Some(&id_of(24)), None, None)
        .await
        .unwrap();
    assert!(page.is_empty() && !more);

    let (page, more) = db
        .message_history(&conv.id, Some(&id_of(10)), Some(&id_of(4)), None, None)
        .await
        .unwrap();
    assert_eq!(contents(&page), numbered(5..10));
    assert!(!more);
    let (page, more) = db
        .message_history(&conv.id, Some(&id_of(10)), Some(&id_of(4)), Some(3), None)
        .await
        .unwrap();
    assert_eq!(contents(&page), numbered(5..8));
    assert!(more);

    let (page, more) = db
        .message_history(&conv.id, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(page.len(), 25, "default limit 50");
    assert!(!more);
    let (page, _) = db
        .message_history(&conv.id, None, None, Some(1000), None)
        .await
        .unwrap();
    assert_eq!(page.len(), 25);

    assert_eq!(
        db.message_history(&conv.id, Some("no-such-id"), None, None, None)
            .await,
        Err(DbError::NotFound)
    );
    assert_eq!(
        db.message_history(&conv.id, None, Some(&foreign.id), None, None)
            .await,
        Err(DbError::NotFound),
        "a cursor from another conversation"
    );
}

/// More than 100 messages: the page size is capped at 100; `not_before` (a deletion
/// mark) cuts the history off, and paging stops there.
pub async fn history_respects_not_before(db: Db) {
    let (conv, _) = db.create_direct_conversation("a", "b", T0).await.unwrap();
    let batch: Vec<NewMessage> = (0..120)
        .map(|i| new_message(&conv.id, "a", &format!("m{i:03}"), T0 + i as i64))
        .collect();
    db.insert_messages(&batch).await.unwrap();

    let (page, more) = db
        .message_history(&conv.id, None, None, Some(500), None)
        .await
        .unwrap();
    assert_eq!(page.len(), 100, "limit is capped at 100");
    assert!(more);
    assert_eq!(page[0].content, "m020");

    let mark = Some(T0 + 114); // hides m000..=m114
    let (page, more) = db
        .message_history(&conv.id, None, None, Some(3), mark)
        .await
        .unwrap();
    assert_eq!(contents(&page), ["m117", "m118", "m119"]);
    assert!(more);
    let (page, more) = db
        .message_history(&conv.id, Some(&page[0].id), None, Some(3), mark)
        .await
        .unwrap();
    assert_eq!(contents(&page), ["m115", "m116"]);
    assert!(!more, "nothing visible before the deletion mark");
}

/// Editing, deleting (content blanked, first deletion time kept) and reply previews.
pub async fn edit_delete_and_reply_preview(db: Db) {
    db.upsert_user("a", "Ada", T0).await.unwrap();
    let (conv, _) = db.create_direct_conversation("a", "b", T0).await.unwrap();
    let (other, _) = db.create_direct_conversation("a", "c", T0).await.unwrap();
    let original = send(&db, new_message(&conv.id, "a", "first draft", T0 + 1)).await;
    let elsewhere = send(&db, new_message(&other.id, "a", "elsewhere", T0 + 1)).await;

    let edited = db
        .edit_message(&original.id, "final text", T0 + 2)
        .await
        .unwrap();
    assert_eq!(edited.content, "final text");
    assert_eq!(edited.edited_at, Some(T0 + 2));
    assert_eq!(edited.created_at, T0 + 1);

    let mut reply = new_message(&conv.id, "b", "agreed", T0 + 3);
    reply.reply_to_id = Some(original.id.clone());
    let reply = send(&db, reply).await;
    let preview = reply.reply_to.clone().expect("reply preview");
    assert_eq!(preview.id, original.id);
    assert_eq!(preview.content, "final text");
    assert_eq!(preview.sender_name.as_deref(), Some("Ada"));
    assert!(!preview.deleted);

    let mut stray = new_message(&conv.id, "b", "reply across conversations", T0 + 4);
    stray.reply_to_id = Some(elsewhere.id.clone());
    assert_eq!(send(&db, stray).await.reply_to, None);

    let deleted = db.soft_delete_message(&original.id, T0 + 5).await.unwrap();
    assert!(deleted.is_deleted());
    assert_eq!(deleted.content, "");
    let again = db.soft_delete_message(&original.id, T0 + 6).await.unwrap();
    assert_eq!(again.deleted_at, Some(T0 + 5));
    assert!(matches!(
        db.edit_message(&original.id, "resurrect", T0 + 7).await,
        Err(DbError::Conflict(_))
    ));

    let reply = db.get_message(&reply.id).await.unwrap().unwrap();
    let preview = reply.reply_to.expect("preview of a deleted message");
    assert!(preview.deleted);
    assert_eq!(preview.content, "");

    let (history, _) = db
        .message_history(&conv.id, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(
        history.len(),
        3,
        "deleted messages stay in history as placeholders"
    );
    assert!(history[0].is_deleted());

    assert_eq!(
        db.edit_message("missing", "x", T0).await,
        Err(DbError::NotFound)
    );
    assert_eq!(
        db.soft_delete_message("missing", T0).await,
        Err(DbError::NotFound)
    );
    assert_eq!(db.get_message("missing").await.unwrap(), None);
}

/// A reaction toggles on and off per user and emoji; groups keep first-reaction order.
pub async fn reactions_toggle_on_and_off(db: Db) {
    let (conv, _) = db.create_direct_conversation("a", "b", T0).await.unwrap();
    let m = send(&db, new_message(&conv.id, "a", "react to me", T0)).await;
    let thumbs = "👍";
    let heart = "❤️";

    let r = db
        .toggle_reaction(&m.id, "a", thumbs, T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        r,
        [Reaction {
            emoji: thumbs.into(),
            user_ids: ids(&["a"])
        }]
    );
    let r = db
        .toggle_reaction(&m.id, "b", thumbs, T0 + 2)
        .await
        .unwrap();
    assert_eq!(r[0].user_ids, ids(&["a", "b"]));
    assert_eq!(r[0].count(), 2);
    let r = db.toggle_reaction(&m.id, "a", heart, T0 + 3).await.unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        r[1],
        Reaction {
            emoji: heart.into(),
            user_ids: ids(&["a"])
        }
    );

    let r = db
        .toggle_reaction(&m.id, "a", thumbs, T0 + 4)
        .await
        .unwrap();
    assert_eq!(
        r,
        [
            Reaction {
                emoji: thumbs.into(),
                user_ids: ids(&["b"])
            },
            Reaction {
                emoji: heart.into(),
                user_ids: ids(&["a"])
            },
        ]
    );
    let r = db
        .toggle_reaction(&m.id, "b", thumbs, T0 + 5)
        .await
        .unwrap();
    assert_eq!(
        r,
        [Reaction {
            emoji: heart.into(),
            user_ids: ids(&["a"])
        }]
    );

    let stored = db.get_message(&m.id).await.unwrap().unwrap();
    assert_eq!(stored.reactions, r);
    let (history, _) = db
        .message_history(&conv.id, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(history[0].reactions, r);

    assert_eq!(
        db.toggle_reaction("missing", "a", thumbs, T0).await,
        Err(DbError::NotFound)
    );
}

/// A call's life: milestones, participants, media flags, quality, and one finish that
/// closes everyone still in it and computes the duration from `connected_at`.
pub async fn call_sessions_and_participants(db: Db) {
    let mut call = new_call("call-1", "a", &["b", "c"], T0);
    call.metadata = Some(json!({"settings": {"hd": true}}));
    let stored = db.insert_call_session(&call).await.unwrap();
    assert_eq!(stored.status, CallStatus::Initiated);
    assert_eq!(stored.metadata, call.metadata);
    assert!(stored.participants.is_empty());
    assert!(matches!(
        db.insert_call_session(&call).await,
        Err(DbError::Conflict(_))
    ));

    let pa = db
        .add_call_participant(&joiner("call-1", "a", ParticipantRole::Initiator, T0))
        .await
        .unwrap();
    db.update_call_session(
        "call-1",
        &CallSessionUpdate {
            status: Some(CallStatus::Ringing),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let pb = db
        .add_call_participant(&joiner(
            "call-1",
            "b",
            ParticipantRole::Participant,
            T0 + 5_000,
        ))
        .await
        .unwrap();
    let update = CallSessionUpdate {
        status: Some(CallStatus::Active),
        answered_at: Some(T0 + 5_000),
        connected_at: Some(T0 + 6_000),
        ..Default::default()
    };
    let active = db.update_call_session("call-1", &update).await.unwrap();
    assert_eq!(active.status, CallStatus::Active);
    assert_eq!(active.connected_at, Some(T0 + 6_000));
    let later = CallSessionUpdate {
        connected_at: Some(T0 + 9_000),
        mode: Some(CallMode::Sfu),
        room_id: Some("room-9".into()),
        ..Default::default()
    };
    let sfu = db.update_call_session("call-1", &later).await.unwrap();
    assert_eq!(
        sfu.connected_at,
        Some(T0 + 6_000),
        "the first connect time stays"
    );
    assert_eq!(sfu.mode, CallMode::Sfu);
    assert_eq!(sfu.room_id.as_deref(), Some("room-9"));
    assert_eq!(sfu.status, CallStatus::Active);

    let muted = db
        .set_participant_media(&pb.id, Some(false), None)
        .await
        .unwrap();
    assert!(!muted.audio_enabled && muted.video_enabled);
    let stats = json!({"rtt": 42, "packetLoss": 0.5, "codec": "opus"});
    db.set_participant_quality(&pb.id, &stats).await.unwrap();
    assert_eq!(
        db.get_call_participant(&pb.id)
            .await
            .unwrap()
            .unwrap()
            .connection_quality,
        Some(stats)
    );
    let left = db.mark_participant_left(&pb.id, T0 + 20_000).await.unwrap();
    assert_eq!(left.left_at, Some(T0 + 20_000));
    let guest = NewCallParticipant {
        user_id: None,
        anonymous_id: Some("guest-1".into()),
        ..joiner("call-1", "x", ParticipantRole::Participant, T0 + 21_000)
    };
    let guest = db.add_call_participant(&guest).await.unwrap();
    assert_eq!(guest.anonymous_id.as_deref(), Some("guest-1"));
    assert_eq!(guest.user_id, None);
    let both_ids = NewCallParticipant {
        anonymous_id: Some("g".into()),
        ..joiner("call-1", "x", ParticipantRole::Participant, T0)
    };
    assert!(db.add_call_participant(&both_ids).await.is_err());

    let ended = db
        .finish_call_session(
            "call-1",
            &FinishCall {
                ended_by: Some("a".into()),
                ..finish(T0 + 66_000, CallOutcome::Completed)
            },
        )
        .await
        .unwrap();
    assert_eq!(ended.status, CallStatus::Ended);
    assert_eq!(ended.outcome, Some(CallOutcome::Completed));
    assert_eq!(ended.duration_secs, Some(60), "from connectedAt to the end");
    assert_eq!(ended.ended_at, Some(T0 + 66_000));
    assert_eq!(ended.ended_by.as_deref(), Some("a"));
    let by_id = |id: &str| {
        ended
            .participants
            .iter()
            .find(|p| p.id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_id(&pa.id).left_at,
        Some(T0 + 66_000),
        "still-present participants are closed"
    );
    assert_eq!(
        by_id(&pb.id).left_at,
        Some(T0 + 20_000),
        "an earlier leave stays"
    );
    assert!(!by_id(&pb.id).audio_enabled);
    assert_eq!(ended.participants.len(), 3);
    assert_eq!(
        ended.participants[0].id, pa.id,
        "participants in join order"
    );

    assert!(matches!(
        db.finish_call_session("call-1", &finish(T0 + 70_000, CallOutcome::Failed))
            .await,
        Err(DbError::Conflict(_))
    ));
    assert!(matches!(
        db.update_call_session("call-1", &update).await,
        Err(DbError::Conflict(_))
    ));
    assert!(matches!(
        db.add_call_participant(&joiner(
            "call-1",
            "c",
            ParticipantRole::Participant,
            T0 + 70_000
        ))
        .await,
        Err(DbError::Conflict(_))
    ));
    assert_eq!(db.get_call_session("call-1").await.unwrap().unwrap(), ended);

    // A call nobody answered: no duration, outcome missed.
    db.insert_call_session(&new_call("call-2", "a", &["b"], T0 + 100_000))
        .await
        .unwrap();
    let missed = db
        .finish_call_session("call-2", &finish(T0 + 130_000, CallOutcome::Missed))
        .await
        .unwrap();
    assert_eq!(missed.duration_secs, None);
    assert_eq!(missed.connected_at, None);
    assert_eq!(missed.outcome, Some(CallOutcome::Missed));

    assert_eq!(
        db.finish_call_session("missing", &finish(T0, CallOutcome::Failed))
            .await,
        Err(DbError::NotFound)
    );
    assert_eq!(
        db.update_call_session("missing", &update).await,
        Err(DbError::NotFound)
    );
    assert_eq!(
        db.add_call_participant(&joiner("missing", "a", ParticipantRole::Participant, T0))
            .await,
        Err(DbError::NotFound)
    );
    assert_eq!(db.get_call_session("missing").await.unwrap(), None);
}

/// Call history shows a user's calls (made, missed, joined) newest first; the `before`
/// cursor walks it without gaps or repeats, ties on the start time included.
pub async fn call_history_newest_first_with_cursor(db: Db) {
    let starts = [T0, T0 + 1_000, T0 + 1_000, T0 + 2_000, T0 + 3_000];
    for (i, at) in starts.iter().enumerate() {
        db.insert_call_session(&new_call(&format!("call-{i}"), "a", &["b"], *at))
            .await
            .unwrap();
    }
    db.finish_call_session("call-0", &finish(T0 + 500, CallOutcome::Missed))
        .await
        .unwrap();
    db.add_call_participant(&joiner(
        "call-3",
        "d",
        ParticipantRole::Participant,
        T0 + 2_500,
    ))
    .await
    .unwrap();
    db.add_call_invitees("call-4", &ids(&["e"])).await.unwrap();
    assert_eq!(
        db.add_call_invitees("missing", &ids(&["e"])).await,
        Err(DbError::NotFound)
    );

    let mut walked = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let (page, more) = db
            .call_history_for_user("b", before.as_deref(), Some(2))
            .await
            .unwrap();
        assert!(page.len() <= 2);
        walked.extend(page.iter().map(|c| (c.started_at, c.id.clone())));
        before = page.last().map(|c| c.id.clone());
        if !more {
            break;
        }
    }
    assert_eq!(walked.len(), 5, "every call once: {walked:?}");
    assert!(
        walked.windows(2).all(|w| w[0] > w[1]),
        "newest first: {walked:?}"
    );
    assert_eq!(walked[0].1, "call-4");
    assert_eq!(walked[4].1, "call-0");

    let (all, more) = db.call_history_for_user("a", None, None).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(!more);
    assert_eq!(all[4].outcome, Some(CallOutcome::Missed));

    let (d_calls, _) = db.call_history_for_user("d", None, None).await.unwrap();
    assert_eq!(d_calls.len(), 1);
    assert_eq!(d_calls[0].id, "call-3");
    assert_eq!(d_calls[0].participants.len(), 1);
    let (e_calls, _) = db.call_history_for_user("e", None, None).await.unwrap();
    assert_eq!(e_calls.len(), 1);
    assert!(
        db.call_history_for_user("stranger", None, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(
        db.call_history_for_user("b", Some("missing"), None).await,
        Err(DbError::NotFound)
    );
    assert_eq!(
        db.call_history_for_user("d", Some("call-1"), None).await,
        Err(DbError::NotFound),
        "a cursor outside the user's history"
    );

    let live: Vec<String> = db
        .unfinished_calls(None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(live, ["call-1", "call-2", "call-3", "call-4"]);
    assert_eq!(db.unfinished_calls(Some("conv-1")).await.unwrap().len(), 4);
    assert!(
        db.unfinished_calls(Some("conv-other"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Names, content, conversation names and emoji survive storage byte for byte.
pub async fn unicode_round_trips(db: Db) {
    let name = "Zoë 😀 Ünïcødé 名前 مرحبا";
    db.upsert_user("ü-ser", name, T0).await.unwrap();
    assert_eq!(db.get_user("ü-ser").await.unwrap().unwrap().name, name);

    let group = db
        .create_group_conversation("ü-ser", Some("Équipe 🚀 チーム"), &ids(&["b"]), T0)
        .await
        .unwrap();
    assert_eq!(group.name.as_deref(), Some("Équipe 🚀 チーム"));

    let content = "Hello 👋🏽 — “quotes” 'single' \\ backslash; DROP TABLE messages; -- \n\t 你好 שָׁלוֹם e\u{301} 👩‍👩‍👧‍👦 🏳️‍🌈";
    let m = send(
        &db,
        with_client_id(
            new_message(&group.id, "ü-ser", content, T0 + 1),
            "clïent-🆔",
        ),
    )
    .await;
    assert_eq!(m.content, content);
    assert_eq!(m.sender_name.as_deref(), Some(name));
    assert_eq!(m.client_message_id.as_deref(), Some("clïent-🆔"));

    let family = "👩‍👩‍👧";
    let r = db
        .toggle_reaction(&m.id, "b", family, T0 + 2)
        .await
        .unwrap();
    assert_eq!(r[0].emoji, family);

    let (history, _) = db
        .message_history(&group.id, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(history[0].content, content);
    assert_eq!(history[0].reactions[0].emoji, family);
}

/// A maximum-size (8 KB) message comes back intact.
pub async fn large_content_round_trips(db: Db) {
    let (conv, _) = db.create_direct_conversation("a", "b", T0).await.unwrap();
    let ascii: String = "0123456789abcdef".repeat(512);
    assert_eq!(ascii.len(), 8 * 1024);
    let multibyte: String = "é€😀".repeat(8 * 1024 / 9);
    assert!(multibyte.len() <= 8 * 1024);
    send(&db, new_message(&conv.id, "a", &ascii, T0)).await;
    send(&db, new_message(&conv.id, "a", &multibyte, T0 + 1)).await;
    let (history, _) = db
        .message_history(&conv.id, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(history[0].content, ascii);
    assert_eq!(history[1].content, multibyte);
}

/// Notifications page newest first per user; dead letters are kept until removed.
pub async fn notifications_and_dead_letters(db: Db) {
    let mut stored = Vec::new();
    for i in 0..3 {
        let n = NewNotification {
            user_id: "u".into(),
            kind: "missed_call".into(),
            title: format!("Missed call {i}"),
            body: "from Ada".into(),
            data: json!({"callId": format!("call-{i}"), "n": i}),
            priority: if i == 2 {
                NotificationPriority::High
            } else {
                NotificationPriority::Normal
            },
            created_at: T0 + i,
        };
        stored.push(db.insert_notification(&n).await.unwrap());
    }
    let other = NewNotification {
        user_id: "v".into(),
        kind: "k".into(),
        title: "t".into(),
        body: "b".into(),
        data: json!({}),
        priority: NotificationPriority::Normal,
        created_at: T0,
    };
    let other = db.insert_notification(&other).await.unwrap();

    let (page, more) = db.list_notifications("u", None, Some(2)).await.unwrap();
    assert_eq!(page, [stored[2].clone(), stored[1].clone()]);
    assert!(more);
    assert_eq!(page[0].priority, NotificationPriority::High);
    assert_eq!(page[0].data, json!({"callId": "call-2", "n": 2}));
    let (page, more) = db
        .list_notifications("u", Some(&stored[1].id), Some(2))
        .await
        .unwrap();
    assert_eq!(page, [stored[0].clone()]);
    assert!(!more);
    assert_eq!(
        db.list_notifications("u", Some(&other.id), None).await,
        Err(DbError::NotFound)
    );

    db.mark_notification_read("u", &stored[0].id, T0 + 10)
        .await
        .unwrap();
    db.mark_notification_read("u", &stored[0].id, T0 + 20)
        .await
        .unwrap();
    let (page, _) = db.list_notifications("u", None, None).await.unwrap();
    assert_eq!(page[2].read_at, Some(T0 + 10));
    assert_eq!(page[0].read_at, None);
    assert_eq!(
        db.mark_notification_read("u", &other.id, T0).await,
        Err(DbError::NotFound)
    );

    let first = db
        .insert_dead_letter(
            "https://hooks.example/a",
            r#"{"event":"call.ended"}"#,
            5,
            "HTTP 503",
            T0,
        )
        .await
        .unwrap();
    let second = db
        .insert_dead_letter("https://hooks.example/b", "{}", 5, "timeout", T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        db.list_dead_letters(None).await.unwrap(),
        [first.clone(), second.clone()]
    );
    assert!(db.delete_dead_letter(&first.id).await.unwrap());
    assert!(!db.delete_dead_letter(&first.id).await.unwrap());
    assert_eq!(db.list_dead_letters(None).await.unwrap(), [second]);
}
