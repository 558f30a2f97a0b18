//! TLS settings of a pool: extra roots (every certificate of a bundle),
//! the platform's trust store, a client certificate, the provider.

use crate::error::Error;
use std::fmt;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};

/// What the builder was told about TLS; checked by `build()`.
#[derive(Default)]
pub(crate) struct Tls {
    roots: Vec<Certificate<'static>>,
    /// Mistakes found while reading what was given, reported by `build()`.
    errors: Vec<String>,
    pub(crate) only_given: bool,
    pub(crate) platform: bool,
    pub(crate) native: bool,
    client: Option<ClientCert>,
}

/// Every certificate in `pem`, and what went wrong reading it.
fn certs(pem: &[u8], what: &str) -> Result<Vec<Certificate<'static>>, String> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{what}: not a valid PEM bundle: {e}")),
        }
    }
    if out.is_empty() {
        return Err(format!("{what}: no certificate in it"));
    }
    Ok(out)
}

impl Tls {
    pub(crate) fn add_roots_pem(&mut self, pem: &[u8], what: &str) {
        match certs(pem, what) {
            Ok(c) => self.roots.extend(c),
            Err(e) => self.errors.push(e),
        }
    }

    pub(crate) fn add_roots_file(&mut self, path: &std::path::Path) {
        let what = format!("root certificates {}", path.display());
        match std::fs::read(path) {
            Ok(pem) => self.add_roots_pem(&pem, &what),
            Err(e) => self.errors.push(format!("{what}: {e}")),
        }
    }

    pub(crate) fn set_client_cert(&mut self, chain_pem: &[u8], key_pem: &[u8]) {
        let chain = match certs(chain_pem, "client certificate") {
            Ok(c) => c,
            Err(e) => return self.errors.push(e),
        };
        // The key's own bytes are never put into a message.
        match PrivateKey::from_pem(key_pem) {
            Ok(key) => self.client = Some(ClientCert::new_with_certs(&chain, key)),
            Err(_) => self
                .errors
                .push("client key: not a PEM private key".to_string()),
        }
    }

    /// The TLS configuration to use, or None to keep the default (or the
    /// caller's agent's).
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for a bundle that could not be read, or a setting
    /// whose crate feature is off.
    pub(crate) fn build(&self) -> Result<Option<TlsConfig>, Error> {
        if let Some(e) = self.errors.first() {
            return Err(Error::usage(e.clone()));
        }
        if self.platform && !cfg!(feature = "platform-verifier") {
            return Err(Error::usage(
                "tls_platform_roots needs the crate feature `platform-verifier`",
            ));
        }
        if self.native && !cfg!(feature = "native-tls") {
            return Err(Error::usage(
                "tls_native needs the crate feature `native-tls`",
            ));
        }
        if self.platform && !self.roots.is_empty() {
            return Err(Error::usage(
                "tls_platform_roots and extra root certificates cannot be combined",
            ));
        }
        if self.roots.is_empty() && !self.platform && !self.native && self.client.is_none() {
            if self.only_given {
                return Err(Error::usage(
                    "tls_only_given_roots without any root certificate given",
                ));
            }
            return Ok(None);
        }
        let roots = if self.platform {
            RootCerts::PlatformVerifier
        } else if self.roots.is_empty() {
            RootCerts::WebPki
        } else {
            let mut all: Vec<Certificate<'static>> = Vec::new();
            if !self.only_given {
                all.extend(
                    webpki_root_certs::TLS_SERVER_ROOT_CERTS
                        .iter()
                        .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
                );
            }
            all.extend(self.roots.iter().cloned());
            RootCerts::new_with_certs(&all)
        };
        let provider = if self.native {
            TlsProvider::NativeTls
        } else {
            TlsProvider::Rustls
        };
        Ok(Some(
            TlsConfig::builder()
                .provider(provider)
                .root_certs(roots)
                .client_cert(self.client.clone())
                .build(),
        ))
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("extra_roots", &self.roots.len())
            .field("only_given", &self.only_given)
            .field("platform", &self.platform)
            .field("native", &self.native)
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}
