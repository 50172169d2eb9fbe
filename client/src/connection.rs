//! How the client reaches a server: https off loopback (plain http only to 127.0.0.0/8, ::1
//! and localhost unless told otherwise), a private CA's certificate where the server's is
//! self-signed, a bearer token, no redirects (an answer from elsewhere is not the server's),
//! and time limits.

use crate::ClientError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Connection settings: the config file's `"connection"` object (`ca_cert`), and flags.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// PEM certificate of a CA to trust for the server's certificate (a private CA or a
    /// self-signed server), beside the system's roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Bearer token for a server started with `--api-tokens` (`--token`, or the environment
    /// variable `HE_API_TOKEN`; never read from or written to the config file).
    #[serde(skip)]
    pub token: Option<String>,
    /// Allow plain http to an address off loopback (`--insecure-http`).
    #[serde(skip)]
    pub insecure_http: bool,
}

/// Whether a host is this machine.
fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Time to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(5);

/// Time a whole exchange may take (uploads and computations of deep networks included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);

impl Connection {
    /// The HTTP client for `address`, after checking the address against these settings.
    pub fn client(&self, address: &str) -> Result<reqwest::Client, ClientError> {
        let url = reqwest::Url::parse(address).map_err(|e| ClientError::Address {
            url: address.into(),
            reason: e.to_string(),
        })?;
        let host = url.host().ok_or_else(|| ClientError::Address {
            url: address.into(),
            reason: "no host".into(),
        })?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) || self.insecure_http => {}
            "http" => {
                return Err(ClientError::PlainHttp {
                    url: address.into(),
                })
            }
            other => {
                return Err(ClientError::Address {
                    url: address.into(),
                    reason: format!("scheme {other:?}; http or https"),
                })
            }
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // Idle connections are dropped before the server's header timeout (10 s by
            // default) closes them, so a request is never sent down a closing connection.
            .pool_idle_timeout(POOL_IDLE)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path).map_err(|e| ClientError::CaCert {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ClientError::CaCert {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            builder = builder.add_root_certificate(cert);
        }
        if let Some(token) = &self.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::Address {
                    url: address.into(),
                    reason: "the token is not printable ASCII".into(),
                })?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        builder.build().map_err(|source| ClientError::Connect {
            url: address.into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_unless_told() {
        let c = Connection::default();
        for ok in [
            "http://127.0.0.1:8000",
            "http://127.8.0.1",
            "http://localhost:1",
            "http://[::1]:80",
            "https://example.org",
        ] {
            assert!(c.client(ok).is_ok(), "{ok}");
        }
        for (bad, plain) in [
            ("http://10.0.0.2:8000", true),
            ("http://example.org", true),
            ("ftp://127.0.0.1", false),
            ("not a url", false),
        ] {
            let e = c.client(bad).unwrap_err();
            assert_eq!(
                matches!(e, ClientError::PlainHttp { .. }),
                plain,
                "{bad}: {e}"
            );
        }
        let told = Connection {
            insecure_http: true,
            ..Default::default()
        };
        assert!(told.client("http://10.0.0.2:8000").is_ok());
        let missing = Connection {
            ca_cert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(matches!(
            missing.client("https://example.org"),
            Err(ClientError::CaCert { .. })
        ));
    }
}
