//! What an answer becomes: typed JSON, an error status with its body and
//! headers, a reply that is not JSON, bodies in gzip, deflate and br, a
//! bomb, and the size cap to the byte.

mod common;

use common::*;
use reqpool::{Error, Pool};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Job {
    tag: String,
    items: Vec<u32>,
}

#[derive(Deserialize, Debug)]
struct Done {
    status: String,
    count: u32,
}

#[test]
fn typed_json_round_trip() {
    let server = Server::start();
    let pool = Pool::new(2);
    let job = Job {
        tag: "a".into(),
        items: vec![1, 2, 3],
    };
    let echoed: Job = bounded(LIMIT, {
        let (pool, url, job) = (pool.clone(), server.url("/echo"), job.clone());
        move || pool.post_json::<Job>(&url, &job).wait()
    })
    .unwrap();
    assert_eq!(echoed, job);

    let done: Done = pool.get_json(&server.url("/json")).wait().unwrap();
    assert_eq!((done.status.as_str(), done.count), ("completed", 1));

    let v: serde_json::Value = pool.get_json(&server.url("/json")).wait().unwrap();
    assert_eq!(v["count"], 1);
}

#[test]
fn fastapi_422_keeps_its_detail() {
    let server = Server::start();
    let pool = Pool::new(1);
    let err = pool
        .post_json::<serde_json::Value>(&server.url("/422"), &serde_json::json!({"tag": 1}))
        .wait()
        .unwrap_err();
    assert_eq!(err.status(), Some(422));
    let detail = &err.body_json().expect("json body")["detail"];
    assert_eq!(detail[0]["msg"], "field required");
    assert!(matches!(&err, Error::Status { code: 422, method, .. } if method == "POST"));
    let shown = err.to_string();
    assert!(
        shown.starts_with("http status 422 (POST http://127.0.0.1:"),
        "{shown}"
    );
    assert!(shown.contains("field required"), "{shown}");
}

#[test]
fn html_500_is_a_status_error_with_text() {
    let server = Server::start();
    let pool = Pool::new(1);
    let err = pool
        .get_json::<serde_json::Value>(&server.url("/html500"))
        .wait()
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Status {
            code: 500,
            json: None,
            ..
        }
    ));
    assert!(err.body_text().unwrap().contains("Internal Server Error"));
    assert!(!err.is_retryable());
}

