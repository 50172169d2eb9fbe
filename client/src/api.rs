//! The REST calls.

use crate::connection::Connection;
use crate::*;
use he_layers::crypto::{compression_bits, BfvParameters, Ciphertext, CompressedCiphertext};
use he_layers::plan::PROTOCOL_VERSION;
use he_layers::protocol::{
    ComputeRequest, ComputeResponse, ErrorBody, KeysResponse, ModelConfig, ModelInfo, Plan,
};
use serde::Deserialize;
use std::sync::Arc;

/// Bytes an answer may carry beyond its ciphertexts (the JSON part and the framing).
const ANSWER_SLACK: usize = 256 << 10;

/// Reads a body, refusing it once it passes `limit` bytes.
async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
    count: usize,
) -> Result<bytes::Bytes, ClientError> {
    let too_large = || AnswerError::TooLarge { limit, count };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large().into());
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(AnswerError::Body)? {
        if buf.len() + chunk.len() > limit {
            return Err(too_large().into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// The REST API.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// Largest JSON answer read (`/plan` of a deep model is a few hundred KB).
const JSON_ANSWER_CAP: usize = 16 << 20;

/// Largest error body read.
const ERROR_BODY_CAP: usize = 64 << 10;

async fn error_of(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let text = match read_capped(resp, ERROR_BODY_CAP, 0).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => ClientError::Server {
            status,
            kind: b.error.kind,
            message: b.error.message,
            retry_after,
        },
        Err(_) => ClientError::Server {
            status,
            kind: "unknown".into(),
            message: text.chars().take(500).collect(),
            retry_after,
        },
    }
}

impl Api {
    /// A client for a server base URL, with the default connection settings (plain http to
    /// loopback only, no token, the system's roots).
    pub fn new(address: &str) -> Result<Self, ClientError> {
        Self::connect(address, &Connection::default())
    }

    /// A client for a server base URL that wants a bearer token.
    pub fn with_token(address: &str, token: &str) -> Result<Self, ClientError> {
        Self::connect(
            address,
            &Connection {
                token: Some(token.into()),
                ..Default::default()
            },
        )
    }

    /// A client for a server base URL with these connection settings.
    pub fn connect(address: &str, connection: &Connection) -> Result<Self, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            http: connection.client(address)?,
            base: address.trim_end_matches('/').to_string(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        ClientError::Connect {
            url: self.base.clone(),
            source,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(error_of(resp).await)
        }
    }

    /// A JSON answer (`part` names it in errors).
    async fn json<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
        part: &'static str,
    ) -> Result<T, ClientError> {
        let bytes = read_capped(resp, JSON_ANSWER_CAP, 0).await?;
        Ok(serde_json::from_slice(&bytes).map_err(|source| AnswerError::Json { part, source })?)
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<serde_json::Value, ClientError> {
        Self::json(
            self.send(self.http.get(self.url("/health"))).await?,
            "health",
        )
        .await
    }

    /// `GET /models`.
    pub async fn models(&self) -> Result<Vec<ModelInfo>, ClientError> {
        Self::json(
            self.send(self.http.get(self.url("/models"))).await?,
            "models",
        )
        .await
    }

    /// `POST /plan`. A server speaking another protocol version is told apart from a
    /// malformed answer.
    pub async fn plan(&self, cfg: &ModelConfig) -> Result<Plan, ClientError> {
        let body = serde_json::to_vec(cfg).map_err(encode("the model configuration"))?;
        let resp = self
            .send(
                self.http
                    .post(self.url("/plan"))
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await?;
        let bytes = read_capped(resp, JSON_ANSWER_CAP, 0).await?;
        // The version first (a Value would round the plan's 128-bit intervals).
        #[derive(Deserialize)]
        struct Version {
            protocol: Option<u32>,
        }
        let protocol = serde_json::from_slice::<Version>(&bytes)
            .ok()
            .and_then(|v| v.protocol);
        if protocol != Some(PROTOCOL_VERSION) {
            return Err(AnswerError::Version {
                server: protocol,
                client: PROTOCOL_VERSION,
            }
            .into());
        }
        Ok(
            serde_json::from_slice(&bytes).map_err(|source| AnswerError::Json {
                part: "plan",
                source,
            })?,
        )
    }

    /// Makes sure the server holds these public keys: asks `GET /keys/{id}` with the key id
    /// computed locally and uploads (`POST /keys`, public material only) only if it does not.
    /// Returns the key id and the bytes uploaded (0 when the server had them).
    pub async fn upload_keys(
        &self,
        keys: &ComponentKeys,
    ) -> Result<(KeysResponse, usize), ClientError> {
        let mut parts = vec![
            ("parameters", keys.params.to_bytes()),
            ("public_key", keys.pk.to_bytes()),
            ("relinearization_key", keys.rk.to_bytes()),
        ];
        if let Some(g) = &keys.galois {
            parts.push(("galois_keys", g.to_bytes()));
        }
        let id = he_layers::protocol::key_id(|name| {
            parts
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| b.as_slice())
        });
        let held = self
            .http
            .get(self.url(&format!("/keys/{id}")))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if held.status().is_success() {
            return Ok((Self::json(held, "keys").await?, 0));
        }
        let bytes: usize = parts.iter().map(|(_, b)| b.len()).sum();
        let parts: Vec<(&str, bytes::Bytes)> = parts
            .into_iter()
            .map(|(n, b)| (n, bytes::Bytes::from(b)))
            .collect();
        let resp = crate::retry::retrying(|| {
            let mut form = reqwest::multipart::Form::new();
            for (name, b) in &parts {
                form = form.part(
                    *name,
                    reqwest::multipart::Part::stream(reqwest::Body::from(b.clone())),
                );
            }
            self.send(self.http.post(self.url("/keys")).multipart(form))
        })
        .await?;
        Ok((Self::json(resp, "keys").await?, bytes))
    }

    /// `POST /compute` of a segment whose output takes `expect` ciphertexts: returns the
    /// answer, the ciphertexts and the bytes received. Nothing in the answer is taken on the
    /// server's word: its body is read up to what `expect` ciphertexts can take and no
    /// further, and its count, layers, level, width and fingerprint are checked before
    /// anything is decrypted.
    pub async fn compute(
        &self,
        req: &ComputeRequest,
        params: &Arc<BfvParameters>,
        cts: impl Into<bytes::Bytes>,
        expect: usize,
    ) -> Result<(ComputeResponse, Vec<Ciphertext>, usize), ClientError> {
        let json = serde_json::to_vec(req).map_err(encode("the compute request"))?;
        let form = reqwest::multipart::Form::new()
            .part("request", reqwest::multipart::Part::bytes(json))
            .part(
                "ciphertexts",
                reqwest::multipart::Part::stream(reqwest::Body::from(cts.into())),
            );
        let resp = self
            .send(self.http.post(self.url("/compute")).multipart(form))
            .await?;
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let boundary = multer::parse_boundary(&ctype).map_err(AnswerError::Multipart)?;
        // At most an unsanitized batch of `expect` at the top level, and the JSON part.
        let limit = Ciphertext::batch_len_bounds(params, expect)
            .1
            .saturating_add(ANSWER_SLACK);
        let body = read_capped(resp, limit, expect).await?;
        let received = body.len();
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
        let mut mp = multer::Multipart::new(stream, boundary);
        let (mut result, mut binary) = (None, None);
        while let Some(field) = mp.next_field().await.map_err(AnswerError::Multipart)? {
            let name = field.name().unwrap_or_default().to_string();
            let data = field.bytes().await.map_err(AnswerError::Multipart)?;
            match name.as_str() {
                "result" => result = Some(data),
                "ciphertexts" => binary = Some(data),
                _ => {}
            }
        }
        let result: ComputeResponse =
            serde_json::from_slice(&result.ok_or(AnswerError::MissingPart { part: "result" })?)
                .map_err(|source| AnswerError::Json {
                    part: "result",
                    source,
                })?;
        let binary = binary.ok_or(AnswerError::MissingPart {
            part: "ciphertexts",
        })?;
        if result.ciphertexts != expect {
            return Err(AnswerError::Count {
                expected: expect,
                found: result.ciphertexts,
            }
            .into());
        }
        if result.layers != req.layers {
            return Err(AnswerError::Layers {
                asked: req.layers,
                found: result.layers,
            }
            .into());
        }
        // Sanitized answers come modulus-switched to fewer primes: the same parameter set at
        // the level the server names (any level of ours; the fingerprint is checked too).
        let level = params
            .at_level(result.level)
            .map_err(|source| AnswerError::Level {
                level: result.level,
                source,
            })?;
        let cts = match result.compressed_bits {
            // Compressed answers are lifted back to the level's primes and decrypt as usual;
            // their width must be the one the public bound gives (a narrower one would make
            // the client expand a small body into much memory, and could not decrypt).
            Some(bits) => {
                let expected = result
                    .sanitization
                    .as_ref()
                    .and_then(|p| compression_bits(&level, p.noise_log2));
                if expected != Some(bits) {
                    return Err(AnswerError::CompressionWidth {
                        announced: bits,
                        expected,
                    }
                    .into());
                }
                CompressedCiphertext::batch_from_bytes(&binary, &level, bits, result.ciphertexts)
                    .map_err(AnswerError::Ciphertexts)?
                    .iter()
                    .map(CompressedCiphertext::decompress)
                    .collect()
            }
            None => Ciphertext::batch_from_bytes(&binary, &level, result.ciphertexts)
                .map_err(AnswerError::Ciphertexts)?,
        };
        // What the binary part holds, not only what the JSON says.
        if cts.len() != expect {
            return Err(AnswerError::Count {
                expected: expect,
                found: cts.len(),
            }
            .into());
        }
        Ok((result, cts, received))
    }
}
