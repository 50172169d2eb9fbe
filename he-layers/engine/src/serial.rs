//! The versioned binary format of every public object.
//!
//! Layout: a 40-byte header — magic `HELY`, format version (u16 LE), object kind (u8), a zero
//! byte, the 32-byte parameter fingerprint — then the body. Residues are bit-packed to their
//! prime's width, limb after limb, padded to a byte at the end of each polynomial. Uniform halves
//! travel as 32-byte seeds.
//!
//! Reading never trusts a length from the input: every size follows from the parameter set,
//! counts are checked against limits, the total length is checked before any polynomial is
//! allocated, and every residue is checked against its prime.

use super::compress::{CompressedCiphertext, MAX_COMPRESSED_BITS};
use super::encoding::Plaintext;
use super::encrypt::{expand_seeded_component, Ciphertext};
use super::keys::{GaloisKeys, KeySwitchingKey, PublicKey, RelinearizationKey, SecretKey};
use super::params::{BfvParameters, ParameterSpec, SecurityLevel};
use super::poly::{Representation, RnsPoly};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The format's magic bytes.
pub const MAGIC: [u8; 4] = *b"HELY";
/// The format version this code writes and reads. Version 2 names the scheme in the header
/// (version 1 had a reserved zero byte there).
pub const VERSION: u16 = 2;
/// The scheme byte of the header: 1 is RNS-BFV, the only scheme this engine implements.
pub const SCHEME_BFV: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 40;
/// Most Galois keys a key set may hold.
pub const MAX_GALOIS_KEYS: usize = 64;
/// Most ciphertext primes a serialized parameter set may list.
pub const MAX_MODULI: usize = 64;

/// What a serialized object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    /// A parameter set.
    Parameters = 1,
    /// A secret key.
    SecretKey = 2,
    /// A public key.
    PublicKey = 3,
    /// A relinearization key.
    RelinearizationKey = 4,
    /// A set of Galois keys.
    GaloisKeys = 5,
    /// One ciphertext.
    Ciphertext = 6,
    /// A plaintext.
    Plaintext = 7,
    /// A sequence of ciphertexts.
    CiphertextBatch = 8,
    /// A sequence of compressed ciphertexts (answers over 2^d).
    CompressedBatch = 9,
}

impl ObjectKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Parameters,
            2 => Self::SecretKey,
            3 => Self::PublicKey,
            4 => Self::RelinearizationKey,
            5 => Self::GaloisKeys,
            6 => Self::Ciphertext,
            7 => Self::Plaintext,
            8 => Self::CiphertextBatch,
            9 => Self::CompressedBatch,
            _ => return None,
        })
    }
}

/// Why bytes were refused. Each failure has its own variant.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SerialError {
    /// Fewer bytes than the object needs.
    #[error("truncated input: {what} needs {expected} bytes, got {actual}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// More bytes than the object has, or a count over its limit.
    #[error("oversized input: {what} is {actual}, the limit is {limit}")]
    Oversized {
        /// What is too large.
        what: &'static str,
        /// Its size or count.
        actual: usize,
        /// The limit.
        limit: usize,
    },
    /// Not this format.
    #[error("not an he-layers object (bad magic bytes)")]
    BadMagic,
    /// A version this code does not read.
    #[error("format version {found} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// An object of another scheme.
    #[error(
        "scheme {found} is not supported (this build reads RNS-BFV objects, scheme {SCHEME_BFV})"
    )]
    UnsupportedScheme {
        /// The scheme byte found.
        found: u8,
    },
    /// Another kind of object than expected.
    #[error("expected a {expected:?}, found a {found}")]
    WrongKind {
        /// Kind expected.
        expected: ObjectKind,
        /// Kind byte found (described).
        found: String,
    },
    /// Made for another parameter set.
    #[error("parameter fingerprint mismatch: object is for {found}, expected {expected}")]
    FingerprintMismatch {
        /// Expected fingerprint (hex prefix).
        expected: String,
        /// Found fingerprint (hex prefix).
        found: String,
    },
    /// A residue not below its prime.
    #[error("coefficient out of range: limb {limb}, index {index}: {value} ≥ modulus {modulus}")]
    CoefficientOutOfRange {
        /// Limb index.
        limb: usize,
        /// Coefficient index.
        index: usize,
        /// The value read.
        value: u64,
        /// The modulus it must be below.
        modulus: u64,
    },
    /// A field with an impossible value.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// The field.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The parameter set described is invalid.
    #[error("invalid parameter set: {0}")]
    Parameters(#[from] super::params::ParameterError),
}

