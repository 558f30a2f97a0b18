//! The server of the side-by-side benches: a tokio server in the bench's
//! own process (the peers run in child processes, so their CPU and memory
//! are theirs alone) that holds every keep-alive connection as a task,
//! reads each request with its body (`Content-Length`), waits `hold`, and
//! answers `{"ok":true}` (`GET /download`: 256 KiB). A listen backlog of 65,535 (capped by the
//! kernel's `somaxconn`) takes 10,000 connects at once.

use std::time::Duration;

/// Starts the server; returns its base URL (`http://127.0.0.1:port`).
pub(crate) fn start(hold: Duration) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let listener = socket.listen(65_535).unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                tokio::spawn(serve(s, hold));
            }
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

/// The body of `GET /download`.
pub(crate) const DOWNLOAD: usize = 256 * 1024;

async fn serve(mut s: tokio::net::TcpStream, hold: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // The head.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        // The body.
        while buf.len() < end + len {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
        buf.drain(..end + len);
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
        // `GET /download`: 256 KiB of body, to read through the buffers.
        if head.starts_with("get /download") {
            let body = vec![b'x'; DOWNLOAD];
            let h = format!("HTTP/1.1 200 OK\r\ncontent-length: {DOWNLOAD}\r\n\r\n");
            if s.write_all(h.as_bytes()).await.is_err() || s.write_all(&body).await.is_err() {
                return;
            }
            continue;
        }
        let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
        if s.write_all(reply).await.is_err() {
            return;
        }
    }
}
