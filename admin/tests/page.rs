//! The status page (`reqpool-outbox serve`) in a real headless Chromium
//! (Debian's `chromium`): the counts of a seeded outbox file as the
//! browser sees them (`--dump-dom`), a read-only page without buttons,
//! and a requeue button pressed (Selenium with Debian's
//! `chromium-driver` and `python3-selenium`: a wrong token refused, the
//! right one accepted) until the page shows the job delivered.
//!
//! Without Chromium the test says so and tests nothing, except under
//! `CI=true`, where it fails (`.ci/run` installs it).

#[path = "../../tests/common/mod.rs"]
mod common;
mod kit;

use common::*;
use reqpool::{Outbox, Pool};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;

const TOKEN: &str = "a-long-operator-token-1234";
const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser (and, for `press`, its driver) is here; under
/// `CI=true` a missing one fails the test.
fn browser_here(driver: bool) -> bool {
    let python = Command::new("/usr/bin/python3")
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    let here = Path::new(CHROMIUM).exists() && (!driver || (Path::new(DRIVER).exists() && python));
    if !here {
        let what = "chromium, chromium-driver and python3-selenium (apt-get install them)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and no {what}"
        );
        eprintln!("the browser test tested nothing: it needs {what}");
    }
    here
}

/// A `serve` child, killed when dropped.
struct Serving {
    child: Child,
    url: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(db: &Path, extra: &[&str]) -> Serving {
    serve_at(&["--file", db.to_str().unwrap()], extra)
}

/// `serve` on the store `at` names (`--file …`, `--redis … --stream …`).
fn serve_at(at: &[&str], extra: &[&str]) -> Serving {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reqpool-outbox"))
        .args(at)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("REQPOOL_OUTBOX_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let line = bounded(LIMIT, move || {
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).unwrap();
        line
    });
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_default()
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line:?}");
    Serving { child, url }
}

/// The page's DOM as headless Chromium renders it.
fn dump_dom(url: &str) -> String {
    let url = url.to_string();
    bounded(LIMIT * 2, move || {
        let out = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--dump-dom",
                &url,
            ])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium: {:?}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
}

/// An outbox file with 3 jobs delivered and 2 dead (a 400), whose
/// server then answers 200 to all; the first dead job's id.
fn seeded(dir: &TempDir) -> (std::path::PathBuf, Server, i64) {
    let (server, status) = kit::server();
    let db = dir.file("calls.db");
    let pool = Pool::new(2);
    let (_, dead) = kit::seed(&Outbox::open(&db, &pool).unwrap(), &pool, &server);
    status.store(200, Ordering::SeqCst);
    (db, server, dead[0].0)
}

#[test]
fn the_browser_sees_the_counts_and_a_read_only_page_has_no_button() {
    if !browser_here(false) {
        return;
    }
    let dir = TempDir::new("page-counts");
    let (db, server, dead) = seeded(&dir);
    let page = serve(&db, &[]);
    let dom = dump_dom(&page.url);
    for want in [
        "<td id=\"pending\">0</td>",
        "<td id=\"delivered\">3</td>",
        "<td id=\"dead\">2</td>",
        "Read-only.",
        &format!("<tr id=\"job-{dead}\">"),
        // The server's answer is shown as text, not as markup.
        "&lt;b&gt;no such hook&lt;/b&gt;",
    ] {
        assert!(dom.contains(want), "{want} not in {dom}");
    }
    // The dead per host, by the host's key.
    let host = server.url("/").trim_end_matches('/').to_string();
    assert!(dom.contains(&format!("<td>{host}</td><td>2</td>")), "{dom}");
    assert!(!dom.contains("<form") && !dom.contains(TOKEN), "{dom}");
    // Read-only: a requeue posted anyway, with the right token, is refused.
    let refused = ureq::post(&format!("{}requeue", page.url))
        .config()
        .http_status_as_error(false)
        .build()
        .send_form([("id", dead.to_string().as_str()), ("token", TOKEN)])
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    // Another Host (a DNS rebinding page) gets nothing.
    let other = ureq::get(&page.url)
        .header("Host", "attacker.example:80")
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(other.status().as_u16(), 421);
}

