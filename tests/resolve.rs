//! Name resolution under the request's limit: a resolver that never
//! answers holds a resolver thread, not a worker, and the request fails
//! with a `Resolve` timeout at its limit, on every way in.

mod common;

use common::*;
use reqpool::{Phase, Pool};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A DNS query for `host` (type A), as a stub resolver sends it.
fn query(host: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in host.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// A name server on 127.0.0.1 that takes queries and never answers, and
/// a lookup that asks it as a stub resolver does (waiting up to 10 s, as
/// glibc's 5 s times its attempts), for this test process only.
fn black_hole() -> (
    UdpSocket,
    impl Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
) {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = server.local_addr().unwrap();
    let lookup = move |host: &str, _port: u16| {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.set_read_timeout(Some(SERVER_WAIT))?;
        s.send_to(&query(host), at)?;
        let mut buf = [0u8; 512];
        s.recv(&mut buf)?;
        Err(std::io::Error::other("no answer"))
    };
    (server, lookup)
}

#[test]
fn a_resolver_that_never_answers_is_a_resolve_timeout_at_the_limit_on_every_way_in() {
    let (_dns, lookup) = black_hole();
    let limit = Duration::from_millis(300);
    let (pool, errors) = pool_with(Pool::builder().workers(2).timeout(limit).resolver(lookup));
    let mut worst = Duration::ZERO;
    for path in PATHS {
        let call = Call::get("http://stuck.invalid:8080/x").timeout(limit);
        let t0 = Instant::now();
        let outcome = through(&pool, &errors, path, &call);
        let r = bounded(LIMIT, outcome);
        let took = t0.elapsed();
        let e = r.expect_err("nothing resolves");
        let resolve =
            e.timeout_phase() == Some(Phase::Resolve) || e.to_string().contains("resolve");
        assert!(resolve, "{path:?}: {e}");
        assert!(!e.maybe_sent(), "{path:?}: {e}");
        worst = worst.max(took.saturating_sub(limit));
        eprintln!("{path:?}: {e} after {took:?}");
    }
    eprintln!("worst: the limit + {worst:?}");
    assert!(
        worst < Duration::from_millis(250),
        "{worst:?} past the limit"
    );
}

#[test]
fn a_stuck_resolver_holds_no_worker_and_answers_are_kept() {
    let (_dns, stuck) = black_hole();
    let server = Server::start();
    let port = server.addr.port();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let pool = Pool::builder()
        .workers(2)
        .timeout(Duration::from_millis(300))
        .resolver(move |host, p| {
            if host == "stuck.invalid" {
                return stuck(host, p);
            }
            c.fetch_add(1, Ordering::SeqCst);
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], p))])
        })
        .build()
        .unwrap();
    // A name: looked up once, then kept.
    let url = format!("http://api.test:{port}/json");
    for _ in 0..3 {
        let p = pool.get(&url).send();
        bounded(LIMIT, move || p.wait()).unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Ten lookups stuck: every resolver thread is held, no worker is; a
    // kept name and an address still go.
    let stuck: Vec<_> = (0..10)
        .map(|_| pool.get("http://stuck.invalid:8080/x").send())
        .collect();
    let ip = pool.get(&server.url("/json")).send();
    let kept = pool.get(&url).send();
    bounded(LIMIT, move || (ip.wait(), kept.wait()))
        .0
        .expect("a request to an address goes");
    for r in bounded(LIMIT, move || reqpool::wait_all(stuck)) {
        assert_eq!(r.unwrap_err().timeout_phase(), Some(Phase::Resolve));
    }
}
