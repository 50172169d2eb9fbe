//! Why an answer of the server does not follow the protocol.

use he_layers::crypto::{ParameterError, SerialError};

/// An answer that does not follow the protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The answer's body could not be read.
    #[error("{0}")]
    Body(#[source] reqwest::Error),
    /// A JSON answer (or part) that does not parse.
    #[error("{part}: {source}")]
    Json {
        /// Which answer or part.
        part: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A server of another protocol version.
    #[error(
        "the server speaks protocol {}, this client {client}: use a client and server of the \
         same release",
        version_name(.server)
    )]
    Version {
        /// The server's version (`None`: version 1, or unknown).
        server: Option<u32>,
        /// This client's.
        client: u32,
    },
    /// A multipart answer that does not parse.
    #[error("{0}")]
    Multipart(#[source] multer::Error),
    /// A multipart answer without a part it must have.
    #[error("no {part} part")]
    MissingPart {
        /// The part.
        part: &'static str,
    },
    /// An answer at a level the parameters do not have.
    #[error("answer level {level}: {source}")]
    Level {
        /// The level named.
        level: usize,
        /// Why it is refused.
        #[source]
        source: ParameterError,
    },
    /// Compressed answers of another width than the answer's own sanitization plan gives
    /// (or without one): refused before anything is allocated for them.
    #[error(
        "compressed answers of {announced} bits per coefficient; the sanitization announced \
         allows {expected:?}"
    )]
    CompressionWidth {
        /// The width the server announced.
        announced: u32,
        /// The width the announced sanitization plan gives (`None`: no compression).
        expected: Option<u32>,
    },
    /// Ciphertexts that do not decode.
    #[error("ciphertexts: {0}")]
    Ciphertexts(#[source] SerialError),
    /// The plan changed between the start of a run and a re-planning.
    #[error(
        "the server's plan for this configuration changed during the run (another model or \
         parameters); run again"
    )]
    PlanChanged,
    /// The plaintext tail's output does not split into one row per image.
    #[error("tail output: {values} values do not split into {images} images")]
    TailOutput {
        /// Values out of the tail.
        values: usize,
        /// Images.
        images: usize,
    },
    /// Decrypted values that do not fill the shape the plan gives them.
    #[error("tensor shape {shape:?} does not hold {values} values")]
    OutputShape {
        /// The shape.
        shape: Vec<usize>,
        /// Values decrypted.
        values: usize,
    },
    /// The server sent another number of ciphertexts than the segment's output takes.
    #[error("{found} ciphertexts where the segment's output takes {expected}")]
    Count {
        /// What the plan says.
        expected: usize,
        /// What the server announced.
        found: usize,
    },
    /// The answer's body passed the most its ciphertexts can take.
    #[error("an answer over {limit} bytes, the most {count} ciphertexts can take: refused unread")]
    TooLarge {
        /// The cap.
        limit: usize,
        /// The ciphertexts expected.
        count: usize,
    },
    /// The answer repeats other layers than those asked for.
    #[error("an answer for layers {found:?} to a request for {asked:?}")]
    Layers {
        /// Asked for.
        asked: [usize; 2],
        /// Answered.
        found: [usize; 2],
    },
}

fn version_name(v: &Option<u32>) -> String {
    v.map_or("1 (or unknown)".to_string(), |p| p.to_string())
}