#[test]
fn pressing_requeue_with_the_token_delivers_the_job() {
    if !browser_here(true) {
        return;
    }
    let dir = TempDir::new("page-requeue");
    let (db, _server, dead) = seeded(&dir);
    let page = serve(&db, &["--deliver", "--allow-requeue"]);
    let dom = dump_dom(&page.url);
    assert!(dom.contains(&format!("id=\"requeue-{dead}\"")), "{dom}");
    assert!(!dom.contains(TOKEN), "the token is on the page");
    // The README's picture: SCREENSHOT=path cargo test -p reqpool-outbox --test page
    if let Ok(png) = std::env::var("SCREENSHOT") {
        let url = page.url.clone();
        let shot = bounded(LIMIT * 2, move || {
            Command::new(CHROMIUM)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--window-size=1150,640",
                ])
                .arg(format!("--screenshot={png}"))
                .arg(&url)
                .stderr(Stdio::null())
                .status()
                .unwrap()
        });
        assert!(shot.success());
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/press_requeue.py");
    let url = page.url.clone();
    let out = bounded(LIMIT * 4, move || {
        Command::new("/usr/bin/python3")
            .args([script, &url, &dead.to_string(), TOKEN, "3"])
            .output()
            .unwrap()
    });
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("wrong token: wrong token"), "{said}");
    assert!(
        said.contains(&format!("flash: Job {dead} requeued.")),
        "{said}"
    );
    assert!(said.contains("delivered: 4 dead: 1"), "{said}");
}

/// `serve --deliver --pause-on-gone` on a Redis stream (where the test
/// can enqueue beside the page's process): a 410 pauses its endpoint,
/// the page lists it, jobs enqueued to it then wait, and its resume form
/// (with the token) sends them. Plain HTTP from the test: no browser.
#[test]
fn a_paused_endpoint_is_listed_and_resumed_from_the_page() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (server, status) = kit::server();
    status.store(410, Ordering::SeqCst);
    let pool = Pool::new(2);
    let gone = server.url("/gone");
    let url = redis.url();
    // A producer only: the page's process delivers.
    let producer = reqpool::OutboxOptions::new()
        .deliver(false)
        .redis(&url, "hooks", &pool)
        .unwrap();
    producer.enqueue(pool.post(&gone).body("{}")).unwrap();
    let page = serve_at(
        &["--redis", &url, "--stream", "hooks"],
        &["--deliver", "--pause-on-gone", "--allow-requeue"],
    );
    let get = |url: &str| {
        ureq::get(url)
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    };
    let until = |url: &str, want: &'static [&'static str]| {
        let url = url.to_string();
        bounded(LIMIT, move || {
            loop {
                let html = get(&url);
                if want.iter().all(|w| html.contains(w)) {
                    return html;
                }
                std::thread::yield_now();
            }
        })
    };
    let html = until(&page.url, &["id=\"paused\"", "<td id=\"dead\">1</td>"]);
    assert!(html.contains(&format!("<code>{gone}</code>")), "{html}");
    // Jobs to the paused endpoint wait, pending, unsent.
    for i in 0..2 {
        producer
            .enqueue(pool.post(&gone).body(format!("{{\"i\":{i}}}")))
            .unwrap();
    }
    until(&page.url, &["<td id=\"pending\">2</td>"]);
    assert_eq!(server.shared.hits("/gone"), 1);
    status.store(200, Ordering::SeqCst);
    let post = |token: &str| {
        ureq::post(&format!("{}resume", page.url))
            .config()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .send_form([("url", gone.as_str()), ("token", token)])
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post("not-the-token-at-all"), 403);
    assert_eq!(post(TOKEN), 303);
    assert_eq!(post(TOKEN), 404, "resumed twice");
    until(
        &page.url,
        &["<td id=\"pending\">0</td>", "<td id=\"in-flight\">0</td>"],
    );
    assert_eq!(server.shared.hits("/gone"), 3);
}

/// One raw HTTP/1.1 exchange with the page: `request` written as is
/// (its `Host` header included), the status and the whole answer.
fn raw(url: &str, request: String) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    bounded(LIMIT, move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out).into_owned();
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, out)
    })
}