fn hex8(f: &[u8]) -> String {
    f.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Bit packing

struct BitWriter {
    out: Vec<u8>,
    acc: u128,
    bits: u32,
}

impl BitWriter {
    fn new(out: Vec<u8>) -> Self {
        Self {
            out,
            acc: 0,
            bits: 0,
        }
    }
    fn put(&mut self, v: u64, width: u32) {
        self.acc |= (v as u128) << self.bits;
        self.bits += width;
        while self.bits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.bits -= 8;
        }
    }
    fn flush(&mut self) {
        if self.bits > 0 {
            self.out.push(self.acc as u8);
        }
        self.acc = 0;
        self.bits = 0;
    }
}

/// Appends `values` packed at `width` bits each (bits above it dropped), padded to a byte at
/// the end.
fn pack(out: Vec<u8>, values: &[u64], width: u32) -> Vec<u8> {
    let mask = u64::MAX >> (64 - width.clamp(1, 64));
    let mut bw = BitWriter::new(out);
    for &v in values {
        bw.put(v & mask, width);
    }
    bw.flush();
    bw.out
}

/// Reads `n` values of `width` bits from `body` (whose length the caller checked).
fn unpack(body: &[u8], n: usize, width: u32) -> Vec<u64> {
    let mask = (1u128 << width) - 1;
    let mut it = body.iter();
    let (mut acc, mut have) = (0u128, 0u32);
    (0..n)
        .map(|_| {
            while have < width {
                acc |= (*it.next().unwrap_or(&0) as u128) << have;
                have += 8;
            }
            let v = (acc & mask) as u64;
            acc >>= width;
            have -= width;
            v
        })
        .collect()
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SerialError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(SerialError::Truncated {
                what,
                expected: self.pos.saturating_add(n),
                actual: self.buf.len(),
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, SerialError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, SerialError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, SerialError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, SerialError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A count (u32) of at most `max` objects.
    fn count(&mut self, max: usize) -> Result<usize, SerialError> {
        let count = self.u32("ciphertext count")? as usize;
        if count > max {
            return Err(SerialError::Oversized {
                what: "number of ciphertexts",
                actual: count,
                limit: max,
            });
        }
        Ok(count)
    }
    fn seed(&mut self) -> Result<[u8; 32], SerialError> {
        let b = self.take(32, "seed")?;
        let mut s = [0u8; 32];
        s.copy_from_slice(b);
        Ok(s)
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn finish(&self) -> Result<(), SerialError> {
        if self.pos != self.buf.len() {
            return Err(SerialError::Oversized {
                what: "input length in bytes",
                actual: self.buf.len(),
                limit: self.pos,
            });
        }
        Ok(())
    }
}

fn widths(params: &BfvParameters, limbs: usize) -> Vec<u32> {
    params.key.moduli()[..limbs]
        .iter()
        .map(|m| m.bits())
        .collect()
}

/// Bytes of one packed polynomial over the first `limbs` limbs of the key basis.
fn poly_bytes(params: &BfvParameters, limbs: usize) -> usize {
    let bits: usize = widths(params, limbs)
        .iter()
        .map(|&w| w as usize * params.degree())
        .sum();
    bits.div_ceil(8)
}

fn write_poly(out: Vec<u8>, poly: &RnsPoly, params: &BfvParameters) -> Vec<u8> {
    let w = widths(params, poly.limb_count());
    let mut bw = BitWriter::new(out);
    for (limb, &width) in poly.limbs().zip(&w) {
        for &x in limb {
            bw.put(x, width);
        }
    }
    bw.flush();
    bw.out
}

fn read_poly(
    r: &mut Reader<'_>,
    params: &BfvParameters,
    limbs: usize,
    representation: Representation,
) -> Result<RnsPoly, SerialError> {
    let bytes = r.take(poly_bytes(params, limbs), "polynomial")?;
    let n = params.degree();
    let mut data = Vec::with_capacity(n * limbs);
    let mut acc: u128 = 0;
    let mut have: u32 = 0;
    let mut it = bytes.iter();
    for (limb, m) in params.key.moduli()[..limbs].iter().enumerate() {
        let width = m.bits();
        let mask = (1u128 << width) - 1;
        for index in 0..n {
            while have < width {
                // Length was checked above, so the bytes are there.
                acc |= (*it.next().unwrap_or(&0) as u128) << have;
                have += 8;
            }
            let value = (acc & mask) as u64;
            acc >>= width;
            have -= width;
            if value >= m.value() {
                return Err(SerialError::CoefficientOutOfRange {
                    limb,
                    index,
                    value,
                    modulus: m.value(),
                });
            }
            data.push(value);
        }
    }
    Ok(RnsPoly::from_data(data, n, representation))
}

fn header(kind: ObjectKind, fingerprint: &[u8; 32], capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + capacity);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(kind as u8);
    out.push(SCHEME_BFV);
    out.extend_from_slice(fingerprint);
    out
}

/// Reads and checks a header; returns the fingerprint.
fn read_header<'a>(
    bytes: &'a [u8],
    kind: ObjectKind,
) -> Result<(Reader<'a>, [u8; 32]), SerialError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if bytes.len() < 4 || bytes[..4] != MAGIC {
        return Err(if bytes.len() < 4 && MAGIC.starts_with(bytes) {
            SerialError::Truncated {
                what: "header",
                expected: HEADER_LEN,
                actual: bytes.len(),
            }
        } else {
            SerialError::BadMagic
        });
    }
    r.take(4, "header")?;
    let version = r.u16("header")?;
    if version != VERSION {
        return Err(SerialError::UnsupportedVersion { found: version });
    }
    let k = r.u8("header")?;
    if k != kind as u8 {
        return Err(SerialError::WrongKind {
            expected: kind,
            found: match ObjectKind::from_u8(k) {
                Some(f) => format!("{f:?}"),
                None => format!("unknown kind {k}"),
            },
        });
    }
    let scheme = r.u8("header")?;
    if scheme != SCHEME_BFV {
        return Err(SerialError::UnsupportedScheme { found: scheme });
    }
    let fp = r.seed()?;
    Ok((r, fp))
}

