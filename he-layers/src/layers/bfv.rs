//! The BFV implementation of [`HeBackend`].

use super::{
    Backend, LayerError, LevelOps, LinearOps, PlaintextOps, ProductOps, RotationOps, SlotDecryptor,
    SlotEncryptor,
};
use crate::crypto::{
    BatchEncoder, Ciphertext, Decryptor, Encryptor, Error, Evaluator, GaloisKeys, LiftedPlaintext,
    PublicKey, RelinearizationKey, SecretKey, SymmetricEncryptor,
};
use std::borrow::Cow;
use std::sync::Arc;

/// Runs layers with the RNS-BFV evaluator. The public key makes fresh encryptions where a
/// result would otherwise be transparent; the relinearization key serves Square.
#[derive(Clone, Debug)]
pub struct BfvBackend {
    evaluator: Evaluator,
    encryptor: Encryptor,
    relin: Option<RelinearizationKey>,
    galois: Option<GaloisKeys>,
}

impl BfvBackend {
    /// A backend for the client's public key and, when the model squares, its relinearization
    /// key.
    pub fn new(pk: &PublicKey, relin: Option<RelinearizationKey>) -> Self {
        Self {
            evaluator: Evaluator::new(pk.parameters()),
            encryptor: Encryptor::new(pk),
            relin,
            galois: None,
        }
    }

    /// The same backend with Galois keys, for rotations.
    pub fn with_galois_keys(mut self, keys: GaloisKeys) -> Self {
        self.galois = Some(keys);
        self
    }

    /// The evaluator.
    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    /// The public-key encryptor (fresh encryptions of zero, for sanitization).
    pub fn encryptor(&self) -> &Encryptor {
        &self.encryptor
    }

    /// The evaluator at `ct`'s level: the backend's own at the top, one of a level below it
    /// (modulus switching) else; a ciphertext of another parameter set is refused.
    fn at(&self, ct: &Ciphertext) -> Result<Cow<'_, Evaluator>, LayerError> {
        let (p, top) = (ct.parameters(), self.evaluator.parameters());
        if Arc::ptr_eq(p, top) || p.fingerprint() == top.fingerprint() {
            Ok(Cow::Borrowed(&self.evaluator))
        } else if p.is_level_of(top) {
            Ok(Cow::Owned(Evaluator::new(p)))
        } else {
            Err(crypto(Error::ParameterMismatch {
                left: p.fingerprint_hex(),
                right: top.fingerprint_hex(),
            }))
        }
    }

    /// `cts` at the lowest level among them (operands of several levels meet there, as the
    /// noise estimator assumes); those already there are borrowed.
    fn at_lowest<'c>(
        &self,
        cts: &[&'c Ciphertext],
    ) -> Result<Vec<Cow<'c, Ciphertext>>, LayerError> {
        let lowest = cts.iter().map(|c| self.level(c)).min().unwrap_or(0);
        cts.iter()
            .map(|&c| {
                if self.level(c) > lowest {
                    self.switch_level(c, lowest).map(Cow::Owned)
                } else {
                    Ok(Cow::Borrowed(c))
                }
            })
            .collect()
    }

    /// Batch-encodes integers of the mirror (centered mod t).
    fn encode(&self, values: &[i128]) -> Result<crate::crypto::Plaintext, LayerError> {
        let params = self.evaluator.parameters();
        let centered = centered_mod(values, params.plain_modulus() as i128);
        BatchEncoder::try_new(params)
            .and_then(|e| e.encode(&centered))
            .map_err(crypto)
    }
}

/// Integers of the mirror as slot values: each taken centered mod t (a value beyond t/2 becomes
/// its residue, as CRT needs).
fn centered_mod(values: &[i128], t: i128) -> Vec<i64> {
    values
        .iter()
        .map(|&v| {
            let r = v.rem_euclid(t);
            (if r > t / 2 { r - t } else { r }) as i64
        })
        .collect()
}

fn crypto(e: Error) -> LayerError {
    LayerError::from(e)
}

impl Backend for BfvBackend {
    type Ciphertext = Ciphertext;
}

impl LinearOps for BfvBackend {
    fn dot(&self, cts: &[&Ciphertext], weights: &[i64]) -> Result<Option<Ciphertext>, LayerError> {
        let cts = self.at_lowest(cts)?;
        let refs: Vec<&Ciphertext> = cts.iter().map(AsRef::as_ref).collect();
        let Some(first) = refs.first() else {
            return Ok(None);
        };
        match self.at(first)?.dot_scalars(&refs, weights) {
            Ok(c) => Ok(Some(c)),
            Err(Error::TransparentResult) => Ok(None),
            Err(e) => Err(crypto(e)),
        }
    }

    fn dot_many(
        &self,
        cts: &[&Ciphertext],
        rows: &[Vec<i64>],
    ) -> Result<Vec<Option<Ciphertext>>, LayerError> {
        let cts = self.at_lowest(cts)?;
        let refs: Vec<&Ciphertext> = cts.iter().map(AsRef::as_ref).collect();
        let Some(first) = refs.first() else {
            return Ok(vec![None; rows.len()]);
        };
        self.at(first)?
            .dot_scalars_many(&refs, rows)
            .map_err(crypto)
    }