fn post_form(url: &str, host: &str, path: &str, form: &str) -> (u16, String) {
    raw(
        url,
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
}

#[test]
fn the_page_shows_no_secret_runs_no_injected_script_and_guards_requeue() {
    let dir = TempDir::new("page-attacks");
    let db = dir.file("calls.db");
    let server = Server::with_handler(|req, _| {
        let auth = req
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        Reply::text(
            400,
            "text/html",
            &format!("<script>alert('pwn')</script><img src=x onerror=alert(1)>\"' auth={auth}"),
        )
    });
    let id = {
        let pool = Pool::builder()
            .workers(1)
            .before_attempt(|a: &mut reqpool::Attempt<'_>| {
                a.secret_header("Authorization", "Bearer auth-SECRET-1");
                Ok(())
            })
            .build()
            .unwrap();
        let outbox = Outbox::open(&db, &pool).unwrap();
        let id = outbox
            .enqueue(
                pool.post(&format!(
                    "{}?page=<script>alert(2)</script>",
                    server.url("/echo/<svg onload=alert(3)>\"'")
                ))
                .body("{}"),
            )
            .unwrap();
        assert_eq!(outbox.flush_timeout(LIMIT), 0);
        id.0
    };
    let page = serve(&db, &["--allow-requeue"]);
    let host = page
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let get = |host: &str| {
        raw(
            &page.url,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    let (status, html) = get(&host);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&format!("id=\"job-{id}\"")), "{html}");
    assert!(!html.contains("SECRET"), "a secret on the page: {html}");
    assert!(!html.contains(TOKEN), "the token on the page");
    let body = html.split("\r\n\r\n").nth(1).unwrap_or("");
    // The page has no script or image of its own.
    for tag in ["<script", "<img", "<svg"] {
        assert!(!body.contains(tag), "{tag} unescaped on the page: {body}");
    }
    // Another Host (DNS rebinding), or none: refused.
    for other in ["evil.example", "evil.example:80", "127.0.0.1", "localhost"] {
        let (status, _) = get(other);
        assert_eq!(status, 421, "Host {other}");
    }
    let (status, _) = raw(&page.url, "GET / HTTP/1.0\r\n\r\n".into());
    assert_eq!(status, 421, "no Host");
    // Requeue: no token, a wrong one, one a byte short or long, the right
    // one through another Host; then the right one.
    let id_s = id.to_string();
    let long = format!("{TOKEN}x");
    for form in [
        format!("id={id_s}"),
        format!("id={id_s}&token="),
        format!("id={id_s}&token=wrong-token-wrong-token"),
        format!("id={id_s}&token={}", &TOKEN[..TOKEN.len() - 1]),
        format!("id={id_s}&token={long}"),
    ] {
        let (status, out) = post_form(&page.url, &host, "/requeue", &form);
        assert!(status == 403 || status == 400, "{form}: {out}");
        assert!(!out.contains(TOKEN), "{form}: the token echoed: {out}");
    }
    let (status, _) = post_form(
        &page.url,
        "evil.example",
        "/requeue",
        &format!("id={id_s}&token={TOKEN}"),
    );
    assert_eq!(status, 421);
    let (status, out) = post_form(
        &page.url,
        &host,
        "/requeue",
        &format!("id={id_s}&token={TOKEN}"),
    );
    assert_eq!(status, 303, "{out}");
    drop(page);
    // A read-only page refuses even the right token.
    let page = serve(&db, &[]);
    let host = page
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (status, _) = post_form(
        &page.url,
        &host,
        "/requeue",
        &format!("id={id_s}&token={TOKEN}"),
    );
    assert_eq!(status, 403);
}

#[test]
fn a_form_that_never_arrives_does_not_stop_the_page() {
    // A local client posts a requeue form's head and never its body: the
    // page must go on answering others (and the stalled post must fail).
    let dir = TempDir::new("page-stall");
    let (db, _server, _) = seeded(&dir);
    let page = serve(&db, &["--allow-requeue"]);
    let host = page
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    // Small bodies are read by tiny_http before the page sees the
    // request; larger ones are read by the page.
    let mut stalled = Vec::new();
    for len in [100, 2_000, 100_000] {
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        std::io::Write::write_all(
            &mut s,
            format!(
                "POST /requeue HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\n\r\nid=1&tok"
            )
            .as_bytes(),
        )
        .unwrap();
        stalled.push(s);
    }
    let (status, html) = raw(
        &page.url,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{html}");
    drop(stalled);
}
