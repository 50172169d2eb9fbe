//! The BFV implementation of [`HeBackend`].

use super::{HeBackend, LayerError};
use crate::crypto::{Ciphertext, Encryptor, Error, Evaluator, PublicKey, RelinearizationKey};

/// Runs layers with the RNS-BFV evaluator. The public key makes fresh encryptions where a
/// result would otherwise be transparent; the relinearization key serves Square.
#[derive(Clone, Debug)]
pub struct BfvBackend {
    evaluator: Evaluator,
    encryptor: Encryptor,
    relin: Option<RelinearizationKey>,
}

impl BfvBackend {
    /// A backend for the client's public key and, when the model squares, its relinearization
    /// key.
    pub fn new(pk: &PublicKey, relin: Option<RelinearizationKey>) -> Self {
        Self {
            evaluator: Evaluator::new(pk.parameters()),
            encryptor: Encryptor::new(pk),
            relin,
        }
    }

    /// The evaluator.
    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    /// The public-key encryptor (fresh encryptions of zero, for sanitization).
    pub fn encryptor(&self) -> &Encryptor {
        &self.encryptor
    }
}

fn crypto(e: Error) -> LayerError {
    LayerError::Crypto {
        layer: String::new(),
        source: e,
    }
}

impl HeBackend for BfvBackend {
    type Ciphertext = Ciphertext;

    fn dot(&self, cts: &[&Ciphertext], weights: &[i64]) -> Result<Option<Ciphertext>, LayerError> {
        match self.evaluator.dot_scalars(cts, weights) {
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
        self.evaluator.dot_scalars_many(cts, rows).map_err(crypto)
    }

    fn add_constant(&self, ct: &mut Ciphertext, c: i128) -> Result<(), LayerError> {
        self.evaluator.add_constant_assign(ct, c).map_err(crypto)
    }

    fn square(&self, ct: &Ciphertext) -> Result<Ciphertext, LayerError> {
        let rk = self
            .relin
            .as_ref()
            .ok_or(LayerError::MissingKey("a relinearization key (for Square)"))?;
        self.evaluator.square(ct, rk).map_err(crypto)
    }

    fn encrypt_constant(&self, c: i128) -> Result<Ciphertext, LayerError> {
        let mut z = self.encryptor.encrypt_zero();
        self.evaluator
            .add_constant_assign(&mut z, c)
            .map_err(crypto)?;
        Ok(z)
    }
}