fn read_checked<'a>(
    bytes: &'a [u8],
    kind: ObjectKind,
    params: &BfvParameters,
) -> Result<Reader<'a>, SerialError> {
    let (r, fp) = read_header(bytes, kind)?;
    if fp != params.fingerprint() {
        return Err(SerialError::FingerprintMismatch {
            expected: hex8(&params.fingerprint()),
            found: hex8(&fp),
        });
    }
    Ok(r)
}

fn expect_len(r: &Reader<'_>, body: usize, what: &'static str) -> Result<(), SerialError> {
    let expected = r.pos + body;
    if r.buf.len() < expected {
        return Err(SerialError::Truncated {
            what,
            expected,
            actual: r.buf.len(),
        });
    }
    if r.buf.len() > expected {
        return Err(SerialError::Oversized {
            what: "input length in bytes",
            actual: r.buf.len(),
            limit: expected,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Objects

impl BfvParameters {
    /// Serializes the parameter set.
    pub fn to_bytes(&self) -> Vec<u8> {
        let s = self.spec();
        let mut out = header(
            ObjectKind::Parameters,
            &self.fingerprint(),
            32 + 8 * s.moduli.len(),
        );
        out.extend_from_slice(&(s.degree as u32).to_le_bytes());
        out.extend_from_slice(&s.plain_modulus.to_le_bytes());
        out.push(s.moduli.len() as u8);
        for q in &s.moduli {
            out.extend_from_slice(&q.to_le_bytes());
        }
        out.extend_from_slice(&s.special_modulus.to_le_bytes());
        out.push(match s.security {
            SecurityLevel::Bits128 => 128,
            SecurityLevel::Bits192 => 192,
            SecurityLevel::Bits256 => 255,
            SecurityLevel::DangerNone => 0,
        });
        out
    }

    /// Reads and validates a parameter set (security check included).
    pub fn from_bytes(bytes: &[u8]) -> Result<Arc<Self>, SerialError> {
        let (mut r, fp) = read_header(bytes, ObjectKind::Parameters)?;
        let degree = r.u32("degree")? as usize;
        let plain_modulus = r.u64("plaintext modulus")?;
        let count = r.u8("modulus count")? as usize;
        if count == 0 || count > MAX_MODULI {
            return Err(SerialError::Oversized {
                what: "number of moduli",
                actual: count,
                limit: MAX_MODULI,
            });
        }
        expect_len(&r, 8 * count + 9, "parameter set")?;
        let moduli = (0..count)
            .map(|_| r.u64("modulus"))
            .collect::<Result<Vec<_>, _>>()?;
        let special_modulus = r.u64("special modulus")?;
        let security = match r.u8("security")? {
            128 => SecurityLevel::Bits128,
            192 => SecurityLevel::Bits192,
            255 => SecurityLevel::Bits256,
            0 => SecurityLevel::DangerNone,
            x => {
                return Err(SerialError::Malformed {
                    what: "security level",
                    detail: format!("unknown code {x}"),
                })
            }
        };
        r.finish()?;
        let p = BfvParameters::try_new(ParameterSpec {
            degree,
            plain_modulus,
            moduli,
            special_modulus,
            security,
        })?;
        if p.fingerprint() != fp {
            return Err(SerialError::FingerprintMismatch {
                expected: hex8(&p.fingerprint()),
                found: hex8(&fp),
            });
        }
        Ok(p)
    }
}

impl SecretKey {
    /// Serializes the secret key (2 bits per coefficient). Store it with mode 0600.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.params.degree();
        let mut out = header(ObjectKind::SecretKey, &self.params.fingerprint(), n / 4);
        let mut bw = BitWriter::new(out);
        for &c in &self.coeffs {
            bw.put(
                match c {
                    1 => 1,
                    -1 => 2,
                    _ => 0,
                },
                2,
            );
        }
        bw.flush();
        out = bw.out;
        out
    }

    /// Reads a secret key for a parameter set.
    pub fn from_bytes(bytes: &[u8], params: &Arc<BfvParameters>) -> Result<Self, SerialError> {
        let mut r = read_checked(bytes, ObjectKind::SecretKey, params)?;
        let n = params.degree();
        expect_len(&r, n / 4, "secret key")?;
        let body = r.take(n / 4, "secret key")?;
        let mut coeffs = Vec::with_capacity(n);
        for (i, b) in body.iter().enumerate() {
            for j in 0..4 {
                coeffs.push(match (b >> (2 * j)) & 3 {
                    0 => 0,
                    1 => 1,
                    2 => -1,
                    v => {
                        return Err(SerialError::CoefficientOutOfRange {
                            limb: 0,
                            index: 4 * i + j,
                            value: v as u64,
                            modulus: 3,
                        })
                    }
                });
            }
        }
        Ok(SecretKey::from_coefficients(params, coeffs))
    }
}

impl PublicKey {
    /// Serializes the public key: seed and b.
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = &self.params;
        let mut out = header(
            ObjectKind::PublicKey,
            &p.fingerprint(),
            32 + poly_bytes(p, p.q.len()),
        );
        out.extend_from_slice(&self.seed);
        write_poly(out, &self.b, p)
    }

    /// Reads a public key for a parameter set.
    pub fn from_bytes(bytes: &[u8], params: &Arc<BfvParameters>) -> Result<Self, SerialError> {
        let mut r = read_checked(bytes, ObjectKind::PublicKey, params)?;
        let l = params.q.len();
        expect_len(&r, 32 + poly_bytes(params, l), "public key")?;
        let seed = r.seed()?;
        let b = read_poly(&mut r, params, l, Representation::Ntt)?;
        Ok(PublicKey::from_parts(params, seed, b))
    }
}

fn ksk_body_len(params: &BfvParameters) -> usize {
    32 + params.q.len() * poly_bytes(params, params.key.len())
}

fn write_ksk(mut out: Vec<u8>, ksk: &KeySwitchingKey) -> Vec<u8> {
    out.extend_from_slice(&ksk.seed);
    for b in &ksk.b {
        out = write_poly(out, b, &ksk.params);
    }
    out
}

fn read_ksk(
    r: &mut Reader<'_>,
    params: &Arc<BfvParameters>,
) -> Result<KeySwitchingKey, SerialError> {
    let seed = r.seed()?;
    let b = (0..params.q.len())
        .map(|_| read_poly(r, params, params.key.len(), Representation::Ntt))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KeySwitchingKey::from_parts(params, seed, b))
}

impl RelinearizationKey {
    /// Serializes the relinearization key: seed and the b halves.
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = &self.ksk.params;
        let out = header(
            ObjectKind::RelinearizationKey,
            &p.fingerprint(),
            ksk_body_len(p),
        );
        write_ksk(out, &self.ksk)
    }

    /// Reads a relinearization key for a parameter set.
    pub fn from_bytes(bytes: &[u8], params: &Arc<BfvParameters>) -> Result<Self, SerialError> {
        let mut r = read_checked(bytes, ObjectKind::RelinearizationKey, params)?;
        expect_len(&r, ksk_body_len(params), "relinearization key")?;
        Ok(Self {
            ksk: read_ksk(&mut r, params)?,
        })
    }
}

