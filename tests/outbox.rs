//! The durable outbox (feature `outbox`) on real SQLite files in temporary
//! folders, against in-process servers, with a real child process killed
//! with SIGKILL mid-batch. `cargo test --features outbox --test outbox`.
#![cfg(feature = "sqlite")]

mod common;

use common::*;
use reqpool::{Error, Outbox, Pool, StorageKind};
use serde_json::json;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

#[test]
fn a_job_is_delivered_once_with_its_key_and_its_reply_is_kept() {
    let dir = TempDir::new("deliver");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(4);
    let outbox = Outbox::open(dir.file("calls.db"), &pool).unwrap();
    let url = server.url("/orders");
    let id = outbox
        .enqueue(
            pool.post(&url)
                .json_body(&json!({"order": 17}))
                .idempotency_key("order-17"),
        )
        .unwrap();
    // The same key again: the same job, nothing sent twice.
    let again = outbox
        .enqueue(
            pool.post(&url)
                .json_body(&json!({"order": 17}))
                .idempotency_key("order-17"),
        )
        .unwrap();
    assert_eq!(id, again);
    // No key: one is made and sent.
    let unkeyed = outbox
        .enqueue(pool.post(&url).json_body(&json!({"order": 18})))
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let reply = outbox.reply(id).unwrap().expect("delivered");
    assert_eq!(reply.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["key"], "order-17");
    assert_eq!(v["body"]["order"], 17);
    let keys = keys.lock().unwrap();
    assert_eq!(keys.get("order-17"), Some(&1));
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.keys().any(|k| k.starts_with("reqpool-")), "{keys:?}");
    let s = outbox.stats().unwrap();
    assert_eq!((s.pending, s.in_flight, s.delivered, s.dead), (0, 0, 2, 0));
    assert!(outbox.reply(unkeyed).unwrap().is_some());
    // A re-run with the same keys sends nothing again.
    drop(outbox);
    let outbox = reopen(&dir.file("calls.db"), &pool);
    let id2 = outbox
        .enqueue(
            pool.post(&url)
                .json_body(&json!({"order": 17}))
                .idempotency_key("order-17"),
        )
        .unwrap();
    assert_eq!(id2, id);
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(keys.get("order-17"), Some(&1));
}

#[test]
fn delivered_jobs_can_be_forgotten_by_hand_or_by_retention() {
    let dir = TempDir::new("forget");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(4);
    let url = server.url("/orders");
    let order = |i: usize| {
        pool.post(&url)
            .json_body(&json!({"order": i}))
            .idempotency_key(&format!("order-{i}"))
    };
    // By hand: a delivered job goes with its key and reply.
    let outbox = Outbox::open(dir.file("calls.db"), &pool).unwrap();
    let id = outbox.enqueue(order(1)).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert!(outbox.reply(id).unwrap().is_some());
    assert!(outbox.forget(id).unwrap());
    assert!(!outbox.forget(id).unwrap(), "forgotten once");
    assert_eq!(outbox.reply(id).unwrap(), None);
    assert_eq!(outbox.stats().unwrap(), reqpool::OutboxStats::default());
    drop(outbox);
    // Retention zero: delivered jobs leave the file at once; the file
    // holds pending work only.
    let outbox = Outbox::options()
        .keep_replies(false)
        .retention(Duration::ZERO)
        .open(dir.file("zero.db"), &pool)
        .unwrap();
    for i in 0..300 {
        outbox.enqueue(order(i)).unwrap();
    }
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(outbox.stats().unwrap(), reqpool::OutboxStats::default());
    let keys = keys.lock().unwrap();
    assert!((0..300).all(|i| keys.get(&format!("order-{i}")) >= Some(&1)));
    // Forgetting never touches work that is not done.
    assert!(!outbox.forget(reqpool::JobId(i64::MAX)).unwrap());
}

#[test]
fn a_final_status_is_a_dead_letter_that_can_be_requeued() {
    let dir = TempDir::new("dead");
    common::a_final_status_is_a_dead_letter_that_can_be_requeued(&|options, pool| {
        options.open(dir.file("calls.db"), pool).unwrap()
    });
}

#[test]
fn a_410_pauses_its_endpoint_until_resumed() {
    let dir = TempDir::new("gone");
    common::a_410_pauses_its_endpoint_until_resumed(&|options, pool| {
        options.open(dir.file("calls.db"), pool).unwrap()
    });
}

#[test]
fn a_host_that_keeps_failing_is_retried_across_deliveries_then_dead() {
    let dir = TempDir::new("retry");
    common::a_host_that_keeps_failing_is_retried_across_deliveries_then_dead(&|options, pool| {
        options.open(dir.file("calls.db"), pool).unwrap()
    });
}

#[test]
fn the_pools_own_verdicts_never_kill_a_job() {
    let dir = TempDir::new("verdicts");
    let n = AtomicUsize::new(0);
    common::the_pools_own_verdicts_never_kill_a_job(&|options, pool| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        options
            .open(dir.file(&format!("calls{i}.db")), pool)
            .unwrap()
    });
}