    fn add_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<(), LayerError> {
        // Operands of two levels meet at the lower one.
        let (la, lb) = (self.level(a), self.level(b));
        if la > lb {
            *a = self.switch_level(a, lb)?;
        } else if lb > la {
            let b = self.switch_level(b, la)?;
            return self.at(a)?.add_assign(a, &b).map_err(crypto);
        }
        self.at(a)?.add_assign(a, b).map_err(crypto)
    }

    fn add_constant(&self, ct: &mut Ciphertext, c: i128) -> Result<(), LayerError> {
        self.at(ct)?.add_constant_assign(ct, c).map_err(crypto)
    }

    fn encrypt_constant(&self, c: i128) -> Result<Ciphertext, LayerError> {
        let mut z = self.encryptor.encrypt_zero();
        self.evaluator
            .add_constant_assign(&mut z, c)
            .map_err(crypto)?;
        Ok(z)
    }
}

impl ProductOps for BfvBackend {
    fn square(&self, ct: &Ciphertext) -> Result<Ciphertext, LayerError> {
        let rk = self
            .relin
            .as_ref()
            .ok_or(LayerError::MissingKey("a relinearization key (for Square)"))?;
        self.at(ct)?.square(ct, rk).map_err(crypto)
    }
}

impl PlaintextOps for BfvBackend {
    type Plaintext = LiftedPlaintext;

    /// Prepared at the top level, it serves every level below.
    fn prepare_plaintext(&self, values: &[i128]) -> Result<LiftedPlaintext, LayerError> {
        let pt = self.encode(values)?;
        self.evaluator.prepare_mul(&pt).map_err(crypto)
    }

    fn add_plain(&self, ct: &mut Ciphertext, values: &[i128]) -> Result<(), LayerError> {
        let pt = self.encode(values)?;
        let ev = self.at(ct)?;
        let scaled = ev.prepare_add(&pt).map_err(crypto)?;
        ev.add_plain_assign(ct, &scaled).map_err(crypto)
    }

    fn multiply_plain(
        &self,
        ct: &Ciphertext,
        pt: &LiftedPlaintext,
    ) -> Result<Ciphertext, LayerError> {
        self.at(ct)?.mul_plain(ct, pt).map_err(crypto)
    }
}

impl RotationOps for BfvBackend {
    fn rotate(&self, ct: &Ciphertext, step: i64) -> Result<Ciphertext, LayerError> {
        let keys = self
            .galois
            .as_ref()
            .ok_or(LayerError::MissingKey("Galois keys (for rotations)"))?;
        self.at(ct)?.rotate_rows(ct, step, keys).map_err(crypto)
    }
}

impl LevelOps for BfvBackend {
    fn level(&self, ct: &Ciphertext) -> usize {
        ct.parameters().level()
    }

    fn switch_level(&self, ct: &Ciphertext, level: usize) -> Result<Ciphertext, LayerError> {
        self.at(ct)?;
        if level >= self.level(ct) {
            return Ok(ct.clone());
        }
        crate::crypto::modswitch::switch_to_level(ct, level).map_err(crypto)
    }
}

/// Encrypts slot vectors with the client's secret key (seeded, half-size ciphertexts), each
/// value taken centered mod t (so a value beyond t/2 becomes its residue, as CRT needs).
pub struct BfvSlotEncryptor<'a> {
    encryptor: SymmetricEncryptor<'a>,
    encoder: BatchEncoder,
    t: i128,
}

impl<'a> BfvSlotEncryptor<'a> {
    /// An encryptor for a secret key whose parameters allow batching.
    pub fn new(sk: &'a SecretKey) -> Result<Self, Error> {
        Ok(Self {
            encryptor: SymmetricEncryptor::new(sk),
            encoder: BatchEncoder::try_new(sk.parameters())?,
            t: sk.parameters().plain_modulus() as i128,
        })
    }
}

impl SlotEncryptor for BfvSlotEncryptor<'_> {
    type Ciphertext = Ciphertext;

    fn slot_count(&self) -> usize {
        self.encoder.slot_count()
    }

    fn encrypt_slots(&self, values: &[i128]) -> Result<Ciphertext, LayerError> {
        let pt = self
            .encoder
            .encode(&centered_mod(values, self.t))
            .map_err(crypto)?;
        self.encryptor.encrypt(&pt).map_err(crypto)
    }
}

/// Decrypts ciphertexts (at any level of the key's parameter set) into centered slot values.
pub struct BfvSlotDecryptor<'a> {
    decryptor: Decryptor<'a>,
    encoder: BatchEncoder,
}

impl<'a> BfvSlotDecryptor<'a> {
    /// A decryptor for a secret key whose parameters allow batching.
    pub fn new(sk: &'a SecretKey) -> Result<Self, Error> {
        Ok(Self {
            decryptor: Decryptor::new(sk),
            encoder: BatchEncoder::try_new(sk.parameters())?,
        })
    }
}

impl SlotDecryptor for BfvSlotDecryptor<'_> {
    type Ciphertext = Ciphertext;

    fn decrypt_slots(&self, ct: &Ciphertext) -> Result<Vec<i128>, LayerError> {
        let pt = self.decryptor.decrypt(ct).map_err(crypto)?;
        Ok(self
            .encoder
            .decode(&pt)
            .into_iter()
            .map(i128::from)
            .collect())
    }
}
