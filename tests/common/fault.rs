//! A raw `TcpListener` that misbehaves on purpose: silence, a trickle,
//! a close mid-body, a reset; and a port where nothing listens.

use super::*;

/// How a fault server misbehaves on each connection.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Accepts, reads the request, never answers (holds the socket 10 s).
    Silent,
    /// Sends the status line and headers, half the body, then closes.
    CloseMidBody,
    /// Closes the connection without reading or answering (RST).
    Reset,
    /// Sends the response one byte every `ms` milliseconds.
    Trickle(u64),
    /// Sends the head after `head_ms`, then a 200-byte body one byte every
    /// `ms` milliseconds: each of ureq's phases alone is short.
    SlowBody { head_ms: u64, ms: u64 },
}

/// A raw TCP server that misbehaves. Counts connections.
pub struct FaultServer {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl FaultServer {
    pub fn start(fault: Fault) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let conns = connections.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || misbehave(stream, fault));
            }
        });
        FaultServer { addr, connections }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

fn misbehave(mut stream: TcpStream, fault: Fault) {
    let _ = stream.set_read_timeout(Some(SERVER_WAIT));
    let body = br#"{"status":"completed","count":1}"#;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    match fault {
        Fault::Reset => {
            // Linger 0 would need unsafe or a crate; closing at once without
            // reading the request makes the kernel send RST.
            drop(stream);
        }
        Fault::Silent => {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let _ = read_request(&mut reader);
            let mut buf = [0u8; 1];
            // Hold the connection until the client gives up (EOF) or 10 s.
            let _ = stream.read(&mut buf);
        }
        Fault::CloseMidBody => {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let _ = read_request(&mut reader);
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[..body.len() / 2]);
            let _ = stream.flush();
        }
        Fault::SlowBody { head_ms, ms } => {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let _ = read_request(&mut reader);
            let body = [b' '; 200];
            thread::sleep(Duration::from_millis(head_ms));
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let stop = Instant::now() + SERVER_WAIT;
            for b in body {
                if Instant::now() > stop || stream.write_all(&[b]).is_err() {
                    return;
                }
                let _ = stream.flush();
                thread::sleep(Duration::from_millis(ms));
            }
        }
        Fault::Trickle(ms) => {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let _ = read_request(&mut reader);
            let all = [head.as_bytes(), body].concat();
            let stop = Instant::now() + SERVER_WAIT;
            for b in all {
                if Instant::now() > stop || stream.write_all(&[b]).is_err() {
                    return;
                }
                let _ = stream.flush();
                thread::sleep(Duration::from_millis(ms));
            }
        }
    }
}

/// A port on 127.0.0.1 where nothing listens: port 1 (tcpmux, never in
/// use here), checked; a freed ephemeral port could be taken again by
/// another test's server in the meantime.
pub fn closed_port_url(path: &str) -> String {
    let port1 = "127.0.0.1:1".parse().unwrap();
    if TcpStream::connect_timeout(&port1, Duration::from_secs(1)).is_err() {
        return format!("http://127.0.0.1:1{path}");
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}{path}")
}