#[test]
fn secrets_never_reach_the_file() {
    let dir = TempDir::new("secrets");
    let pool = Pool::new(1);
    let path = dir.file("calls.db");
    let outbox = Outbox::open(&path, &pool).unwrap();
    let url = "http://127.0.0.1:1/orders";
    for (what, req) in [
        ("bearer", pool.post(url).bearer_auth("tok-SECRET-1")),
        (
            "secret header",
            pool.post(url).secret_header("X-Key", "tok-SECRET-1"),
        ),
        (
            "url credentials",
            pool.post("http://u:tok-SECRET-1@127.0.0.1:1/orders"),
        ),
        (
            "secret query",
            pool.post(url).query("api_key", "tok-SECRET-1"),
        ),
    ] {
        let e = outbox.enqueue(req).unwrap_err();
        assert!(matches!(e, Error::Usage { .. }), "{what}: {e}");
        assert!(!e.to_string().contains("tok-SECRET-1"), "{e}");
    }
    assert_eq!(outbox.stats().unwrap(), Default::default());
    drop(outbox);
    for f in std::fs::read_dir(&dir.0).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!bytes.windows(12).any(|w| w == b"tok-SECRET-1"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}

/// Query keys are secret by whole word: plain keys that merely contain a
/// secret word's letters are stored, secret ones refused, and
/// `redact_all_query_values` (what messages show) changes neither.
#[test]
fn plain_query_keys_are_stored_and_secret_ones_refused_by_whole_word() {
    let dir = TempDir::new("query-keys");
    for all in [false, true] {
        let pool = Pool::builder()
            .redact_all_query_values(all)
            .build()
            .unwrap();
        let outbox = Outbox::options()
            .deliver(false)
            .open(dir.file(&format!("calls-{all}.db")), &pool)
            .unwrap();
        let url = "http://127.0.0.1:1/search";
        let plain = [
            "author",
            "keyword",
            "zip_code",
            "design",
            "session_count",
            "postcode",
            "country_code",
            "page",
        ];
        for k in plain {
            let r = outbox.enqueue(pool.get(url).query(k, "v-PLAIN"));
            assert!(r.is_ok(), "all={all}: {k} refused: {r:?}");
        }
        for k in [
            "api_key",
            "access_token",
            "X-Signature",
            "sessionId",
            "sort_key",
        ] {
            let e = outbox
                .enqueue(pool.get(url).query(k, "v-SECRET"))
                .unwrap_err();
            assert!(matches!(e, Error::Usage { .. }), "all={all}: {k}: {e}");
        }
        assert_eq!(outbox.stats().unwrap().pending, plain.len() as u64);
    }
}

#[test]
fn credentials_are_added_at_delivery_and_never_written() {
    let dir = TempDir::new("delivery-auth");
    let path = dir.file("calls.db");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let pool = Pool::builder()
        .bearer_from(|_| Ok("tok-SECRET-2".to_string()))
        .before_attempt(move |a| {
            s.lock().unwrap().push(a.number());
            a.secret_header("X-Signature", "sig-SECRET-3");
            Ok(())
        })
        .build()
        .unwrap();
    let outbox = Outbox::open(&path, &pool).unwrap();
    let e = outbox
        .enqueue(pool.post(&server.url("/o")).bearer_auth("x"))
        .unwrap_err();
    assert!(e.to_string().contains("bearer_from"), "says how: {e}");
    for i in 0..5 {
        let req = pool
            .post(&server.url("/orders"))
            .json_body(&json!({"i": i}))
            .idempotency_key(&format!("auth-{i}"));
        outbox.enqueue(req).unwrap();
    }
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(keys.lock().unwrap().len(), 5);
    assert_eq!(seen.lock().unwrap().len(), 5, "hooked at each delivery");
    drop(outbox);
    for f in std::fs::read_dir(&dir.0).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        for secret in [&b"tok-SECRET-2"[..], b"sig-SECRET-3"] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        }
    }
}

#[test]
fn hook_secrets_echoed_in_a_reply_are_not_kept() {
    let dir = TempDir::new("echo");
    common::hook_secrets_echoed_in_a_reply_are_not_kept(
        &|options, pool| options.open(dir.file("calls.db"), pool).unwrap(),
        &|| {
            std::fs::read_dir(&dir.0)
                .unwrap()
                .flat_map(|f| std::fs::read(f.unwrap().path()).unwrap())
                .collect()
        },
    );
}

/// A file never gives an id twice: not after delivered jobs left it
/// (`retention(ZERO)`), not after a restart, not after `forget` of the
/// newest job.
#[test]
fn a_file_never_gives_an_id_twice() {
    let dir = TempDir::new("ids");
    let (server, _) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(2);
    let path = dir.file("calls.db");
    let url = server.url("/orders");
    let mut given = std::collections::HashSet::new();
    let outbox = Outbox::options()
        .retention(Duration::ZERO)
        .keep_replies(false)
        .open(&path, &pool)
        .unwrap();
    for round in 0..2 {
        for i in 0..3 {
            let id = outbox.enqueue(order(&pool, &url, round * 10 + i)).unwrap();
            assert!(given.insert(id), "{id} given twice");
        }
        assert_eq!(outbox.flush_timeout(LIMIT), 0);
        // Every job left the file.
        assert_eq!(outbox.stats().unwrap(), Default::default());
    }
    drop(outbox);
    let outbox = reopen(&path, &pool);
    let newest = outbox.enqueue(order(&pool, &url, 100)).unwrap();
    assert!(given.insert(newest), "{newest} given twice");
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert!(outbox.forget(newest).unwrap());
    let next = outbox.enqueue(order(&pool, &url, 101)).unwrap();
    assert!(given.insert(next), "{next} given twice");
    assert!(next > newest);
    assert_eq!(outbox.reply(newest).unwrap(), None);
}