impl GaloisKeys {
    /// The serialized size of `count` Galois keys for a parameter set (what a plan's keys
    /// cost on the wire, before any is generated).
    pub fn serialized_len_for(params: &BfvParameters, count: usize) -> usize {
        HEADER_LEN + 2 + count * (4 + ksk_body_len(params))
    }

    /// Serializes the Galois keys: count, then element and key for each.
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = &self.params;
        let mut out = header(
            ObjectKind::GaloisKeys,
            &p.fingerprint(),
            2 + self.keys.len() * (4 + ksk_body_len(p)),
        );
        out.extend_from_slice(&(self.keys.len() as u16).to_le_bytes());
        for (&g, k) in &self.keys {
            out.extend_from_slice(&(g as u32).to_le_bytes());
            out = write_ksk(out, k);
        }
        out
    }

    /// Reads Galois keys for a parameter set (at most [`MAX_GALOIS_KEYS`]).
    pub fn from_bytes(bytes: &[u8], params: &Arc<BfvParameters>) -> Result<Self, SerialError> {
        let mut r = read_checked(bytes, ObjectKind::GaloisKeys, params)?;
        let count = r.u16("key count")? as usize;
        if count > MAX_GALOIS_KEYS {
            return Err(SerialError::Oversized {
                what: "number of Galois keys",
                actual: count,
                limit: MAX_GALOIS_KEYS,
            });
        }
        expect_len(&r, count * (4 + ksk_body_len(params)), "Galois keys")?;
        let two_n = 2 * params.degree() as u64;
        let mut keys = BTreeMap::new();
        for _ in 0..count {
            let g = r.u32("Galois element")? as u64;
            if g.is_multiple_of(2) || g >= two_n || g == 1 || keys.contains_key(&g) {
                return Err(SerialError::Malformed {
                    what: "Galois element",
                    detail: format!("{g} is not an odd unit below 2N={two_n}, or is repeated"),
                });
            }
            keys.insert(g, read_ksk(&mut r, params)?);
        }
        Ok(GaloisKeys {
            params: params.clone(),
            keys,
        })
    }
}

