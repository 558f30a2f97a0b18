//! TLS for tests: a private CA that signs 127.0.0.1 and localhost, a TLS
//! server in front of the routes, and a plain ureq agent that trusts it.

use super::*;

/// A private CA and a certificate for 127.0.0.1 and `localhost` signed by
/// it, made at test time.
pub struct TestCa {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "reqpool test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            server: server_config(vec![cert.der().clone(), ca.der().clone()], &key),
        }
    }
}

impl TestCa {
    /// What `openssl req -x509` (and `uvicorn --ssl-certfile` users) make:
    /// one self-signed certificate for 127.0.0.1, marked as a CA, used as
    /// the server's own. `ca_pem` is that certificate.
    pub fn self_signed_dev() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            ca_pem: cert.pem(),
            server: server_config(vec![cert.der().clone()], &key),
        }
    }
}

/// A rustls server presenting `chain` with `key`.
fn server_config(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: &rcgen::KeyPair,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            chain,
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    Arc::new(server)
}

/// Handshakes a TLS server saw, by kind.
#[derive(Default)]
pub struct Handshakes {
    pub full: AtomicUsize,
    pub resumed: AtomicUsize,
}

/// An HTTPS server: the same routes and handlers as `Server`, over TLS,
/// closing each connection after `max_requests` (connection recycling).
pub struct TlsServer {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub handshakes: Arc<Handshakes>,
}

impl TlsServer {
    pub fn start(
        ca: &TestCa,
        max_requests: Option<usize>,
        handler: impl Fn(&Req, &Shared) -> Reply + Send + Sync + 'static,
    ) -> TlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let handshakes = Arc::new(Handshakes::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let config = ca.server.clone();
        let (sh, hs) = (shared.clone(), handshakes.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                sh.connections.fetch_add(1, Ordering::SeqCst);
                let (sh, hs, handler, config) =
                    (sh.clone(), hs.clone(), handler.clone(), config.clone());
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(SERVER_WAIT));
                    let _ = stream.set_nodelay(true);
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let tls = rustls::StreamOwned::new(conn, stream);
                    let mut reader = serve(tls, &sh, &*handler, max_requests);
                    let tls = reader.get_mut();
                    match tls.conn.handshake_kind() {
                        Some(rustls::HandshakeKind::Resumed) => {
                            hs.resumed.fetch_add(1, Ordering::SeqCst);
                        }
                        Some(_) => {
                            hs.full.fetch_add(1, Ordering::SeqCst);
                        }
                        None => {}
                    }
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        TlsServer {
            addr,
            shared,
            handshakes,
        }
    }

    /// `https://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{}", self.addr, path)
    }
}

/// A plain ureq agent that trusts `ca` through `provider`, keeps `idle`
/// idle connections per host and uses no proxy: the hand-rolled side of
/// the TLS comparisons.
pub fn tls_agent(ca: &TestCa, provider: ureq::tls::TlsProvider, idle: usize) -> ureq::Agent {
    let cert = ureq::tls::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap();
    ureq::Agent::config_builder()
        .proxy(None)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(provider)
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
                .build(),
        )
        .max_idle_connections_per_host(idle)
        .build()
        .into()
}