#[test]
fn non_json_200_is_a_decode_error_with_a_snippet() {
    let server = Server::start();
    let pool = Pool::new(1);
    let err = pool
        .get_json::<Done>(&server.url("/text"))
        .wait()
        .unwrap_err();
    assert!(err.is_decode(), "{err:?}");
    match &err {
        Error::Decode { snippet, .. } => assert_eq!(snippet, "hello, this is not json"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("hello, this is not json"));
}

#[test]
fn send_returns_status_headers_and_body() {
    let server = Server::start();
    let pool = Pool::new(1);
    let resp = pool
        .request("PUT", &server.url("/headers"))
        .header("X-Trace", "abc")
        .query("q", "a b")
        .body("raw")
        .send()
        .wait()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let seen: serde_json::Value = resp.json().unwrap();
    assert_eq!(seen["x-trace"], "abc");
    assert!(seen["user-agent"].as_str().unwrap().starts_with("reqpool/"));
    assert_eq!(server.shared.log.lock().unwrap()[0].1, "PUT");
}

#[test]
fn an_error_status_keeps_its_headers_without_secrets() {
    let server = Server::with_handler(|req, _| {
        let echo = req
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        Reply::json(401, json!({"detail": "expired"}))
            .header(
                "WWW-Authenticate",
                r#"Bearer realm="api", error="invalid_token""#,
            )
            .header("X-Echo", &echo)
            .header("X-Request-Id", "req-42")
            .header("Set-Cookie", "session=s3cr3t-cookie; HttpOnly")
    });
    let pool = Pool::new(1);
    let r = pool
        .get(&server.url("/me?key=q-secret-9"))
        .bearer_auth("tok-secret-1234")
        .send()
        .wait();
    let e = r.unwrap_err();
    assert_eq!(
        e.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="invalid_token""#)
    );
    assert_eq!(e.header("X-Request-Id"), Some("req-42"));
    // The accessors give the server's words as sent; Display and Debug
    // leave the secrets out.
    assert_eq!(
        e.header("set-cookie"),
        Some("session=s3cr3t-cookie; HttpOnly")
    );
    assert_eq!(e.header("x-echo"), Some("Bearer tok-secret-1234"));
    assert_eq!(e.header("no-such"), None);
    let shown = format!("{e} {e:?} {e:#?}");
    for secret in ["tok-secret-1234", "q-secret-9", "s3cr3t-cookie"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn gzip_deflate_and_br_bodies_are_decoded_and_others_named() {
    use std::io::Write as _;
    let zlib = {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(br#"{"ok":true,"via":"deflate"}"#).unwrap();
        e.finish().unwrap()
    };
    let raw_deflate = {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(br#"{"ok":true,"via":"raw deflate"}"#).unwrap();
        e.finish().unwrap()
    };
    let gzip = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(br#"{"ok":true,"via":"gzip"}"#).unwrap();
        e.finish().unwrap()
    };
    // `{"ok":true,"via":"br"}`, compressed by Python's brotli module.
    let br: Vec<u8> = vec![
        139, 10, 128, 123, 34, 111, 107, 34, 58, 116, 114, 117, 101, 44, 34, 118, 105, 97, 34, 58,
        34, 98, 114, 34, 125, 3,
    ];
    let seen_accept = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = seen_accept.clone();
    let server = Server::with_handler(move |req, _| {
        *seen.lock().unwrap() = req
            .headers
            .get("accept-encoding")
            .cloned()
            .unwrap_or_default();
        let (enc, body) = match req.path.as_str() {
            "/deflate" => ("deflate", zlib.clone()),
            "/raw-deflate" => ("deflate", raw_deflate.clone()),
            "/gzip" => ("gzip", gzip.clone()),
            "/br" => ("br", br.clone()),
            _ => ("zstd", vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0]),
        };
        let mut reply = Reply::json(200, json!({})).header("Content-Encoding", enc);
        reply.body = body;
        reply
    });
    let pool = Pool::new(1);
    for (path, via) in [
        ("/deflate", "deflate"),
        ("/raw-deflate", "raw deflate"),
        ("/gzip", "gzip"),
        ("/br", "br"),
    ] {
        let v: Value = pool.get(&server.url(path)).json().wait().unwrap();
        assert_eq!(v["via"], via, "{path}");
        let resp = pool.get(&server.url(path)).send().wait().unwrap();
        assert_eq!(resp.header("content-encoding"), None, "{path}: decoded");
    }
    assert_eq!(*seen_accept.lock().unwrap(), "gzip, deflate, br");
    let e = pool
        .get(&server.url("/zstd"))
        .json::<Value>()
        .wait()
        .unwrap_err();
    assert!(e.to_string().contains("zstd-encoded"), "{e}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn gzip_bomb_fails_as_too_large() {
    // 16 MiB of zeros compress to ~16 KiB; the cap counts decoded bytes.
    let bomb = Arc::new(gzip(&vec![0u8; 16 << 20]));
    assert!(bomb.len() < 100_000);
    let server = Server::with_handler(move |_, _| {
        Reply {
            status: 200,
            content_type: "application/json",
            headers: vec![],
            body: bomb.to_vec(),
        }
        .header("Content-Encoding", "gzip")
    });
    let pool = Pool::builder().max_response_bytes(1 << 20).build().unwrap();
    let url = server.url("/bomb");
    let err = bounded(LIMIT, move || pool.get(&url).send().wait()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: 1_048_576,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn body_of_exactly_the_limit_is_accepted_one_more_byte_is_not() {
    let server = Server::with_handler(|req, _| {
        let n: usize = req.q("n").and_then(|v| v.parse().ok()).unwrap_or(0);
        Reply::text(200, "application/octet-stream", &"x".repeat(n))
    });
    let pool = Pool::builder().max_response_bytes(1000).build().unwrap();
    let ok = pool
        .get(&server.url("/bytes?n=1000"))
        .send()
        .wait()
        .unwrap();
    assert_eq!(ok.body().len(), 1000);
    let err = pool
        .get(&server.url("/bytes?n=1001"))
        .send()
        .wait()
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: 1000, .. }),
        "{err:?}"
    );
    // Gzipped, the same rule on decoded bytes.
    let server = Server::with_handler(|req, _| {
        let n: usize = req.q("n").and_then(|v| v.parse().ok()).unwrap_or(0);
        Reply {
            status: 200,
            content_type: "application/octet-stream",
            headers: vec![],
            body: gzip(&vec![b'y'; n]),
        }
        .header("Content-Encoding", "gzip")
    });
    assert_eq!(
        pool.get(&server.url("/g?n=1000"))
            .send()
            .wait()
            .unwrap()
            .body()
            .len(),
        1000
    );
    assert!(matches!(
        pool.get(&server.url("/g?n=1001")).send().wait(),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn response_heads_up_to_64_kib_are_read() {
    let cookie = format!("s={}", "c".repeat(20 * 1024));
    let csp = "d".repeat(60 * 1024);
    let huge = "h".repeat(70 * 1024);
    let big = "b".repeat(200 * 1024);
    let (c, p, h, b) = (cookie.clone(), csp.clone(), huge.clone(), big.clone());
    let server = Server::with_handler(move |req, _| match req.path.as_str() {
        "/cookie" => Reply::json(200, json!({"ok": 1})).header("Set-Cookie", &c),
        "/csp" => Reply::json(200, json!({"ok": 1})).header("Content-Security-Policy", &p),
        "/big" => Reply::json(200, json!({"b": b})).header("Set-Cookie", &c),
        "/huge" => Reply::json(200, json!({})).header("X-Huge", &h),
        _ => Reply::json(200, json!({"plain": 1})),
    });
    // Each way in, on a pool of its own, is the first to meet a long head
    // there, and a POST without a key among them: read the first time,
    // sent once.
    type Way = fn(&Pool, &str) -> Result<usize, String>;
    let ways: [(&str, Way); 3] = [
        ("send", |p, u| {
            let r = p.post(u).json_body(&json!({})).send();
            let r = bounded(LIMIT, move || r.wait()).map_err(|e| e.to_string());
            r.map(|r| r.header("set-cookie").map_or(0, str::len))
        }),
        ("json", |p, u| {
            let r = p.post(u).json_body(&json!({})).json::<Value>();
            let v = bounded(LIMIT, move || r.wait()).map_err(|e| e.to_string());
            v.map(|v| v.to_string().len())
        }),
        ("fire", |p, u| {
            p.post(u)
                .json_body(&json!({}))
                .fire()
                .map_err(|e| e.to_string())?;
            let left = p.flush_timeout(LIMIT);
            let failed = p.stats().fired_failed;
            (left == 0 && failed == 0)
                .then_some(1)
                .ok_or(format!("{left} left, {failed} failed"))
        }),
    ];
    for (n, (way, call)) in ways.iter().enumerate() {
        let pool = Pool::new(1);
        let before = server.shared.hits("/cookie");
        let opened = server.shared.connections.load(Ordering::SeqCst);
        let got = call(&pool, &server.url("/cookie"));
        assert!(got.as_ref().is_ok_and(|n| *n > 0), "{way}: {got:?}");
        assert_eq!(
            server.shared.hits("/cookie"),
            before + 1,
            "{way}: sent once"
        );
        // The connection is kept and serves the next answers, short and long.
        let r = bounded(LIMIT, {
            let r = pool.get(&server.url("/short")).json::<Value>();
            move || r.wait()
        });
        assert_eq!(r.unwrap()["plain"], 1, "{way}");
        let r = bounded(LIMIT, {
            let r = pool.get(&server.url("/csp")).send();
            move || r.wait()
        })
        .unwrap();
        assert_eq!(
            r.header("content-security-policy").map(str::len),
            Some(csp.len())
        );
        assert_eq!(server.shared.hits("/csp"), n + 1, "{way}: sent once");
        let now = server.shared.connections.load(Ordering::SeqCst);
        assert_eq!(now - opened, 1, "{way}: one connection");
    }
    let pool = Pool::new(2);
    // A long head and a body longer than the read buffer, read together.
    let v: Value = bounded(LIMIT, {
        let r = pool.get(&server.url("/big")).json::<Value>();
        move || r.wait()
    })
    .unwrap();
    assert_eq!(v["b"].as_str().map(str::len), Some(big.len()));
    // Past 64 KiB: a clear error, not a retry.
    let e = bounded(LIMIT, {
        let r = pool.get(&server.url("/huge")).send();
        move || r.wait()
    })
    .unwrap_err();
    assert!(e.to_string().contains("response header of"), "{e}");
    assert!(!e.is_retryable(), "{e:?}");
    assert_eq!(server.shared.hits("/huge"), 1);
}

// ---------------------------------------------------------------------
// Long response heads (spill.rs) under attack: sizes at the edges, many
// headers, a head and a chunked body in one write, keep-alive after a long
// head, a trickled head running out the job's limit, a close mid-head, a
// 100 Continue first, and read buffers at their extremes.

/// A raw server: on each connection, answers the requests it reads with
/// `script`'s answers in turn (each written in one write unless `pace`
/// says otherwise: after `pace.0` bytes at once, one byte every `pace.1`
/// ms), then closes. Counts connections.
fn scripted_server(
    script: Vec<Vec<u8>>,
    pace: Option<(usize, u64)>,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::BufReader;
    use std::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = conns.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(SERVER_WAIT));
                let _ = stream.set_nodelay(true);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                for answer in &script {
                    if read_request(&mut reader).is_none() {
                        return;
                    }
                    match pace {
                        None => {
                            if stream.write_all(answer).is_err() {
                                return;
                            }
                        }
                        Some((first, ms)) => {
                            let first = first.min(answer.len());
                            if stream.write_all(&answer[..first]).is_err() {
                                return;
                            }
                            let stop = std::time::Instant::now() + SERVER_WAIT;
                            for b in &answer[first..] {
                                if std::time::Instant::now() > stop
                                    || stream.write_all(&[*b]).is_err()
                                {
                                    return;
                                }
                                std::thread::sleep(std::time::Duration::from_millis(ms));
                            }
                        }
                    }
                }
                // Hold the connection until the client closes it.
                let mut buf = [0u8; 1];
                let _ = std::io::Read::read(&mut stream, &mut buf);
            });
        }
    });
    (url, conns)
}

/// A 200 whose head (status line to the blank line included) is exactly
/// `len` bytes, with a `{}` body.
fn head_of(len: usize) -> Vec<u8> {
    let start = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: ";
    let end = "\r\n\r\n";
    let pad = len - start.len() - end.len();
    format!("{start}{}{end}{{}}", "p".repeat(pad)).into_bytes()
}

const SHORT: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"s\":1}";

#[test]
fn long_heads_at_the_edges_are_read_and_the_connection_serves_a_short_one_after() {
    // The edges of the default read buffer (4 KiB) and of the one before.
    for len in [
        4 * 1024 - 1,
        4 * 1024,
        4 * 1024 + 1,
        8 * 1024 - 1,
        8 * 1024,
        8 * 1024 + 1,
        16 * 1024,
        64 * 1024 - 1,
        64 * 1024,
    ] {
        let (url, conns) = scripted_server(vec![head_of(len), SHORT.to_vec(), head_of(len)], None);
        let pool = Pool::new(1);
        for round in 0..3 {
            let r = bounded(LIMIT, {
                let r = pool.get(&url).send();
                move || r.wait()
            });
            let r = r.unwrap_or_else(|e| panic!("{len} bytes, answer {round}: {e}"));
            assert_eq!(r.status(), 200, "{len}, {round}");
            let want = if round == 1 { 7 } else { 2 };
            assert_eq!(r.body().len(), want, "{len} bytes, answer {round}");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1, "{len}: one connection");
    }
}

#[test]
fn heads_one_byte_past_the_limit_fail_clearly_and_are_not_retried() {
    for (len, pool) in [
        (64 * 1024 + 1, Pool::new(1)),
        (
            128 * 1024 + 1,
            Pool::builder()
                .workers(1)
                .read_buffer(128 * 1024)
                .build()
                .unwrap(),
        ),
    ] {
        let (url, conns) = scripted_server(vec![head_of(len)], None);
        let e = bounded(LIMIT, {
            let r = pool.get(&url).send();
            move || r.wait()
        })
        .unwrap_err();
        assert!(e.to_string().contains("response header of"), "{len}: {e}");
        assert!(!e.is_retryable(), "{len}: {e:?}");
        assert_eq!(conns.load(Ordering::SeqCst), 1, "{len}");
    }
}

#[test]
fn thousands_of_tiny_headers_fail_clearly() {
    let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    for i in 0..4000 {
        head.push_str(&format!("h{i}: v\r\n"));
    }
    head.push_str("\r\n{}");
    let (url, _) = scripted_server(vec![head.into_bytes()], None);
    let pool = Pool::new(1);
    let e = bounded(LIMIT, {
        let r = pool.get(&url).send();
        move || r.wait()
    })
    .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("header"), "{e}");
}