#[test]
fn a_producer_only_writes_and_a_later_outbox_delivers() {
    let dir = TempDir::new("producer");
    let path = dir.file("calls.db");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(4);
    let producer = Outbox::options().deliver(false).open(&path, &pool).unwrap();
    for i in 0..20 {
        let req = pool
            .post(&server.url("/orders"))
            .json_body(&json!({"i": i}))
            .idempotency_key(&format!("p-{i}"));
        producer.enqueue(req).unwrap();
    }
    // Nothing goes out from a producer: a flush waits for nothing.
    assert_eq!(producer.flush_timeout(Duration::from_millis(50)), 20);
    assert!(keys.lock().unwrap().is_empty());
    drop(producer);
    let outbox = Outbox::open(&path, &pool).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(keys.lock().unwrap().len(), 20);
}

#[test]
fn threads_enqueueing_at_once_share_commits_and_keys_stay_unique() {
    let dir = TempDir::new("group");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(4);
    let outbox = Outbox::options()
        .durability(reqpool::Durability::PowerLoss)
        .open(dir.file("calls.db"), &pool)
        .unwrap();
    let url = server.url("/orders");
    // 8 threads, 50 keys each; every key is enqueued by two threads.
    let ids: Vec<Vec<(usize, reqpool::JobId)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (outbox, pool, url) = (&outbox, &pool, &url);
                s.spawn(move || {
                    (0..50)
                        .map(|i| {
                            let k = (t / 2) * 50 + i;
                            let req = pool
                                .post(url)
                                .json_body(&json!({"k": k}))
                                .idempotency_key(&format!("g-{k}"));
                            (k, outbox.enqueue(req).unwrap())
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut by_key = std::collections::HashMap::new();
    for (k, id) in ids.into_iter().flatten() {
        // Both threads that enqueued a key got the same job.
        assert_eq!(*by_key.entry(k).or_insert(id), id, "key {k}");
    }
    assert_eq!(by_key.len(), 200);
    let distinct: std::collections::HashSet<_> = by_key.values().collect();
    assert_eq!(distinct.len(), 200);
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let keys = keys.lock().unwrap();
    assert_eq!(keys.len(), 200);
    assert!(keys.values().all(|&n| n == 1), "each key sent once");
}

#[test]
fn bad_files_and_a_second_opener_get_clear_errors() {
    let dir = TempDir::new("bad");
    let pool = Pool::new(1);
    let garbage = dir.file("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
    let e = Outbox::open(&garbage, &pool).unwrap_err();
    assert_eq!(e.storage_kind(), Some(StorageKind::NotAnOutbox), "{e}");
    assert!(e.to_string().contains("not an outbox"), "{e}");
    // Another program's SQLite database: refused, and left as it was.
    let other = dir.file("other.db");
    let notes = rusqlite::Connection::open(&other).unwrap();
    notes.execute_batch("CREATE TABLE notes (x TEXT)").unwrap();
    drop(notes);
    let before = std::fs::read(&other).unwrap();
    let e = Outbox::open(&other, &pool).unwrap_err();
    assert_eq!(e.storage_kind(), Some(StorageKind::NotAnOutbox), "{e}");
    assert!(std::fs::read(&other).unwrap() == before, "left as it was");
    let newer = dir.file("newer.db");
    {
        let o = Outbox::open(&newer, &pool).unwrap();
        drop(o);
    }
    {
        let c = rusqlite_set_version(&newer, 9);
        assert!(c, "could not mark the schema newer");
    }
    let e = Outbox::open(&newer, &pool).unwrap_err();
    assert_eq!(e.storage_kind(), Some(StorageKind::NewerVersion), "{e}");
    assert!(e.to_string().contains("newer"), "{e}");
    let busy = dir.file("busy.db");
    let first = Outbox::open(&busy, &pool).unwrap();
    let e = Outbox::open(&busy, &pool).unwrap_err();
    assert_eq!(e.storage_kind(), Some(StorageKind::InUse), "{e}");
    assert!(e.to_string().contains("another process"), "{e}");
    drop(first);
    let e = Outbox::open(dir.file("no/such/folder/x.db"), &pool).unwrap_err();
    assert_eq!(e.storage_kind(), Some(StorageKind::Io), "{e}");
    assert!(e.to_string().contains("cannot create"), "{e}");
}

/// A file that is not an outbox is refused with `NotAnOutbox` and left
/// byte for byte as it was: no pragma, no journal mode, no table. Each
/// kind of file the issue found changed, and a few more.
#[test]
fn files_without_the_outbox_mark_are_refused_and_left_as_they_were() {
    let dir = TempDir::new("foreign");
    let pool = Pool::new(1);
    let sqlite = |name: &str, sql: &str| {
        let path = dir.file(name);
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(sql).unwrap();
        drop(db);
        path
    };
    let jobs = "CREATE TABLE jobs (id INTEGER PRIMARY KEY, title TEXT, state INTEGER);
                INSERT INTO jobs (title, state) VALUES ('paint', 1);";
    // The columns of an outbox, made by another program (no WAL).
    let lookalike = "CREATE TABLE jobs (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,
         method TEXT NOT NULL, url TEXT NOT NULL, headers TEXT NOT NULL, body BLOB,
         state INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
         next_at INTEGER NOT NULL DEFAULT 0, last_error TEXT, status INTEGER, reply BLOB);
         CREATE INDEX jobs_due ON jobs(state, next_at); PRAGMA user_version = 1;";
    let files = [
        sqlite("jobs-v0.db", jobs),
        sqlite("jobs-v1.db", &format!("{jobs} PRAGMA user_version = 1;")),
        sqlite(
            "jobs-v1-wal.db",
            &format!("PRAGMA journal_mode=WAL; {jobs} PRAGMA user_version = 1;"),
        ),
        sqlite(
            "app-v7.db",
            "CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('n'); PRAGMA user_version = 7;",
        ),
        sqlite(
            "app-v1.db",
            "CREATE TABLE notes (x TEXT); PRAGMA user_version = 1;",
        ),
        sqlite(
            "other-app.db",
            "CREATE TABLE jobs (x); PRAGMA application_id = 1234;",
        ),
        sqlite("lookalike.db", lookalike),
        {
            // Another program's WAL not yet checkpointed into its file.
            let path = dir.file("unflushed.db");
            let db = rusqlite::Connection::open(&path).unwrap();
            db.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (x);")
                .unwrap();
            db.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .unwrap();
            db.execute_batch(&format!("{jobs} PRAGMA user_version = 1;"))
                .unwrap();
            drop(db);
            assert!(
                std::fs::metadata(dir.file("unflushed.db-wal"))
                    .unwrap()
                    .len()
                    > 0
            );
            path
        },
        {
            let p = dir.file("notes.txt");
            std::fs::write(&p, "a text file, not a database\n".repeat(200)).unwrap();
            p
        },
    ];
    // Every file of the folder, by name: the databases, their WAL, the
    // text file.
    let contents = || {
        let mut all: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|f| {
                let f = f.unwrap();
                (f.file_name(), std::fs::read(f.path()).unwrap())
            })
            .collect();
        all.sort();
        all
    };
    let before = contents();
    for path in &files {
        let e = Outbox::open(path, &pool).unwrap_err();
        assert_eq!(
            e.storage_kind(),
            Some(StorageKind::NotAnOutbox),
            "{}: {e}",
            path.display()
        );
    }
    let after = contents();
    let changed: Vec<_> = before
        .iter()
        .filter(|f| !after.contains(f))
        .map(|(name, _)| name)
        .collect();
    assert!(changed.is_empty(), "foreign files changed: {changed:?}");
    assert_eq!(after.len(), before.len(), "no file made beside them");
}

/// An outbox file made before the mark (the same schema, `user_version`
/// 1, WAL) is adopted: its jobs are delivered and it is marked. A new
/// file is marked at creation.
#[test]
fn an_outbox_of_before_the_mark_is_adopted_and_new_files_are_marked() {
    let dir = TempDir::new("adopt");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(2);
    let old = dir.file("old.db");
    let db = rusqlite::Connection::open(&old).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS jobs (
             id INTEGER PRIMARY KEY,
             key TEXT NOT NULL UNIQUE,
             method TEXT NOT NULL,
             url TEXT NOT NULL,
             headers TEXT NOT NULL,
             body BLOB,
             state INTEGER NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0,
             next_at INTEGER NOT NULL DEFAULT 0,
             last_error TEXT,
             status INTEGER,
             reply BLOB
         );
         CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, next_at);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    db.execute(
        "INSERT INTO jobs (key, method, url, headers, body, state) VALUES ('old-1', 'POST', ?1, '[]', NULL, 0)",
        [server.url("/orders")],
    )
    .unwrap();
    drop(db);
    let outbox = Outbox::open(&old, &pool).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(keys.lock().unwrap().get("old-1"), Some(&1));
    drop(outbox);
    let new = dir.file("new.db");
    drop(Outbox::open(&new, &pool).unwrap());
    for path in [old, new] {
        let db = rusqlite::Connection::open(&path).unwrap();
        let id: i64 = db
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, 0x7271_706C, "{}", path.display());
    }
}

/// Opens the file again once the outbox dropped just before has let it
/// go (bounded). A pool worker may still hold the dropped outbox's shared
/// state for a moment after its last delivery (it drops the completion
/// closure after running it), and with it the file: an `open` at once can
/// find it in use. Known, not fixed here (issue 33's notes).
fn reopen(path: &std::path::Path, pool: &Pool) -> Outbox {
    let t0 = Instant::now();
    loop {
        match Outbox::open(path, pool) {
            Err(e) if e.storage_kind() == Some(StorageKind::InUse) && t0.elapsed() < LIMIT => {
                std::thread::yield_now();
            }
            r => return r.unwrap(),
        }
    }
}

/// Writes `PRAGMA user_version` with the sqlite3 shell if there is one,
/// else by editing the header bytes (offset 60, big-endian).
fn rusqlite_set_version(path: &std::path::Path, v: u32) -> bool {
    let mut bytes = std::fs::read(path).unwrap();
    if bytes.len() < 100 {
        return false;
    }
    bytes[60..64].copy_from_slice(&v.to_be_bytes());
    std::fs::write(path, bytes).is_ok()
}

const CHILD_DB: &str = "REQPOOL_OUTBOX_CHILD_DB";
const CHILD_URL: &str = "REQPOOL_OUTBOX_CHILD_URL";
const JOBS: usize = 200;

/// The child's side of the crash test: enqueue every job, then deliver
/// until killed.
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_enqueues_and_delivers_until_killed() {
    let (Ok(db), Ok(url)) = (std::env::var(CHILD_DB), std::env::var(CHILD_URL)) else {
        return; // only in the child (run by its parent test)
    };
    let pool = Pool::new(4);
    let outbox = Outbox::open(&db, &pool).unwrap();
    for i in 0..JOBS {
        outbox
            .enqueue(
                pool.post(&url)
                    .json_body(&json!({"i": i}))
                    .idempotency_key(&format!("job-{i}")),
            )
            .unwrap();
    }
    std::fs::write(format!("{db}.enqueued"), "").unwrap();
    outbox.flush_timeout(Duration::from_secs(120));
}

#[test]
fn a_killed_process_loses_nothing_and_resends_only_what_was_in_flight() {
    let dir = TempDir::new("kill");
    let db = dir.file("calls.db");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let url = server.url("/orders?ms=20");
    let mut child = spawn_child(
        "child_enqueues_and_delivers_until_killed",
        &[(CHILD_DB, db.to_str().unwrap()), (CHILD_URL, &url)],
    );
    // Kill it (SIGKILL) once every job is enqueued (it says so with a
    // file: on a loaded machine deliveries can reach a fifth of the batch
    // before the last enqueue) and a fifth of the batch has reached the
    // server.
    let enqueued = dir.file("calls.db.enqueued");
    let t0 = Instant::now();
    while !enqueued.exists() || keys.lock().unwrap().len() < JOBS / 5 {
        assert!(
            t0.elapsed() < LIMIT,
            "the child did not enqueue and deliver"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let seen_at_kill = keys.lock().unwrap().len();
    assert!(seen_at_kill < JOBS, "the child finished before the kill");
    // A new process (here: a new pool) opens the file and carries on.
    let pool = Pool::new(4);
    let outbox = Outbox::open(&db, &pool).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let s = outbox.stats().unwrap();
    assert_eq!((s.delivered, s.dead), (JOBS as u64, 0));
    let keys = keys.lock().unwrap();
    // Nothing lost: every key reached the server.
    assert_eq!(keys.len(), JOBS, "lost jobs");
    // Sent twice: at most what was in flight at the kill (4 workers, and a
    // job whose answer came before the child could mark it).
    let twice = keys.values().filter(|&&n| n > 1).count();
    eprintln!("killed after {seen_at_kill} of {JOBS} reached the server; sent twice: {twice}");
    assert!(twice <= 8, "{twice} jobs sent twice");
    assert!(keys.values().all(|&n| n <= 2));
}

#[test]
fn a_shut_down_pool_keeps_the_jobs_for_the_next_run() {
    let dir = TempDir::new("closed");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(1);
    pool.shutdown();
    let path = dir.file("calls.db");
    let outbox = Outbox::open(&path, &pool).unwrap();
    let id = outbox
        .enqueue(
            pool.post(&server.url("/orders"))
                .json_body(&json!({}))
                .idempotency_key("later"),
        )
        .unwrap();
    // Nothing can go out through a closed pool: the job waits, unsent.
    assert_eq!(outbox.flush_timeout(Duration::from_millis(300)), 1);
    assert_eq!(outbox.stats().unwrap().dead, 0);
    drop(outbox);
    assert!(keys.lock().unwrap().is_empty());
    // The next run delivers it.
    let pool = Pool::new(1);
    let outbox = Outbox::open(&path, &pool).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(outbox.reply(id).unwrap().map(|r| r.status), Some(200));
}

const POISON_DB: &str = "REQPOOL_OUTBOX_POISON_DB";

/// The child's side of the poison test: one worker, at most 3 attempts,
/// deliver until done (or killed by the test when the poison arrives).
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_delivers_with_three_attempts() {
    let Ok(db) = std::env::var(POISON_DB) else {
        return; // only in the child (run by its parent test)
    };
    let pool = Pool::new(1);
    let outbox = Outbox::options().max_attempts(3).open(&db, &pool).unwrap();
    outbox.flush_timeout(Duration::from_secs(60));
}

/// A job whose delivery kills its process (here: the server has the test
/// SIGKILL the child when it arrives), in a process restarted in a loop:
/// each restart that finds it in flight counts an attempt, so it is dead
/// after `max_attempts` (3) with the reason, having reached the server 3
/// times; it goes after the jobs already due, so every other job is
/// delivered. Before: it was sent at every restart, first each time, and
/// the other jobs waited behind it.
#[test]
fn a_job_that_kills_its_process_ends_at_max_attempts_and_blocks_nothing() {
    let dir = TempDir::new("poison");
    let db = dir.file("calls.db");
    let poison = Poison::start();
    {
        let pool = Pool::new(1);
        let outbox = Outbox::options().deliver(false).open(&db, &pool).unwrap();
        poison.fill(&outbox, &pool);
    }
    let runs = poison.run_until_done(&|| {
        spawn_child(
            "child_delivers_with_three_attempts",
            &[(POISON_DB, db.to_str().unwrap())],
        )
    });
    let pool = Pool::new(1);
    let outbox = Outbox::options().max_attempts(3).open(&db, &pool).unwrap();
    // Its first two stops came beside other jobs (not its own), then
    // three alone: at most max_attempts + 2 sends.
    poison.check(&outbox, runs, 3..=5);
}

#[test]
fn a_retry_goes_at_its_time_not_after_the_backlog() {
    let dir = TempDir::new("backlog");
    common::a_retry_goes_at_its_time_not_after_the_backlog(&|options, pool| {
        options.open(dir.file("calls.db"), pool).unwrap()
    });
}

const RA_DB: &str = "REQPOOL_OUTBOX_RA_DB";
const RA_URL: &str = "REQPOOL_OUTBOX_RA_URL";

/// The child's side of the Retry-After test: enqueue one job, deliver.
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_enqueues_one_job_and_delivers() {
    let (Ok(db), Ok(url)) = (std::env::var(RA_DB), std::env::var(RA_URL)) else {
        return; // only in the child (run by its parent test)
    };
    let pool = Pool::new(1);
    let outbox = Outbox::open(&db, &pool).unwrap();
    outbox
        .enqueue(pool.post(&url).idempotency_key("retry-me"))
        .unwrap();
    outbox.flush_timeout(Duration::from_secs(60));
}

/// A `Retry-After` the server gave is kept across a kill: the process is
/// killed 300 ms after a 503 with `Retry-After: 2`, and the next process
/// sends the job again no sooner than 2 s after the 503. Before: the wait
/// was the pool's, inside the delivery, and the job went again at once.
#[test]
fn a_retry_after_survives_a_kill() {
    let dir = TempDir::new("retry-after");
    let db = dir.file("calls.db");
    common::a_retry_after_survives_a_kill(
        &|url| {
            spawn_child(
                "child_enqueues_one_job_and_delivers",
                &[(RA_DB, db.to_str().unwrap()), (RA_URL, url)],
            )
        },
        &|pool| Outbox::open(&db, pool).unwrap(),
    );
}

/// Times and counts in the file are checked when read, not trusted: a job
/// written by a clock a day ahead, and counts past `u32::MAX` (a
/// hand-edited file), are delivered now instead of a day later or
/// wrapping to 0.
#[test]
fn stored_times_and_counts_from_a_clock_ahead_or_a_hand_are_not_trusted() {
    let dir = TempDir::new("skew");
    let db = dir.file("calls.db");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let url = server.url("/orders");
    {
        let pool = Pool::new(1);
        let outbox = Outbox::options().deliver(false).open(&db, &pool).unwrap();
        outbox.enqueue(order(&pool, &url, 1)).unwrap();
        outbox.enqueue(order(&pool, &url, 2)).unwrap();
    }
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        let day_ahead = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            + 86_400_000;
        c.execute(
            "UPDATE jobs SET next_at = ?1 WHERE key = 'order-1'",
            [day_ahead],
        )
        .unwrap();
        c.execute(
            "UPDATE jobs SET next_at = 9223372036854775807, attempts = 99999999999, tries = -5 WHERE key = 'order-2'",
            [],
        )
        .unwrap();
    }
    let pool = Pool::new(2);
    let outbox = Outbox::open(&db, &pool).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let s = outbox.stats().unwrap();
    assert_eq!((s.delivered, s.dead), (2, 0));
    assert_eq!(keys.lock().unwrap().len(), 2);
}

const DUP_DB: &str = "REQPOOL_OUTBOX_DUP_DB";
const DUP_URL: &str = "REQPOOL_OUTBOX_DUP_URL";
const DUP_WORKERS: usize = 8;

/// The child's side of the duplicates test: deliver what the file holds
/// with 8 workers until killed.
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_delivers_until_killed() {
    let (Ok(db), Ok(_)) = (std::env::var(DUP_DB), std::env::var(DUP_URL)) else {
        return; // only in the child (run by its parent test)
    };
    let pool = Pool::new(DUP_WORKERS);
    let outbox = Outbox::open(&db, &pool).unwrap();
    outbox.flush_timeout(Duration::from_secs(120));
}

/// The README's bound on duplicates, kill after kill: a process of 8
/// workers killed (SIGKILL) 10 times mid-batch sends again only what was
/// on the wire (one per worker) and what was answered but not yet written
/// (fewer than 8 per worker: past that a worker writes them itself), and
/// the write under way — about 2 per worker in practice — and loses
/// nothing.
#[test]
fn each_kill_sends_only_what_was_on_the_wire_twice() {
    let dir = TempDir::new("dups");
    let db = dir.file("calls.db");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let url = server.url("/orders?ms=10");
    let jobs = 2_000;
    {
        let pool = Pool::new(1);
        let outbox = Outbox::options().deliver(false).open(&db, &pool).unwrap();
        for i in 0..jobs {
            outbox.enqueue(order(&pool, &url, i)).unwrap();
        }
    }
    let sent = |keys: &std::sync::Mutex<std::collections::HashMap<String, usize>>| {
        keys.lock().unwrap().values().sum::<usize>()
    };
    let mut worst = 0;
    for kill in 0..10 {
        let before = sent(&keys);
        let twice_before = keys.lock().unwrap().values().filter(|&&n| n > 1).count();
        let mut child = spawn_child(
            "child_delivers_until_killed",
            &[(DUP_DB, db.to_str().unwrap()), (DUP_URL, &url)],
        );
        let t0 = Instant::now();
        while sent(&keys) < before + 100 {
            assert!(
                t0.elapsed() < LIMIT,
                "kill {kill}: the child delivered nothing"
            );
            std::thread::yield_now();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // What the killed child sent shows as twice once the next one
        // sends it again: counted at the end of the next round.
        let twice = keys.lock().unwrap().values().filter(|&&n| n > 1).count() - twice_before;
        worst = worst.max(twice);
    }
    let pool = Pool::new(DUP_WORKERS);
    let outbox = Outbox::open(&db, &pool).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let keys = keys.lock().unwrap();
    assert_eq!(keys.len(), jobs, "lost jobs");
    let twice = keys.values().filter(|&&n| n > 1).count();
    eprintln!("10 kills: {twice} jobs sent twice in all, at most {worst} in one round");
    assert!(twice <= 10 * 2 * DUP_WORKERS, "{twice}");
    assert!(worst <= 9 * DUP_WORKERS, "{worst}");
    // A job on the wire at two kills in a row is sent three times; after
    // its second stop it goes alone, before the next batch.
    let most = keys.values().copied().max().unwrap_or(0);
    assert!(most <= 3, "a job sent {most} times");
}

#[test]
fn a_long_idempotency_key_is_delivered() {
    // A 20 KiB key: a request head longer than a connection's buffer.
    let dir = TempDir::new("long-key");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let pool = Pool::new(2);
    let outbox = Outbox::open(dir.file("calls.db"), &pool).unwrap();
    let key = "k".repeat(20 * 1024);
    let req = pool
        .post(&server.url("/orders"))
        .json_body(&json!({"i": 1}))
        .idempotency_key(&key);
    outbox.enqueue(req).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(keys.lock().unwrap().get(&key), Some(&1));
    assert_eq!(outbox.stats().unwrap().dead, 0);
}

const WAL_CHILD_DB: &str = "REQPOOL_OUTBOX_WAL_CHILD_DB";

/// The child's side of the lost-WAL test: 20 jobs, its WAL deleted under
/// it, one more job, a mark that all 21 were acknowledged, then it waits
/// to be killed.
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_loses_its_wal_and_waits_to_be_killed() {
    let Ok(db) = std::env::var(WAL_CHILD_DB) else {
        return; // only in the child (run by its parent test)
    };
    let pool = Pool::new(1);
    let outbox = Outbox::options().deliver(false).open(&db, &pool).unwrap();
    let url = "http://127.0.0.1:1/orders";
    for i in 0..20 {
        outbox.enqueue(order(&pool, url, i)).unwrap();
    }
    std::fs::remove_file(format!("{db}-wal")).unwrap();
    outbox.enqueue(order(&pool, url, 20)).unwrap();
    std::fs::write(format!("{db}.acknowledged"), "21").unwrap();
    loop {
        std::thread::park();
    }
}

/// A WAL deleted under a running outbox: what `enqueue` acknowledged is
/// in the file after the process is killed.
#[test]
fn a_wal_deleted_under_a_running_outbox_loses_no_acknowledged_job() {
    let dir = TempDir::new("lost-wal");
    let db = dir.file("calls.db");
    let mut child = spawn_child(
        "child_loses_its_wal_and_waits_to_be_killed",
        &[(WAL_CHILD_DB, db.to_str().unwrap())],
    );
    let acknowledged = dir.file("calls.db.acknowledged");
    let t0 = Instant::now();
    while !acknowledged.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended first: {status}");
        }
        assert!(t0.elapsed() < LIMIT, "the child acknowledged nothing");
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let pool = Pool::new(1);
    let outbox = Outbox::options().deliver(false).open(&db, &pool).unwrap();
    assert_eq!(
        outbox.stats().unwrap().pending,
        21,
        "acknowledged jobs lost"
    );
}

const MEM_DB: &str = "REQPOOL_OUTBOX_MEM_DB";

/// The child's side of the memory test: deliver what the file holds with
/// one worker, and say how much memory that took.
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_delivers_and_reports_its_memory() {
    let Ok(db) = std::env::var(MEM_DB) else {
        return; // only in the child (run by its parent test)
    };
    let start = rss_kib();
    let pool = Pool::new(1);
    let outbox = Outbox::open(&db, &pool).unwrap();
    assert_eq!(outbox.flush_timeout(Duration::from_secs(120)), 0);
    println!("start_kib={start} peak_kib={}", peak_rss_kib());
}

/// Memory follows the workers, not the backlog: 40 jobs of 4 MiB pending
/// on one worker are delivered with at most 64 MiB more than the process
/// started with (a claim holds about 16 MiB of bodies). Before: a claim
/// took up to 512 rows with their bodies (150 such jobs: +626 MiB).
#[test]
fn a_backlog_of_large_bodies_is_delivered_in_bounded_memory() {
    let dir = TempDir::new("big-bodies");
    let db = dir.file("calls.db");
    let (server, keys) = keyed_server(Arc::new(AtomicUsize::new(200)));
    let url = server.url("/orders?ms=5");
    {
        let pool = Pool::new(1);
        let outbox = Outbox::options().deliver(false).open(&db, &pool).unwrap();
        let body = vec![b'x'; 4 << 20];
        for i in 0..40 {
            outbox
                .enqueue(
                    pool.post(&url)
                        .header("Content-Type", "application/octet-stream")
                        .body(body.clone())
                        .idempotency_key(&format!("big-{i}")),
                )
                .unwrap();
        }
    }
    let out = run_child(
        "child_delivers_and_reports_its_memory",
        &[(MEM_DB, db.to_str().unwrap())],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let field = |name: &str| -> u64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let (start, peak) = (field("start_kib="), field("peak_kib="));
    eprintln!("40 x 4 MiB on one worker: RSS {start} KiB at start, {peak} KiB at peak");
    assert_eq!(keys.lock().unwrap().len(), 40);
    assert!(
        peak.saturating_sub(start) <= 64 * 1024,
        "+{} KiB",
        peak - start
    );
}

#[test]
fn enqueue_all_gives_each_job_its_own_outcome() {
    let dir = TempDir::new("enqueue-all");
    common::enqueue_all_gives_each_job_its_own_outcome(&|options, pool| {
        options.open(dir.file("calls.db"), pool).unwrap()
    });
}

const ORDER_DB: &str = "REQPOOL_OUTBOX_ORDER_DB";
const ORDER_URL: &str = "REQPOOL_OUTBOX_ORDER_URL";
const ORDER_DONE: &str = "REQPOOL_OUTBOX_ORDER_DONE";

/// The child's side of the order-key test: enqueues the jobs, delivers
/// until killed.
#[test]
#[ignore = "a child process's entry point: its parent test runs it"]
fn child_enqueues_ordered_and_delivers_until_killed() {
    let (Ok(db), Ok(url), Ok(done)) = (
        std::env::var(ORDER_DB),
        std::env::var(ORDER_URL),
        std::env::var(ORDER_DONE),
    ) else {
        return; // only in the child (run by its parent test)
    };
    let pool = Pool::new(16);
    let outbox = ordered_options().open(&db, &pool).unwrap();
    enqueue_ordered_jobs(&outbox, &pool, &url, std::path::Path::new(&done));
    outbox.flush_timeout(Duration::from_secs(120));
}

/// Per-key order on a file, across random 503s and a killed process: see
/// `common::per_key_order_holds_across_503s_and_a_kill`.
#[test]
fn per_key_order_holds_across_503s_and_a_kill() {
    let dir = TempDir::new("order");
    let db = dir.file("calls.db");
    common::per_key_order_holds_across_503s_and_a_kill(
        &|url, done| {
            spawn_child(
                "child_enqueues_ordered_and_delivers_until_killed",
                &[
                    (ORDER_DB, db.to_str().unwrap()),
                    (ORDER_URL, url),
                    (ORDER_DONE, done.to_str().unwrap()),
                ],
            )
        },
        &|pool| ordered_options().open(&db, pool).unwrap(),
        false,
    );
}

#[test]
fn a_paused_endpoint_is_resumed_by_the_url_paused_lists() {
    // The status page posts back what `paused()` lists (redacted); a URL
    // whose redacted form differs from the stored one (a fragment, a
    // control character percent-encoded) must still resume.
    let server = Server::with_handler(|req, _| {
        if req.path.starts_with("/gone") {
            Reply::json(410, json!({}))
        } else {
            Reply::json(200, json!({}))
        }
    });
    let dir = TempDir::new("paused-urls");
    let pool = Pool::new(1);
    let outbox = Outbox::options()
        .pause_on_gone(true)
        .open(dir.file("calls.db"), &pool)
        .unwrap();
    let mut tried = 0;
    for url in [
        server.url("/gone/a#part"),
        server.url("/gone/b?page=1#top"),
        server.url("/gone/c?page=1"),
    ] {
        let Ok(_) = outbox.enqueue(pool.post(&url).body("{}")) else {
            continue;
        };
        tried += 1;
        assert_eq!(outbox.flush_timeout(LIMIT), 0, "{url}");
        let paused = outbox.paused();
        assert_eq!(paused.len(), 1, "{url}: {paused:?}");
        assert!(
            outbox.resume(&paused[0]),
            "{url}: listed as {:?}, not resumed by it",
            paused[0]
        );
        assert!(outbox.paused().is_empty(), "{url}");
    }
    assert!(tried > 0);
}
