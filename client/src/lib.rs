//! The client: key store on disk, the REST calls, and the compute loop — quantize and
//! batch-encode images, encrypt (seeded) under every plaintext modulus, send each encrypted
//! segment to the server, and between segments decrypt, recombine (CRT), measure the noise
//! budget, rescale and re-encrypt. The secret key never leaves this process.
#![warn(missing_docs)]

mod http;
pub use http::HttpTransport;

use he_layers::crypto::{BfvParameters, Ciphertext, PublicKey, RelinearizationKey, SecretKey};
use he_layers::model::quantize;
use he_layers::plan::{LayoutKind, SchemeKind, PROTOCOL_VERSION};
use he_layers::protocol::{
    ComputeRequest, ComputeResponse, EncryptionParameters, ErrorBody, KeysResponse, ModelConfig,
    ModelInfo, Plan, QuantizationConfig, Runs,
};
use he_layers::tensor::{FloatTensor, IntTensor};
use indicatif::{ProgressBar, ProgressStyle};
use net_builder::session::{
    tensor_info, Progress, SegmentReport, Session, SessionError, SessionPlan, Stage,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything that can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A config or key file is malformed.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached.
    #[error("cannot reach the server at {0}: {1}")]
    Connect(String, String),
    /// The server answered with an error.
    #[error("server error {status} ({kind}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Error kind.
        kind: String,
        /// Error message.
        message: String,
    },
    /// An answer that does not follow the protocol.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// Cryptographic failure (wrong keys, …).
    #[error("{0}")]
    Crypto(String),
    /// The pipeline refused or failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |e| ClientError::Io(path.display().to_string(), e)
}

/// `client compute`'s configuration file (PyCrCNN's keys accepted: `m`, `p`, `sec` inside the
/// parameters, `rencrypt_positions`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Server base URL, e.g. `http://127.0.0.1:8000`.
    pub address: String,
    /// Model name on the server.
    pub net: String,
    /// Encryption parameters.
    pub encryption_parameters: EncryptionParameters,
    /// Quantization; default: inputs × 2^4, weight precision chosen by the server.
    #[serde(default = "default_quantization")]
    pub quantization: QuantizationConfig,
    /// Layers to run, `[start, end)`; default: the whole encryptable prefix.
    #[serde(default)]
    pub layers: Option<[usize; 2]>,
    /// Layers after which the client re-encrypts.
    #[serde(default, alias = "rencrypt_positions")]
    pub reencrypt_positions: Vec<usize>,
    /// A local copy of the model (ONNX or pickle) to run a plaintext-only tail after
    /// decryption; without it the output is the end of the encryptable prefix.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// The scheme (`"bfv"`, the default).
    #[serde(default)]
    pub scheme: SchemeKind,
    /// The layout (`"batch"`, the default).
    #[serde(default)]
    pub layout: LayoutKind,
}

fn default_quantization() -> QuantizationConfig {
    QuantizationConfig {
        input_scale_bits: 4,
        weight_bits: None,
    }
}

impl ClientConfig {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        serde_json::from_str(&text)
            .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))
    }

    /// The model configuration sent to the server.
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            net: self.net.clone(),
            encryption_parameters: self.encryption_parameters.clone(),
            quantization: self.quantization.clone(),
            reencrypt_positions: self.reencrypt_positions.clone(),
            scheme: self.scheme,
            layout: self.layout,
        }
    }
}

/// The keys for one plaintext modulus.
pub struct ComponentKeys {
    /// The parameter set.
    pub params: Arc<BfvParameters>,
    /// Secret key.
    pub sk: SecretKey,
    /// Public key.
    pub pk: PublicKey,
    /// Relinearization key.
    pub rk: RelinearizationKey,
}

