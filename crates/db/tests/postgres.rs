//! The conformance suite on PostgreSQL: a fresh database per case on the server named by
//! `SWITCHBOARD_TEST_DATABASE_URL`. Skipped when unreachable unless
//! `SWITCHBOARD_REQUIRE_BACKENDS=1`.

use std::time::{Duration, Instant};

switchboard_db::conformance_suite!(switchboard_db::conformance::postgres_fixture);

/// A server that is down fails fast (within the acquire timeout) with `Unavailable`.
#[tokio::test]
async fn unreachable_server_is_unavailable_and_fails_fast() {
    let options = switchboard_db::DbOptions {
        acquire_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let started = Instant::now();
    // Port 9 (discard) on loopback: nothing listens there.
    let err = switchboard_db::Db::connect("postgres://postgres@127.0.0.1:9/none", &options)
        .await
        .expect_err("nothing listens on port 9");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