#[test]
fn a_long_head_then_a_large_chunked_body_in_one_write() {
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(40 * 1024)
    )
    .into_bytes();
    let mut want = Vec::new();
    for i in 0..300u32 {
        // Chunks of odd sizes, so some straddle every buffer boundary.
        let chunk: Vec<u8> = (0..(977 + i as usize * 13))
            .map(|j| b'a' + (j % 26) as u8)
            .collect();
        answer.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        answer.extend_from_slice(&chunk);
        answer.extend_from_slice(b"\r\n");
        want.extend_from_slice(&chunk);
    }
    answer.extend_from_slice(b"0\r\n\r\n");
    let (url, conns) = scripted_server(vec![answer, SHORT.to_vec()], None);
    let pool = Pool::builder()
        .workers(1)
        .max_response_bytes(16 * 1024 * 1024)
        .build()
        .unwrap();
    let r = bounded(LIMIT, {
        let r = pool.get(&url).send();
        move || r.wait()
    })
    .unwrap();
    assert_eq!(r.body().len(), want.len());
    assert!(r.body() == &want[..], "the body came through intact");
    let r = bounded(LIMIT, {
        let r = pool.get(&url).send();
        move || r.wait()
    })
    .unwrap();
    assert_eq!(r.body().len(), 7);
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[test]
fn a_long_head_trickled_past_the_buffer_runs_out_the_limit_as_a_timeout() {
    // 9 KiB at once (the buffer is full, the head spills), then a byte
    // every 2 ms of a 40 KiB head: 80 s, against a 1 s limit.
    let (url, _) = scripted_server(vec![head_of(40 * 1024)], Some((9 * 1024, 2)));
    let pool = Pool::builder()
        .workers(1)
        .retry(reqpool::Retry::none())
        .build()
        .unwrap();
    let limit = std::time::Duration::from_secs(1);
    let start = std::time::Instant::now();
    let e = bounded(LIMIT, {
        let r = pool.get(&url).timeout(limit).send();
        move || r.wait()
    })
    .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(took < limit + std::time::Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_server_closing_mid_long_head_is_a_transport_error() {
    // The scripted server holds the socket after its script; this one
    // closes after 20 KiB of a 30 KiB head.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closing = format!("http://{}/x", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(SERVER_WAIT));
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            if read_request(&mut reader).is_some() {
                let mut a = head_of(30 * 1024);
                a.truncate(20 * 1024);
                let _ = stream.write_all(&a);
            }
        }
    });
    let pool = Pool::builder()
        .workers(1)
        .retry(reqpool::Retry::none())
        .build()
        .unwrap();
    let e = bounded(LIMIT, {
        let r = pool.get(&closing).send();
        move || r.wait()
    })
    .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert!(!e.to_string().contains("response header of"), "{e}");
}