/// A client's keys: one set per plaintext modulus of its parameters.
pub struct KeySet {
    /// The parameters they were made for.
    pub encryption_parameters: EncryptionParameters,
    /// One entry per plaintext modulus.
    pub components: Vec<ComponentKeys>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySetFile {
    encryption_parameters: EncryptionParameters,
    components: Vec<ComponentFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentFile {
    plain_modulus: u64,
    fingerprint: String,
    dir: String,
}

/// Writes a file readable and writable by the owner only (0600 on Unix), created that way.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(path))?;
    }
    f.write_all(bytes).map_err(io(path))
}

impl KeySet {
    /// Generates keys for every plaintext modulus (refuses insecure parameters).
    pub fn generate(params: &EncryptionParameters) -> Result<Self, ClientError> {
        let sets = params
            .resolve()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let components = sets
            .into_iter()
            .map(|p| {
                let sk = SecretKey::generate(&p);
                let pk = PublicKey::generate(&sk);
                let rk = RelinearizationKey::generate(&sk);
                ComponentKeys {
                    params: p,
                    sk,
                    pk,
                    rk,
                }
            })
            .collect();
        Ok(Self {
            encryption_parameters: params.clone(),
            components,
        })
    }

    /// Saves to a folder: `keyset.json`, and per modulus `t<t>/` with `parameters.bin`,
    /// `secret.key` (mode 0600), `public.key`, `relin.key`.
    pub fn save(&self, dir: &Path) -> Result<(), ClientError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut files = Vec::new();
        for c in &self.components {
            let sub = format!("t{}", c.params.plain_modulus());
            let d = dir.join(&sub);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            write_private(&d.join("secret.key"), &c.sk.to_bytes())?;
            for (name, bytes) in [
                ("parameters.bin", c.params.to_bytes()),
                ("public.key", c.pk.to_bytes()),
                ("relin.key", c.rk.to_bytes()),
            ] {
                std::fs::write(d.join(name), bytes).map_err(io(&d.join(name)))?;
            }
            files.push(ComponentFile {
                plain_modulus: c.params.plain_modulus(),
                fingerprint: c.params.fingerprint_hex(),
                dir: sub,
            });
        }
        let meta = KeySetFile {
            encryption_parameters: self.encryption_parameters.clone(),
            components: files,
        };
        let json =
            serde_json::to_vec_pretty(&meta).map_err(|e| ClientError::Config(e.to_string()))?;
        std::fs::write(dir.join("keyset.json"), json).map_err(io(&dir.join("keyset.json")))
    }

    /// Loads a saved key set, checking every file against its parameter set.
    pub fn load(dir: &Path) -> Result<Self, ClientError> {
        let meta_path = dir.join("keyset.json");
        let text = std::fs::read_to_string(&meta_path).map_err(io(&meta_path))?;
        let meta: KeySetFile = serde_json::from_str(&text)
            .map_err(|e| ClientError::Config(format!("{}: {e}", meta_path.display())))?;
        let mut components = Vec::new();
        for c in meta.components {
            if c.dir.contains('/') || c.dir.contains("..") {
                return Err(ClientError::Config(format!(
                    "{}: bad folder {:?}",
                    meta_path.display(),
                    c.dir
                )));
            }
            let d = dir.join(&c.dir);
            let read = |name: &str| -> Result<Vec<u8>, ClientError> {
                std::fs::read(d.join(name)).map_err(io(&d.join(name)))
            };
            let bad = |name: &str| {
                let file = d.join(name).display().to_string();
                move |e: he_layers::crypto::SerialError| ClientError::Config(format!("{file}: {e}"))
            };
            let params = BfvParameters::from_bytes(&read("parameters.bin")?)
                .map_err(bad("parameters.bin"))?;
            if params.plain_modulus() != c.plain_modulus
                || params.fingerprint_hex() != c.fingerprint
            {
                return Err(ClientError::Config(format!(
                    "{}: parameters do not match keyset.json",
                    d.display()
                )));
            }
            let sk =
                SecretKey::from_bytes(&read("secret.key")?, &params).map_err(bad("secret.key"))?;
            let pk =
                PublicKey::from_bytes(&read("public.key")?, &params).map_err(bad("public.key"))?;
            let rk = RelinearizationKey::from_bytes(&read("relin.key")?, &params)
                .map_err(bad("relin.key"))?;
            components.push(ComponentKeys { params, sk, pk, rk });
        }
        Ok(Self {
            encryption_parameters: meta.encryption_parameters,
            components,
        })
    }

    /// Whether the keys fit these parameters (same moduli, same fingerprints).
    pub fn matches(&self, params: &EncryptionParameters) -> Result<bool, ClientError> {
        let sets = params
            .resolve()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(sets.len() == self.components.len()
            && sets
                .iter()
                .zip(&self.components)
                .all(|(a, b)| a.fingerprint() == b.params.fingerprint()))
    }
}

