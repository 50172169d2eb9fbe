//! The key store on disk: one set of keys per plaintext modulus; secret keys 0600.

use crate::*;
use he_layers::crypto::{BfvParameters, GaloisKeys, PublicKey, RelinearizationKey, SecretKey};
use he_layers::protocol::EncryptionParameters;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

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
    /// Galois keys for the rotations of a packed plan (made when a plan first asks for them).
    pub galois: Option<GaloisKeys>,
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
        let sets = params.resolve().map_err(ConfigError::Parameters)?;
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
                    galois: None,
                }
            })
            .collect();
        Ok(Self {
            encryption_parameters: params.clone(),
            components,
        })
    }

    /// Makes sure every component holds Galois keys for at least `elements` (a plan's list),
    /// generating them where missing. Returns whether any were made (the key id changes, and
    /// a saved key set should be saved again).
    pub fn ensure_galois(&mut self, elements: &[u64]) -> Result<bool, ClientError> {
        if elements.is_empty() {
            return Ok(false);
        }
        let mut made = false;
        for c in &mut self.components {
            let covered = c.galois.as_ref().is_some_and(|g| {
                let held: Vec<u64> = g.elements().collect();
                elements.iter().all(|e| *e == 1 || held.contains(e))
            });
            if !covered {
                c.galois = Some(
                    GaloisKeys::generate_for_elements(&c.sk, elements)
                        .map_err(KeyStoreError::Galois)?,
                );
                made = true;
            }
        }
        Ok(made)
    }

    /// Saves to a folder: `keyset.json`, and per modulus `t<t>/` with `parameters.bin`,
    /// `secret.key` (mode 0600), `public.key`, `relin.key` and, once a packed plan asked for
    /// them, `galois.key`.
    pub fn save(&self, dir: &Path) -> Result<(), ClientError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut files = Vec::new();
        for c in &self.components {
            let sub = format!("t{}", c.params.plain_modulus());
            let d = dir.join(&sub);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            write_private(&d.join("secret.key"), &c.sk.to_bytes())?;
            let mut files_out = vec![
                ("parameters.bin", c.params.to_bytes()),
                ("public.key", c.pk.to_bytes()),
                ("relin.key", c.rk.to_bytes()),
            ];
            if let Some(g) = &c.galois {
                files_out.push(("galois.key", g.to_bytes()));
            }
            for (name, bytes) in files_out {
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
        let json = serde_json::to_vec_pretty(&meta).map_err(encode("the key set's metadata"))?;
        std::fs::write(dir.join("keyset.json"), json).map_err(io(&dir.join("keyset.json")))
    }

    /// Deletes a saved key set: every file [`Self::save`] writes (the secret keys first), and
    /// the folders left empty. Other files in the folder are left alone.
    pub fn discard(dir: &Path) -> Result<(), ClientError> {
        let meta_path = dir.join("keyset.json");
        let subs: Vec<String> = std::fs::read_to_string(&meta_path)
            .ok()
            .and_then(|t| serde_json::from_str::<KeySetFile>(&t).ok())
            .map(|m| m.components.into_iter().map(|c| c.dir).collect())
            .unwrap_or_default();
        for sub in subs
            .iter()
            .filter(|s| !s.contains('/') && !s.contains(".."))
        {
            let d = dir.join(sub);
            for name in [
                "secret.key",
                "parameters.bin",
                "public.key",
                "relin.key",
                "galois.key",
            ] {
                match std::fs::remove_file(d.join(name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&d.join(name))(e)),
                }
            }
            let _ = std::fs::remove_dir(&d);
        }
        match std::fs::remove_file(&meta_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&meta_path)(e)),
        }
        let _ = std::fs::remove_dir(dir);
        Ok(())
    }

    /// Loads a saved key set, checking every file against its parameter set.
    pub fn load(dir: &Path) -> Result<Self, ClientError> {
        let meta_path = dir.join("keyset.json");
        let text = std::fs::read_to_string(&meta_path).map_err(io(&meta_path))?;
        let meta: KeySetFile =
            serde_json::from_str(&text).map_err(|source| KeyStoreError::Metadata {
                path: meta_path.clone(),
                source,
            })?;
        let mut components = Vec::new();
        for c in meta.components {
            if c.dir.contains('/') || c.dir.contains("..") {
                return Err(KeyStoreError::Folder {
                    path: meta_path,
                    folder: c.dir,
                }
                .into());
            }
            let d = dir.join(&c.dir);
            let read = |name: &str| -> Result<Vec<u8>, ClientError> {
                std::fs::read(d.join(name)).map_err(io(&d.join(name)))
            };
            let bad = |name: &str| {
                let path = d.join(name);
                move |source: he_layers::crypto::SerialError| KeyStoreError::Decode {
                    path: path.clone(),
                    source,
                }
            };
            let params = BfvParameters::from_bytes(&read("parameters.bin")?)
                .map_err(bad("parameters.bin"))?;
            if params.plain_modulus() != c.plain_modulus
                || params.fingerprint_hex() != c.fingerprint
            {
                return Err(KeyStoreError::ParametersMismatch { dir: d }.into());
            }
            let sk =
                SecretKey::from_bytes(&read("secret.key")?, &params).map_err(bad("secret.key"))?;
            let pk =
                PublicKey::from_bytes(&read("public.key")?, &params).map_err(bad("public.key"))?;
            let rk = RelinearizationKey::from_bytes(&read("relin.key")?, &params)
                .map_err(bad("relin.key"))?;
            let galois = if d.join("galois.key").exists() {
                Some(
                    GaloisKeys::from_bytes(&read("galois.key")?, &params)
                        .map_err(bad("galois.key"))?,
                )
            } else {
                None
            };
            components.push(ComponentKeys {
                params,
                sk,
                pk,
                rk,
                galois,
            });
        }
        Ok(Self {
            encryption_parameters: meta.encryption_parameters,
            components,
        })
    }

    /// Whether the keys fit these parameters (same moduli, same fingerprints).
    pub fn matches(&self, params: &EncryptionParameters) -> Result<bool, ClientError> {
        let sets = params.resolve().map_err(ConfigError::Parameters)?;
        Ok(sets.len() == self.components.len()
            && sets
                .iter()
                .zip(&self.components)
                .all(|(a, b)| a.fingerprint() == b.params.fingerprint()))
    }
}