/// Body bytes of a ciphertext of `size` polynomials, seeded or not.
fn ciphertext_body_len(params: &BfvParameters, size: usize, seeded: bool) -> usize {
    let poly = poly_bytes(params, params.q.len());
    2 + 8 + if seeded { 32 + poly } else { size * poly }
}

fn write_ciphertext_body(mut out: Vec<u8>, ct: &Ciphertext) -> Vec<u8> {
    let p = &ct.params;
    out.push(ct.polys.len() as u8);
    out.push(ct.seed.is_some() as u8);
    out.extend_from_slice(&ct.noise_log2.to_le_bytes());
    match &ct.seed {
        Some(seed) => {
            out.extend_from_slice(seed);
            write_poly(out, &ct.polys[0], p)
        }
        None => {
            for poly in &ct.polys {
                out = write_poly(out, poly, p);
            }
            out
        }
    }
}

fn read_ciphertext_body(
    r: &mut Reader<'_>,
    params: &Arc<BfvParameters>,
    exact: bool,
) -> Result<Ciphertext, SerialError> {
    let size = r.u8("ciphertext size")? as usize;
    if !(2..=3).contains(&size) {
        return Err(SerialError::Malformed {
            what: "ciphertext size",
            detail: format!("{size} polynomials; 2 or 3 are possible"),
        });
    }
    let seeded = match r.u8("ciphertext flags")? {
        0 => false,
        1 if size == 2 => true,
        f => {
            return Err(SerialError::Malformed {
                what: "ciphertext flags",
                detail: format!("flag byte {f} with {size} polynomials"),
            })
        }
    };
    let body = ciphertext_body_len(params, size, seeded) - 2;
    if exact {
        expect_len(r, body, "ciphertext")?;
    } else if r.remaining() < body {
        return Err(SerialError::Truncated {
            what: "ciphertext",
            expected: r.pos + body,
            actual: r.buf.len(),
        });
    }
    let noise = f64::from_le_bytes(r.take(8, "noise estimate")?.try_into().unwrap_or([0; 8]));
    let noise = plausible_noise(noise, params)?;
    let l = params.q.len();
    let polys = if seeded {
        let seed = r.seed()?;
        let c0 = read_poly(r, params, l, Representation::Ntt)?;
        let c1 = expand_seeded_component(params, seed);
        return Ok(Ciphertext {
            params: params.clone(),
            polys: vec![c0, c1],
            seed: Some(seed),
            noise_log2: noise,
        });
    } else {
        (0..size)
            .map(|_| read_poly(r, params, l, Representation::Ntt))
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(Ciphertext {
        params: params.clone(),
        polys,
        seed: None,
        noise_log2: noise,
    })
}

impl Ciphertext {
    /// Serializes the ciphertext; a seeded one stores its seed instead of its second half.
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = &self.params;
        let out = header(
            ObjectKind::Ciphertext,
            &p.fingerprint(),
            ciphertext_body_len(p, self.polys.len(), self.seed.is_some()),
        );
        write_ciphertext_body(out, self)
    }

    /// Serialized size in bytes, without serializing.
    pub fn serialized_len(&self) -> usize {
        HEADER_LEN + ciphertext_body_len(&self.params, self.polys.len(), self.seed.is_some())
    }

    /// Reads and checks a ciphertext for a parameter set.
    pub fn from_bytes(bytes: &[u8], params: &Arc<BfvParameters>) -> Result<Self, SerialError> {
        let mut r = read_checked(bytes, ObjectKind::Ciphertext, params)?;
        read_ciphertext_body(&mut r, params, true)
    }

    /// Serializes many ciphertexts under one header.
    pub fn batch_to_bytes(cts: &[Ciphertext], params: &BfvParameters) -> Vec<u8> {
        let body: usize = cts
            .iter()
            .map(|c| ciphertext_body_len(params, c.polys.len(), c.seed.is_some()))
            .sum();
        let mut out = header(ObjectKind::CiphertextBatch, &params.fingerprint(), 4 + body);
        out.extend_from_slice(&(cts.len() as u32).to_le_bytes());
        for c in cts {
            out = write_ciphertext_body(out, c);
        }
        out
    }

    /// The fewest and the most bytes a batch of `count` ciphertexts of two polynomials (as
    /// fresh encryptions and answers are) takes: every one seeded, or none. A server refuses
    /// an upload outside them before reading it, a client an answer past them.
    pub fn batch_len_bounds(params: &BfvParameters, count: usize) -> (usize, usize) {
        let at = |seeded| {
            count
                .saturating_mul(ciphertext_body_len(params, 2, seeded))
                .saturating_add(HEADER_LEN + 4)
        };
        (at(true), at(false))
    }

    /// Reads a batch of at most `max_count` ciphertexts.
    pub fn batch_from_bytes(
        bytes: &[u8],
        params: &Arc<BfvParameters>,
        max_count: usize,
    ) -> Result<Vec<Self>, SerialError> {
        let mut r = read_checked(bytes, ObjectKind::CiphertextBatch, params)?;
        let count = r.count(max_count)?;
        // Every ciphertext is at least a seeded one: refuse impossible counts before allocating.
        let min = count.saturating_mul(ciphertext_body_len(params, 2, true));
        if r.remaining() < min {
            return Err(SerialError::Truncated {
                what: "ciphertext batch",
                expected: r.pos.saturating_add(min),
                actual: bytes.len(),
            });
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(read_ciphertext_body(&mut r, params, false)?);
        }
        r.finish()?;
        Ok(out)
    }
}

