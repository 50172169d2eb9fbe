//! Running a model encrypted: one encoded model per plaintext modulus (CRT), the client's steps
//! (encrypt, decrypt and recombine, rescale at re-encryption boundaries) and the server's step
//! (run a range of layers), composed locally. The client and the parameter tester use the same
//! pieces with a server, or a timer, in between.

use crate::build::{build_model, BuildError, BuildOptions, BuiltModel};
use crate::spec::ModelSpec;
use he_layers::crypto::{BfvParameters, Ciphertext, PublicKey, RelinearizationKey, SecretKey};
use he_layers::layers::BfvBackend;
use he_layers::model::{crt_combine, EncodedModel, ModelError};
use he_layers::tensor::{EncryptedTensor, IntTensor};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// A model encoded for several plaintext moduli of one ring (degree and ciphertext primes):
/// the same integers, each run reduced modulo its own t, recombined by CRT on the client.
#[derive(Debug)]
pub struct CrtModel {
    /// One built model per plaintext modulus, in the order of `moduli`.
    pub components: Vec<BuiltModel>,
    /// The plaintext moduli.
    pub moduli: Vec<u64>,
}

/// Builds `spec` for each plaintext modulus at `degree` (128-bit presets). Without a given
/// weight precision, the largest that fits the combined capacity is chosen once and used for
/// every component.
pub fn build_crt(
    spec: &ModelSpec,
    degree: usize,
    moduli: &[u64],
    opts: &BuildOptions,
) -> Result<CrtModel, BuildError> {
    if moduli.is_empty() {
        return Err(BuildError::Options(
            "at least one plaintext modulus is needed".into(),
        ));
    }
    let params: Vec<Arc<BfvParameters>> = moduli
        .iter()
        .map(|&t| BfvParameters::preset(degree, t))
        .collect::<Result<_, _>>()
        .map_err(|e| BuildError::Options(e.to_string()))?;
    let crt = (moduli.len() > 1).then(|| moduli.to_vec());
    let mut opts = BuildOptions {
        crt_moduli: crt,
        ..opts.clone()
    };
    let first = build_model(spec, &params[0], &opts)?;
    opts.weight_bits = Some(first.weight_bits);
    let mut components = vec![first];
    for p in &params[1..] {
        components.push(build_model(spec, p, &opts)?);
    }
    Ok(CrtModel {
        components,
        moduli: moduli.to_vec(),
    })
}

impl CrtModel {
    /// The first component's model (all share layers, scales and bounds).
    pub fn model(&self) -> &EncodedModel {
        &self.components[0].model
    }

    /// The segments the server runs ([`he_layers::plan::segments`]).
    pub fn segments(&self) -> Vec<Range<usize>> {
        he_layers::plan::segments(self.model())
    }
}

/// The client's keys for one plaintext modulus.
pub struct ClientKeys {
    /// Secret key (stays with the client).
    pub sk: SecretKey,
    /// Public key (the server encrypts fresh zeros with it).
    pub pk: PublicKey,
    /// Relinearization key (for Square).
    pub rk: RelinearizationKey,
}

impl ClientKeys {
    /// Fresh keys for a parameter set.
    pub fn generate(params: &Arc<BfvParameters>) -> Self {
        let sk = SecretKey::generate(params);
        let pk = PublicKey::generate(&sk);
        let rk = RelinearizationKey::generate(&sk);
        Self { sk, pk, rk }
    }

    /// The server-side backend these keys allow.
    pub fn backend(&self) -> BfvBackend {
        BfvBackend::new(&self.pk, Some(self.rk.clone()))
    }
}

/// Encrypts the input of the segment starting at layer `start`, once per plaintext modulus.
pub fn encrypt_components(
    crt: &CrtModel,
    keys: &[ClientKeys],
    x: &IntTensor,
    start: usize,
) -> Result<Vec<EncryptedTensor<Ciphertext>>, ModelError> {
    let info = crt.model().info_before(start);
    keys.iter()
        .map(|k| {
            EncryptedTensor::encrypt(x, info, &k.sk).map_err(|e| ModelError::Input(e.to_string()))
        })
        .collect()
}