/// The REST API.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

async fn error_of(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => ClientError::Server {
            status,
            kind: b.error.kind,
            message: b.error.message,
        },
        Err(_) => ClientError::Server {
            status,
            kind: "unknown".into(),
            message: text.chars().take(500).collect(),
        },
    }
}

impl Api {
    /// A client for a server base URL.
    pub fn new(address: &str) -> Result<Self, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(3600))
            .build()
            .map_err(|e| ClientError::Connect(address.into(), e.to_string()))?;
        Ok(Self {
            http,
            base: address.trim_end_matches('/').to_string(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::Connect(self.base.clone(), e.to_string()))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(error_of(resp).await)
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<serde_json::Value, ClientError> {
        Self::json(self.send(self.http.get(self.url("/health"))).await?).await
    }

    /// `GET /models`.
    pub async fn models(&self) -> Result<Vec<ModelInfo>, ClientError> {
        Self::json(self.send(self.http.get(self.url("/models"))).await?).await
    }

    /// `POST /plan`. A server speaking another protocol version is told apart from a
    /// malformed answer.
    pub async fn plan(&self, cfg: &ModelConfig) -> Result<Plan, ClientError> {
        let body = serde_json::to_vec(cfg).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self
            .send(
                self.http
                    .post(self.url("/plan"))
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        // The version first (a Value would round the plan's 128-bit intervals).
        #[derive(Deserialize)]
        struct Version {
            protocol: Option<u32>,
        }
        let protocol = serde_json::from_slice::<Version>(&bytes)
            .ok()
            .and_then(|v| v.protocol);
        if protocol != Some(PROTOCOL_VERSION) {
            return Err(ClientError::Protocol(format!(
                "the server speaks protocol {}, this client {PROTOCOL_VERSION}: use a client and \
                 server of the same release",
                protocol.map_or("1 (or unknown)".to_string(), |p| p.to_string())
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("plan: {e}")))
    }

    /// Makes sure the server holds these public keys: asks `GET /keys/{id}` with the key id
    /// computed locally and uploads (`POST /keys`, public material only) only if it does not.
    /// Returns the key id and the bytes uploaded (0 when the server had them).
    pub async fn upload_keys(
        &self,
        keys: &ComponentKeys,
    ) -> Result<(KeysResponse, usize), ClientError> {
        let parts = [
            ("parameters", keys.params.to_bytes()),
            ("public_key", keys.pk.to_bytes()),
            ("relinearization_key", keys.rk.to_bytes()),
        ];
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
            .map_err(|e| ClientError::Connect(self.base.clone(), e.to_string()))?;
        if held.status().is_success() {
            return Ok((Self::json(held).await?, 0));
        }
        let bytes: usize = parts.iter().map(|(_, b)| b.len()).sum();
        let mut form = reqwest::multipart::Form::new();
        for (name, b) in parts {
            form = form.part(name, reqwest::multipart::Part::bytes(b));
        }
        let resp = self
            .send(self.http.post(self.url("/keys")).multipart(form))
            .await?;
        Ok((Self::json(resp).await?, bytes))
    }

    /// `POST /compute`: returns the answer, the ciphertexts and the bytes received.
    pub async fn compute(
        &self,
        req: &ComputeRequest,
        params: &Arc<BfvParameters>,
        cts: impl Into<bytes::Bytes>,
    ) -> Result<(ComputeResponse, Vec<Ciphertext>, usize), ClientError> {
        let json = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
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
        let boundary =
            multer::parse_boundary(&ctype).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let received = body.len();
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
        let mut mp = multer::Multipart::new(stream, boundary);
        let (mut result, mut binary) = (None, None);
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
        {
            let name = field.name().unwrap_or_default().to_string();
            let data = field
                .bytes()
                .await
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            match name.as_str() {
                "result" => result = Some(data),
                "ciphertexts" => binary = Some(data),
                _ => {}
            }
        }
        let result: ComputeResponse = serde_json::from_slice(
            &result.ok_or_else(|| ClientError::Protocol("no result part".into()))?,
        )
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let binary = binary.ok_or_else(|| ClientError::Protocol("no ciphertexts part".into()))?;
        // Sanitized answers come modulus-switched to fewer primes: the same parameter set at
        // the level the server names (any level of ours; the fingerprint is checked too).
        let level = params
            .at_level(result.level)
            .map_err(|e| ClientError::Protocol(format!("answer level: {e}")))?;
        let cts = Ciphertext::batch_from_bytes(&binary, &level, result.ciphertexts)
            .map_err(|e| ClientError::Protocol(format!("ciphertexts: {e}")))?;
        Ok((result, cts, received))
    }
}

/// Images and where they came from.
pub struct Images {
    /// The images, `[C, H, W]` each, values in [0, 1].
    pub tensor: FloatTensor,
    /// A name per image.
    pub names: Vec<String>,
    /// True labels, when known.
    pub labels: Vec<Option<usize>>,
}

/// Loads PNG files.
pub fn load_pngs(paths: &[PathBuf]) -> Result<Images, ClientError> {
    let mut shape = None;
    let mut data = Vec::new();
    for p in paths {
        let (s, px) =
            net_builder::data::png_image(p).map_err(|e| ClientError::Config(e.to_string()))?;
        if shape.get_or_insert(s.clone()) != &s {
            return Err(ClientError::Config(format!(
                "{}: shape {s:?} differs from the first image",
                p.display()
            )));
        }
        data.push(px);
    }
    let shape = shape.ok_or_else(|| ClientError::Config("no images given".into()))?;
    Ok(Images {
        tensor: FloatTensor::from_images(shape, &data)
            .ok_or_else(|| ClientError::Config("inconsistent images".into()))?,
        names: paths.iter().map(|p| p.display().to_string()).collect(),
        labels: vec![None; paths.len()],
    })
}

/// Loads images (and labels, from the sibling `…labels-idx1…` file if present) from an IDX
/// test set.
pub fn load_test_set(path: &Path, index: usize, count: usize) -> Result<Images, ClientError> {
    let tensor = net_builder::data::idx_images(path, index, count)
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let name = path.display().to_string();
    let label_path = PathBuf::from(name.replace("images-idx3", "labels-idx1"));
    let labels = if label_path != path && label_path.exists() {
        net_builder::data::idx_labels(&label_path, index, count)
            .map_err(|e| ClientError::Config(e.to_string()))?
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None; count]
    };
    Ok(Images {
        tensor,
        names: (index..index + count)
            .map(|i| format!("{name}#{i}"))
            .collect(),
        labels,
    })
}

/// One image's result.
#[derive(Clone, Debug, Serialize)]
pub struct ImageResult {
    /// Where it came from.
    pub source: String,
    /// Predicted class index.
    pub label: usize,
    /// Predicted class name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// True label, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_label: Option<usize>,
    /// The output values (integers / scale).
    pub logits: Vec<f64>,
}

/// The output of `client compute`.
#[derive(Clone, Debug, Serialize)]
pub struct ComputeReport {
    /// Model.
    pub net: String,
    /// Plaintext moduli used.
    pub plain_moduli: Vec<u64>,
    /// Weight precision used.
    pub weight_bits: u32,
    /// Per image.
    pub images: Vec<ImageResult>,
    /// Per encrypted segment.
    pub segments: Vec<SegmentReport>,
    /// Bytes of public keys uploaded (0 if the server had them).
    pub keys_upload_bytes: usize,
    /// Whole run, ms.
    pub total_ms: f64,
    /// Whether a plaintext tail ran on the client.
    pub plaintext_tail: bool,
    /// The integers at the end of the encrypted layers, per image (for exact checks).
    #[serde(skip)]
    pub integers: Option<IntTensor>,
}

/// Progress bars for a session: one per segment and stage, counting plaintext moduli.
struct Bars {
    quiet: bool,
    current: std::sync::Mutex<Option<((usize, Stage), ProgressBar)>>,
}

impl Bars {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            current: std::sync::Mutex::new(None),
        }
    }

    fn update(&self, p: Progress) {
        if self.quiet {
            return;
        }
        let Ok(mut cur) = self.current.lock() else {
            return;
        };
        let key = (p.segment, p.stage);
        if cur.as_ref().map(|(k, _)| *k) != Some(key) {
            if let Some((_, old)) = cur.take() {
                old.finish_and_clear();
            }
            let pb = ProgressBar::new(p.total as u64);
            pb.set_style(
                ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len} moduli {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let stage = match p.stage {
                Stage::Encrypt => "encrypt",
                Stage::Compute => "compute",
                Stage::Decrypt => "decrypt",
            };
            pb.set_message(format!("segment {}: {stage}", p.segment));
            *cur = Some((key, pb));
        }
        if let Some((_, pb)) = cur.as_ref() {
            pb.set_position(p.done as u64);
        }
    }

    fn finish(&self) {
        if let Ok(mut cur) = self.current.lock() {
            if let Some((_, pb)) = cur.take() {
                pb.finish_and_clear();
            }
        }
    }
}

/// Runs a configuration on images: keys uploaded once per key id, one `/compute` per segment
/// and plaintext modulus, re-encryption between segments. Progress goes to stderr unless
/// `quiet`.
pub async fn run_compute(
    config: &ClientConfig,
    keys: &KeySet,
    images: &Images,
    quiet: bool,
) -> Result<ComputeReport, ClientError> {
    let started = Instant::now();
    let api = Api::new(&config.address)?;
    if !keys.matches(&config.encryption_parameters)? {
        return Err(ClientError::Config(
            "the keys were made for other encryption parameters; run `client keygen` with this config's parameters".into(),
        ));
    }
    let model_cfg = config.model_config();
    let plan = api.plan(&model_cfg).await?;
    let batch = images.tensor.batch();
    let slots = keys.components[0].params.degree();
    if batch == 0 || batch > slots {
        return Err(ClientError::Config(format!(
            "{batch} images: between 1 and N = {slots} fit one batch"
        )));
    }
    if images.tensor.shape() != plan.input.shape.as_slice() {
        return Err(ClientError::Config(format!(
            "images of shape {:?}; {} expects {:?}",
            images.tensor.shape(),
            plan.net,
            plan.input.shape
        )));
    }
    // Quantize exactly as the server's model expects.
    let x = quantize(&images.tensor, &tensor_info(&plan.input)).map_err(|e| {
        ClientError::Config(format!(
            "{e} (the model accepts [{}, {}])",
            plan.input_range[0], plan.input_range[1]
        ))
    })?;

    // Keys: uploaded once per key id (the server keeps them content-addressed).
    let mut key_ids = Vec::new();
    let mut keys_upload_bytes = 0;
    for c in &keys.components {
        let (r, b) = api.upload_keys(c).await?;
        keys_upload_bytes += b;
        key_ids.push(r.key_id);
    }

    let [first, last] = config.layers.unwrap_or([0, plan.encryptable_prefix]);
    let session_plan = SessionPlan::from_plan(&plan)?.restricted(first..last)?;
    // Overflow is predicted before anything is encrypted, for the layers this run covers.
    if let Some(l) = session_plan
        .segments
        .iter()
        .flat_map(|s| &plan.layers[s.layers.clone()])
        .find(|l| l.overflow)
    {
        return Err(ClientError::Config(format!(
            "layer {} ({}) could overflow the plaintext modulus (capacity 2^{:.1}): use larger or more plaintext moduli, a lower input_scale_bits or weight_bits, or a re-encryption position before it",
            l.index, l.name, plan.capacity_bits
        )));
    }
    let end = session_plan.segments.last().map_or(0, |s| s.layers.end);
    let moduli = plan.plain_moduli.clone();
    let session = Session::new(
        session_plan,
        keys.components.iter().map(|c| &c.sk).collect(),
    )?;
    let transport = HttpTransport::new(
        api.clone(),
        model_cfg,
        plan.plan_id.clone(),
        key_ids,
        keys.components.iter().map(|c| c.params.clone()).collect(),
    );
    let bars = Bars::new(quiet);
    let run = session.run(&transport, &x, &|p| bars.update(p)).await?;
    bars.finish();
    let x = run.output;
    let cur_info = run.output_info;
    let seg_results = run.segments;

    // Outputs: integers / scale, then a plaintext tail if the model is at hand.
    let integers = x.clone();
    let mut out = x.map(|&v| v as f64 / cur_info.scale);
    let mut tail = false;
    if end == plan.encryptable_prefix && end < plan.layers.len() {
        if let Some(path) = &config.model {
            let spec = net_builder::load_model(path, &net_builder::PickleOptions::default())
                .map_err(|e| ClientError::Config(e.to_string()))?;
            let boundaries = plan.layers[..end]
                .iter()
                .filter(|l| l.runs == Runs::Reencrypt)
                .count();
            let spec_start = end - boundaries;
            let imgs: Vec<Vec<f64>> = (0..batch).map(|j| out.image(j)).collect();
            let mut shape = vec![batch];
            shape.extend(out.shape());
            let arr = ndarray_from(&shape, imgs.concat())?;
            let y = spec
                .forward(&arr, spec_start..spec.layers.len())
                .map_err(|e| ClientError::Config(e.to_string()))?;
            let per = y.len() / batch.max(1);
            let flat: Vec<f64> = y.iter().copied().collect();
            let rows: Vec<Vec<f64>> = flat.chunks(per.max(1)).map(|c| c.to_vec()).collect();
            out = FloatTensor::from_images(vec![per], &rows)
                .ok_or_else(|| ClientError::Protocol("tail output".into()))?;
            tail = true;
        }
    }
    let results = (0..batch)
        .map(|j| {
            let logits = out.image(j);
            let label = net_builder::eval::argmax(&logits);
            ImageResult {
                source: images.names.get(j).cloned().unwrap_or_default(),
                class: plan.classes.get(label).cloned(),
                label,
                true_label: images.labels.get(j).copied().flatten(),
                logits,
            }
        })
        .collect();
    Ok(ComputeReport {
        net: plan.net.clone(),
        plain_moduli: moduli,
        weight_bits: plan.weight_bits,
        images: results,
        segments: seg_results,
        keys_upload_bytes,
        total_ms: started.elapsed().as_secs_f64() * 1000.0,
        plaintext_tail: tail,
        integers: Some(integers),
    })
}

fn ndarray_from(shape: &[usize], data: Vec<f64>) -> Result<net_builder::spec::Array, ClientError> {
    net_builder::spec::array(shape, data)
        .ok_or_else(|| ClientError::Protocol("tensor shape".into()))
}