/// Bytes of one compressed polynomial: N values of `bits` bits.
fn compressed_poly_bytes(params: &BfvParameters, bits: u32) -> usize {
    (params.degree() * bits as usize).div_ceil(8)
}

/// Checks a log2 noise field read from bytes.
fn plausible_noise(noise: f64, params: &BfvParameters) -> Result<f64, SerialError> {
    if !noise.is_finite() || noise < 0.0 || noise > params.log2_q() + 64.0 {
        return Err(SerialError::Malformed {
            what: "noise estimate",
            detail: format!("{noise} is not a plausible log2 noise"),
        });
    }
    Ok(noise)
}

impl CompressedCiphertext {
    /// Serializes compressed ciphertexts of one parameter set (level) and one width under one
    /// header: count (u32), bits (u8), then per ciphertext its noise bound (f64) and its two
    /// polynomials, each N values of `bits` bits. Every ciphertext must be of `params` and
    /// `bits` ([`crate::compress_answers`] makes them so).
    pub fn batch_to_bytes(
        cts: &[CompressedCiphertext],
        params: &BfvParameters,
        bits: u32,
    ) -> Vec<u8> {
        let poly = compressed_poly_bytes(params, bits);
        let mut out = header(
            ObjectKind::CompressedBatch,
            &params.fingerprint(),
            5 + cts.len() * (8 + 2 * poly),
        );
        out.extend_from_slice(&(cts.len() as u32).to_le_bytes());
        out.push(bits as u8);
        for c in cts {
            out.extend_from_slice(&c.noise_log2.to_le_bytes());
            for poly in &c.coeffs {
                out = pack(out, poly, bits);
            }
        }
        out
    }

