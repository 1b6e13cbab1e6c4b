//! The HTTP transport every HTTP-based service sends through: reqwest, with one client for
//! `http://` and one for `https://`, each built on first use.
//!
//! Why not OpenDAL's own (`opendal_http_transport_reqwest::install_default`): its one client is
//! built with `reqwest::Client::new()`, which loads the system's CA certificates (on Debian,
//! every file of /etc/ssl/certs: about 20 ms of every command, more on a cold cache) even when
//! the endpoint is plain `http://` on 127.0.0.1, and panics when there are none (a minimal
//! container without `ca-certificates`). Here a plain-HTTP request never loads a
//! certificate, and an `https://` request on a machine without any gets an error that says
//! what to install.

use std::sync::OnceLock;

use opendal::{Buffer, ErrorKind, HttpBody, HttpTransport, HttpTransporter};
use opendal_http_transport_reqwest::ReqwestTransport;

/// How the transport's own errors begin (`build::describe` shows them as they are).
pub const SETUP_FAILED: &str = "cannot set up";

/// Redirects followed, at most (reqwest's own default).
const MAX_REDIRECTS: usize = 10;

/// Sends `http://` requests through a client without TLS roots and `https://` ones through a
/// client that checks certificates against the system's store; each built once, when first
/// needed.
#[derive(Default)]
pub struct SchemeTransport {
    plain: OnceLock<Result<ReqwestTransport, String>>,
    tls: OnceLock<Result<ReqwestTransport, String>>,
}

impl SchemeTransport {
    /// Installs it as the process-wide transport (first installed wins, so this must run
    /// before any operator sends a request).
    pub fn install() {
        HttpTransporter::install_default(Self::default());
    }

    fn client(&self, https: bool) -> opendal::Result<&ReqwestTransport> {
        let built = if https {
            self.tls.get_or_init(|| {
                reqwest::Client::builder()
                    .build()
                    .map(ReqwestTransport::new)
                    .map_err(|e| tls_error(&e))
            })
        } else {
            self.plain.get_or_init(|| {
                // Never used for TLS (an https redirect stops with an error below), so no
                // roots: nothing is read from the system's certificate store.
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("{SETUP_FAILED} the HTTP client: {e}"))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                reqwest::Client::builder()
                    .tls_backend_preconfigured(tls)
                    .redirect(reqwest::redirect::Policy::custom(plain_redirect))
                    .build()
                    .map(ReqwestTransport::new)
                    .map_err(|e| format!("{SETUP_FAILED} the HTTP client: {e}"))
            })
        };
        built
            .as_ref()
            .map_err(|m| opendal::Error::new(ErrorKind::ConfigInvalid, m.clone()))
    }
}

impl HttpTransport for SchemeTransport {
    async fn fetch(&self, req: http::Request<Buffer>) -> opendal::Result<http::Response<HttpBody>> {
        let https = req.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
        self.client(https)?.fetch(req).await
    }
}

/// Follows redirects between plain-HTTP addresses; one to `https://` is an error naming the
/// address to use instead (the plain client has no certificates to check it with).
fn plain_redirect(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    if attempt.url().scheme() == "https" {
        let to = attempt.url().to_string();
        attempt.error(format!(
            "the server redirects to {to}: use an https:// endpoint"
        ))
    } else if attempt.previous().len() >= MAX_REDIRECTS {
        attempt.error("too many redirects")
    } else {
        attempt.follow()
    }
}

/// The one line for a TLS client that cannot be built, which on Linux means no usable CA
/// certificates in the system's store.
fn tls_error(e: &reqwest::Error) -> String {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    format!(
        "{SETUP_FAILED} HTTPS: {cause} (install the system's CA certificates, e.g. Debian's ca-certificates package)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_client_builds_without_reading_certificates() {
        let t = SchemeTransport::default();
        assert!(t.client(false).is_ok());
        // Built once: the second call hands out the same client.
        let a = t.client(false).unwrap() as *const _;
        let b = t.client(false).unwrap() as *const _;
        assert_eq!(a, b);
        assert!(
            t.tls.get().is_none(),
            "the TLS client was built for a plain request"
        );
    }
}
