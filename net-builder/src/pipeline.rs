//! A model encoded for every plaintext modulus of a configuration (CRT), and the client's keys
//! for it. The pipeline that runs it is [`crate::session`].

use crate::build::{build_model, BuildError, BuildOptions, BuiltModel};
use crate::spec::ModelSpec;
use he_layers::crypto::{BfvParameters, GaloisKeys, PublicKey, RelinearizationKey, SecretKey};
use he_layers::layers::BfvBackend;
use he_layers::model::EncodedModel;
use std::ops::Range;
use std::sync::Arc;

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
        return Err(BuildError::NoPlainModulus);
    }
    let params: Vec<Arc<BfvParameters>> = moduli
        .iter()
        .map(|&t| BfvParameters::preset(degree, t))
        .collect::<Result<_, _>>()?;
    build_crt_on(spec, &params, opts)
}

/// Builds one component per parameter set (one per plaintext modulus, as
/// `EncryptionParameters::resolve` gives them: same ring and ciphertext primes); the first
/// component's weight precision is used for all.
pub fn build_crt_on(
    spec: &ModelSpec,
    params: &[Arc<BfvParameters>],
    opts: &BuildOptions,
) -> Result<CrtModel, BuildError> {
    let (first_params, rest) = params.split_first().ok_or(BuildError::NoPlainModulus)?;
    let moduli: Vec<u64> = params.iter().map(|p| p.plain_modulus()).collect();
    let mut opts = BuildOptions {
        crt_moduli: (moduli.len() > 1).then(|| moduli.clone()),
        ..opts.clone()
    };
    let first = build_model(spec, first_params, &opts)?;
    opts.weight_bits = Some(first.weight_bits);
    let mut components = vec![first];
    for p in rest {
        components.push(build_model(spec, p, &opts)?);
    }
    Ok(CrtModel { components, moduli })
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
    /// Galois keys for the rotations of a packed plan (none for the batch layout).
    pub galois: Option<GaloisKeys>,
}

impl ClientKeys {
    /// Fresh keys for a parameter set (no Galois keys: the batch layout).
    pub fn generate(params: &Arc<BfvParameters>) -> Self {
        let sk = SecretKey::generate(params);
        let pk = PublicKey::generate(&sk);
        let rk = RelinearizationKey::generate(&sk);
        Self {
            sk,
            pk,
            rk,
            galois: None,
        }
    }

    /// Fresh keys with Galois keys for exactly `galois_elements` (a plan's list; none: as
    /// [`Self::generate`]).
    pub fn generate_for(
        params: &Arc<BfvParameters>,
        galois_elements: &[u64],
    ) -> Result<Self, he_layers::crypto::Error> {
        let mut keys = Self::generate(params);
        if !galois_elements.is_empty() {
            keys.galois = Some(GaloisKeys::generate_for_elements(
                &keys.sk,
                galois_elements,
            )?);
        }
        Ok(keys)
    }

    /// The server-side backend these keys allow.
    pub fn backend(&self) -> BfvBackend {
        let b = BfvBackend::new(&self.pk, Some(self.rk.clone()));
        match &self.galois {
            Some(g) => b.with_galois_keys(g.clone()),
            None => b,
        }
    }
}