    /// Serialized size of `count` compressed ciphertexts, without serializing.
    pub fn batch_serialized_len(params: &BfvParameters, bits: u32, count: usize) -> usize {
        HEADER_LEN + 5 + count * (8 + 2 * compressed_poly_bytes(params, bits))
    }

    /// Reads at most `max_count` compressed ciphertexts of `bits` bits (the width the answer
    /// announced) for a parameter set.
    pub fn batch_from_bytes(
        bytes: &[u8],
        params: &Arc<BfvParameters>,
        bits: u32,
        max_count: usize,
    ) -> Result<Vec<Self>, SerialError> {
        let mut r = read_checked(bytes, ObjectKind::CompressedBatch, params)?;
        let count = r.count(max_count)?;
        let found = r.u8("compressed bits")? as u32;
        let prime_bits: u32 = params.q.moduli().iter().map(|m| m.bits()).sum();
        if found != bits || !(1..=MAX_COMPRESSED_BITS.min(prime_bits)).contains(&bits) {
            return Err(SerialError::Malformed {
                what: "compressed bits",
                detail: format!(
                    "{found} bits per coefficient; expected {bits}, at most {}",
                    MAX_COMPRESSED_BITS.min(prime_bits)
                ),
            });
        }
        let poly = compressed_poly_bytes(params, bits);
        expect_len(
            &r,
            count.saturating_mul(8 + 2 * poly),
            "compressed ciphertexts",
        )?;
        let n = params.degree();
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let noise =
                f64::from_le_bytes(r.take(8, "noise estimate")?.try_into().unwrap_or([0; 8]));
            let noise = plausible_noise(noise, params)?;
            let c0 = unpack(r.take(poly, "compressed polynomial")?, n, bits);
            let c1 = unpack(r.take(poly, "compressed polynomial")?, n, bits);
            out.push(CompressedCiphertext {
                params: params.clone(),
                bits,
                coeffs: [c0, c1],
                noise_log2: noise,
            });
        }
        r.finish()?;
        Ok(out)
    }
}

impl Plaintext {
    /// Serializes the plaintext, coefficients packed to the width of t.
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = &self.params;
        let width = p.plain.bits();
        let out = header(
            ObjectKind::Plaintext,
            &p.fingerprint(),
            (width as usize * p.degree()).div_ceil(8),
        );
        pack(out, &self.coeffs, width)
    }

    /// Reads a plaintext for a parameter set.
    pub fn from_bytes(bytes: &[u8], params: &Arc<BfvParameters>) -> Result<Self, SerialError> {
        let mut r = read_checked(bytes, ObjectKind::Plaintext, params)?;
        let width = params.plain.bits();
        let n = params.degree();
        let len = (width as usize * n).div_ceil(8);
        expect_len(&r, len, "plaintext")?;
        let coeffs = unpack(r.take(len, "plaintext")?, n, width);
        let t = params.plain_modulus();
        if let Some((index, &value)) = coeffs.iter().enumerate().find(|(_, &v)| v >= t) {
            return Err(SerialError::CoefficientOutOfRange {
                limb: 0,
                index,
                value,
                modulus: t,
            });
        }
        Ok(Plaintext {
            params: params.clone(),
            coeffs,
        })
    }
}