/// Decrypts one result per plaintext modulus and recombines the exact integers by CRT.
pub fn decrypt_combine(
    crt: &CrtModel,
    keys: &[ClientKeys],
    outs: &[EncryptedTensor<Ciphertext>],
) -> Result<IntTensor, ModelError> {
    let parts: Vec<IntTensor> = outs
        .iter()
        .zip(keys)
        .map(|(o, k)| {
            o.decrypt(&k.sk)
                .map_err(|e| ModelError::Input(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let first = &parts[0];
    let mut data = Vec::with_capacity(first.data().len());
    let mut residues = vec![0u64; parts.len()];
    for i in 0..first.data().len() {
        for ((r, p), &t) in residues.iter_mut().zip(&parts).zip(&crt.moduli) {
            *r = p.data()[i].rem_euclid(t as i128) as u64;
        }
        data.push(crt_combine(&residues, &crt.moduli).ok_or_else(|| {
            ModelError::Input("the plaintext moduli are not pairwise coprime".into())
        })?);
    }
    IntTensor::from_data(first.shape().to_vec(), first.batch(), data)
        .ok_or_else(|| ModelError::Input("inconsistent decrypted sizes".into()))
}

/// What one encrypted segment cost and left.
#[derive(Clone, Debug)]
pub struct SegmentReport {
    /// The layers run.
    pub layers: Range<usize>,
    /// Client: encryption time, seconds.
    pub encrypt_seconds: f64,
    /// Server: compute time, seconds (all plaintext moduli).
    pub compute_seconds: f64,
    /// Client: decryption and recombination time, seconds.
    pub decrypt_seconds: f64,
    /// Smallest noise budget over the result's ciphertexts (bits), per plaintext modulus.
    pub noise_budget: Vec<u32>,
    /// Bytes of the uploaded (seeded) ciphertexts.
    pub upload_bytes: usize,
    /// Bytes of the returned ciphertexts.
    pub download_bytes: usize,
}

/// A local encrypted run of the encryptable prefix.
#[derive(Clone, Debug)]
pub struct LocalRun {
    /// The decrypted, recombined integers at the end of the prefix.
    pub output: IntTensor,
    /// One report per segment.
    pub segments: Vec<SegmentReport>,
}

/// Runs the encryptable prefix on `x` (quantized input) segment by segment, re-encrypting at
/// boundaries as the client does.
pub fn run_local(
    crt: &CrtModel,
    keys: &[ClientKeys],
    x: &IntTensor,
) -> Result<LocalRun, ModelError> {
    let backends: Vec<BfvBackend> = keys.iter().map(|k| k.backend()).collect();
    let mut cur = x.clone();
    let mut segments = Vec::new();
    let model = crt.model();
    let end = model.encryptable_prefix();
    for seg in crt.segments() {
        let t0 = Instant::now();
        let enc = encrypt_components(crt, keys, &cur, seg.start)?;
        let upload_bytes = enc
            .iter()
            .flat_map(|e| &e.cts)
            .map(|c| c.serialized_len())
            .sum();
        let t1 = Instant::now();
        let outs: Vec<EncryptedTensor<Ciphertext>> = enc
            .into_iter()
            .zip(&crt.components)
            .zip(&backends)
            .map(|((e, c), b)| c.model.run_encrypted(seg.clone(), e, b))
            .collect::<Result<_, _>>()?;
        let t2 = Instant::now();
        let download_bytes = outs
            .iter()
            .flat_map(|e| &e.cts)
            .map(|c| c.serialized_len())
            .sum();
        let noise_budget = outs
            .iter()
            .zip(keys)
            .map(|(o, k)| o.min_noise_budget(&k.sk).unwrap_or(0))
            .collect();
        let t3 = Instant::now();
        let dec = decrypt_combine(crt, keys, &outs)?;
        let t4 = Instant::now();
        // Past the segment: a re-encryption boundary (the client's rescale) or the end.
        cur = if seg.end < end {
            model.run_int(seg.end..seg.end + 1, &dec)?
        } else {
            dec
        };
        segments.push(SegmentReport {
            layers: seg,
            encrypt_seconds: (t1 - t0).as_secs_f64(),
            compute_seconds: (t2 - t1).as_secs_f64(),
            decrypt_seconds: (t4 - t3).as_secs_f64(),
            noise_budget,
            upload_bytes,
            download_bytes,
        });
    }
    Ok(LocalRun {
        output: cur,
        segments,
    })
}
