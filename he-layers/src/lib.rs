//! `he-layers`: an RNS-BFV homomorphic encryption scheme ([`crypto`]) and, on top of it, the
//! encoded neural-network layers the server runs on ciphertexts.
#![warn(missing_docs)]

pub mod crypto;
