//! The conformance suite on SQLite: a fresh temporary database file per case.

switchboard_db::conformance_suite!(switchboard_db::conformance::sqlite_fixture);

/// An in-memory database works too (one shared connection), for other crates' tests.
#[tokio::test]
async fn in_memory_database_migrates_and_serves() {
    let db = switchboard_db::Db::connect("sqlite::memory:", &Default::default())
        .await
        .expect("open in-memory SQLite");
    db.migrate().await.expect("migrate");
    db.upsert_user("u1", "Ada", 1).await.unwrap();
    assert_eq!(db.get_user("u1").await.unwrap().unwrap().name, "Ada");
    assert_eq!(db.backend(), "sqlite");
}

/// A relative file URL creates its parent directory.
#[tokio::test]
async fn creates_the_parent_directory() {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-test-dir-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let url = format!("sqlite://{}/nested/switchboard.db", dir.display());
    let db = switchboard_db::Db::connect(&url, &Default::default())
        .await
        .expect("open");
    db.migrate().await.expect("migrate");
    db.close().await;
    assert!(dir.join("nested/switchboard.db").exists());
    let _ = std::fs::remove_dir_all(dir);
}