#[test]
fn a_100_continue_before_a_long_head() {
    let mut answer = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
    answer.extend_from_slice(&head_of(40 * 1024));
    // And one where the 100 and the long head together pass 64 KiB while
    // the head alone does not.
    let mut edge = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
    edge.extend_from_slice(&head_of(64 * 1024 - 4));
    for (what, answer) in [("40 KiB", answer), ("64 KiB - 4", edge)] {
        let (url, _) = scripted_server(vec![answer], None);
        let pool = Pool::new(1);
        let r = bounded(LIMIT, {
            let r = pool
                .post(&url)
                .json_body(&json!({"a": "b".repeat(20_000)}))
                .send();
            move || r.wait()
        });
        let r = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(r.status(), 200, "{what}");
        assert_eq!(r.body().len(), 2, "{what}");
    }
}

#[test]
fn read_buffers_at_their_extremes_work_or_say_why() {
    let (url, _) = scripted_server(vec![head_of(20 * 1024), SHORT.to_vec()], None);
    let pool = Pool::builder()
        .workers(1)
        .read_buffer(1024)
        .build()
        .unwrap();
    for want in [2, 7] {
        let r = bounded(LIMIT, {
            let r = pool.get(&url).send();
            move || r.wait()
        })
        .unwrap();
        assert_eq!(r.body().len(), want);
    }
}

#[test]
fn read_buffers_too_large_to_allocate_are_refused_by_build() {
    // usize::MAX, or 200 MiB: refused by build(), or a request that
    // works; never a panic or a hang.
    for size in [usize::MAX, 200 * 1024 * 1024] {
        let (url, _) = scripted_server(vec![SHORT.to_vec()], None);
        match Pool::builder().workers(1).read_buffer(size).build() {
            Err(e) => assert!(matches!(e, Error::Usage { .. }), "{size}: {e:?}"),
            Ok(pool) => {
                let r = bounded(LIMIT, {
                    let r = pool.get(&url).send();
                    move || r.wait()
                });
                assert_eq!(
                    r.map(|r| r.status()).map_err(|e| e.to_string()),
                    Ok(200),
                    "{size}"
                );
                assert_eq!(pool.stats().panicked, 0, "{size}");
            }
        }
    }
}

#[test]
fn bytes_after_a_long_heads_body_never_answer_the_next_request() {
    // A long head, its body, and a forged answer in the same write: the
    // connection holds unread input once the body is read, so it must not
    // serve the next request (which would read "EVIL!").
    let mut answer = head_of(20 * 1024);
    answer.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!");
    let (url, conns) = scripted_server(vec![answer, SHORT.to_vec()], None);
    let pool = Pool::new(1);
    for round in 0..2 {
        let r = bounded(LIMIT, {
            let r = pool.get(&url).send();
            move || r.wait()
        })
        .unwrap();
        assert_ne!(r.body(), b"EVIL!", "answer {round} was the forged one");
        assert_eq!(r.body().len(), 2, "answer {round}");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[test]
fn a_long_redirect_location_is_followed() {
    // A 302 whose head is 30 KiB (a 20 KiB Location and padding), then
    // the target on the same connection; and a short one the same way.
    for (q, pad) in [(10, 0), (20 * 1024, 10 * 1024)] {
        let redirect = format!(
            "HTTP/1.1 302 Found\r\nLocation: /to?q={}\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
            "q".repeat(q),
            "p".repeat(pad)
        );
        let (url, conns) = scripted_server(vec![redirect.into_bytes(), SHORT.to_vec()], None);
        let pool = Pool::new(1);
        let r = bounded(LIMIT, {
            let r = pool.get(&url).send();
            move || r.wait()
        })
        .unwrap();
        assert_eq!(r.body().len(), 7, "{q}");
        // ureq follows a redirect as soon as its Location is read (the
        // rest of a long head unread): that connection is then dropped,
        // not reused. One more connection, the same answer.
        assert!(conns.load(Ordering::SeqCst) <= 2, "{q}");
    }
}

/// A raw server that answers each connection's first request with
/// `answer` and closes.
fn closing_server(answer: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(SERVER_WAIT));
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            if read_request(&mut reader).is_some() {
                let _ = stream.write_all(&answer);
            }
        }
    });
    url
}

#[test]
fn a_long_head_then_a_body_to_the_close_and_heads_without_bodies() {
    // No Content-Length, no chunking: the body runs to the close.
    let body = "z".repeat(50_000);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nX-Pad: {}\r\n\r\n{body}",
        "p".repeat(20 * 1024)
    );
    let url = closing_server(answer.into_bytes());
    let pool = Pool::new(1);
    let r = bounded(LIMIT, {
        let r = pool.get(&url).send();
        move || r.wait()
    })
    .unwrap();
    assert_eq!(r.body().len(), body.len());
    // A 304 and a 204 with long heads, then a short answer on the same
    // connection.
    let pad = "p".repeat(20 * 1024);
    let (url, conns) = scripted_server(
        vec![
            format!("HTTP/1.1 304 Not Modified\r\nX-Pad: {pad}\r\n\r\n").into_bytes(),
            format!("HTTP/1.1 204 No Content\r\nX-Pad: {pad}\r\n\r\n").into_bytes(),
            SHORT.to_vec(),
        ],
        None,
    );
    for want in [304, 204, 200] {
        let r = bounded(LIMIT, {
            let r = pool.get(&url).send();
            move || r.wait()
        });
        let status = match r {
            Ok(r) => r.status(),
            Err(e) => e.status().unwrap_or_else(|| panic!("{want}: {e}")),
        };
        assert_eq!(status, want);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[test]
fn a_cancel_while_a_long_head_trickles_ends_it_and_frees_the_worker() {
    // 12 KiB at once (the head spills), then a byte every 5 ms: the
    // request is cancelled once running (the head being read, spilled or
    // not yet: the test does not know which); the one worker then serves
    // the next request.
    let (slow, _) = scripted_server(vec![head_of(40 * 1024)], Some((12 * 1024, 5)));
    let (fast, _) = scripted_server(vec![SHORT.to_vec()], None);
    let pool = Pool::builder()
        .workers(1)
        .retry(reqpool::Retry::none())
        .build()
        .unwrap();
    let p = pool.get(&slow).send();
    // Running: the worker has it (no sleep: wait until it is not queued).
    bounded(LIMIT, {
        let pool = pool.clone();
        move || {
            while pool.stats().running == 0 {
                std::thread::yield_now();
            }
        }
    });
    assert!(p.cancel());
    let e = bounded(LIMIT, move || p.wait()).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e:?}");
    let r = bounded(LIMIT, {
        let r = pool.get(&fast).send();
        move || r.wait()
    })
    .unwrap();
    assert_eq!(r.body().len(), 7);
}

#[test]
fn long_heads_on_every_way_in() {
    // 40 KiB heads are read and 70 KiB ones refused, on every way in (a
    // detached fire does not read the answer), each path on a pool of its
    // own so it is the first to meet a long head there.
    let server = Server::with_handler(|req, _| {
        let kib = if req.path.starts_with("/huge") {
            70
        } else {
            40
        };
        Reply::json(200, json!({"ok": 1})).header("X-Pad", &"p".repeat(kib * 1024))
    });
    for path in PATHS {
        let (pool, errors) = pool_with(Pool::builder().workers(1).retry(reqpool::Retry::none()));
        let got = send_through(&pool, &errors, path, "POST", &server.url("/long"), true);
        assert!(got.is_ok(), "{path:?}: {got:?}");
        let got = send_through(&pool, &errors, path, "POST", &server.url("/huge"), true);
        if path == Path::FireDetached {
            assert!(got.is_ok(), "{path:?}: {got:?}");
        } else {
            let e = got.unwrap_err();
            assert!(e.to_string().contains("response header"), "{path:?}: {e}");
        }
    }
}

#[cfg(feature = "sqlite")]
#[test]
fn a_head_over_the_limit_through_an_outbox_is_sent_once() {
    let server = Server::with_handler(|req, _| {
        let kib = if req.path.starts_with("/huge") {
            70
        } else {
            40
        };
        Reply::json(200, json!({"ok": 1})).header("X-Pad", &"p".repeat(kib * 1024))
    });
    // The long one is delivered, the huge one is dead (its error says
    // why); each sent once.
    let dir = TempDir::new("long-heads");
    let pool = Pool::new(1);
    let outbox = reqpool::Outbox::open(dir.file("calls.db"), &pool).unwrap();
    outbox
        .enqueue(pool.post(&server.url("/long")).body("{}"))
        .unwrap();
    outbox
        .enqueue(pool.post(&server.url("/huge")).body("{}"))
        .unwrap();
    assert_eq!(outbox.flush_timeout(LIMIT), 0);
    let s = outbox.stats().unwrap();
    assert_eq!((s.delivered, s.dead), (1, 1), "{s:?}");
    let dead = outbox.dead().unwrap();
    assert!(
        dead[0].last_error.contains("response header"),
        "{}",
        dead[0].last_error
    );
    assert_eq!(
        (server.shared.hits("/long"), server.shared.hits("/huge")),
        (1, 1)
    );
}

#[test]
fn an_expect_100_request_answered_at_once_with_a_long_head() {
    // The client sends Expect: 100-continue and waits for a 100; the
    // server answers the final response (a 20 KiB head) at once, without
    // reading the body, then closes.
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(SERVER_WAIT));
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let _ = stream.write_all(&head_of(20 * 1024));
        }
    });
    let pool = Pool::builder()
        .workers(1)
        .retry(reqpool::Retry::none())
        .build()
        .unwrap();
    let r = bounded(LIMIT, {
        let r = pool
            .post(&url)
            .header("Expect", "100-continue")
            .body("x".repeat(100_000))
            .send();
        move || r.wait()
    });
    match r {
        Ok(r) => assert_eq!((r.status(), r.body().len()), (200, 2)),
        // The server closed without reading the body: a transport error
        // that says so is fair; a panic or a parse error is not.
        Err(e) => assert!(
            matches!(e, Error::Transport { .. }) && !e.to_string().contains("header"),
            "{e:?}"
        ),
    }
}
