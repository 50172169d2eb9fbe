//! Why a configuration, its parameters or the inputs of a run are unusable.

use he_layers::model::ModelError;
use he_layers::protocol::ProtocolError;
use std::path::PathBuf;

/// A config file, the parameters or the inputs of a run are unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A JSON file (config, parameters, sample labels) that does not parse.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Encryption parameters that do not resolve (insecure, inconsistent, …).
    #[error("{0}")]
    Parameters(#[from] ProtocolError),
    /// Keys made for other encryption parameters than the config's.
    #[error(
        "the keys were made for other encryption parameters; run `client keygen` with this \
         config's parameters"
    )]
    KeysMismatch,
    /// No layout was named and the server refused every one for these parameters.
    #[error("no layout fits these parameters ({refused}); name one with \"layout\" to see the server's reason")]
    NoLayout {
        /// Per layout, what the server answered.
        refused: String,
    },
    /// More images than slots, or none.
    #[error("{images} images: between 1 and N = {slots} fit one batch")]
    BatchSize {
        /// Images given.
        images: usize,
        /// Slots of one ciphertext (N).
        slots: usize,
    },
    /// Images of another shape than the model takes.
    #[error("images of shape {found:?}; {net} expects {expected:?}")]
    ImageShape {
        /// The images' shape.
        found: Vec<usize>,
        /// The model.
        net: String,
        /// The shape it takes.
        expected: Vec<usize>,
    },
    /// Images that do not quantize as the model expects.
    #[error("{source} (the model accepts [{}, {}])", range[0], range[1])]
    InputRange {
        /// Why quantizing failed.
        #[source]
        source: Box<ModelError>,
        /// The values the model accepts.
        range: [f64; 2],
    },
    /// A run that does not start at layer 0.
    #[error(
        "layers [{first}, {last}): a run starts at layer 0, from the images (the client holds \
         no activations of a later layer)"
    )]
    LayersStart {
        /// First layer asked for.
        first: usize,
        /// End of the layers asked for.
        last: usize,
    },
    /// A layer the run covers could overflow the plaintext modulus.
    #[error(
        "layer {layer} ({name}) could overflow the plaintext modulus (capacity \
         2^{capacity_bits:.1}): use larger or more plaintext moduli, a lower input_scale_bits or \
         weight_bits, or a re-encryption position before it"
    )]
    Overflow {
        /// Layer index.
        layer: usize,
        /// Layer name.
        name: String,
        /// log2 of the plaintext capacity.
        capacity_bits: f64,
    },
    /// The transport was given no keys for a plaintext modulus of the plan.
    #[error("no keys for plaintext modulus {component}")]
    NoKeysForModulus {
        /// The modulus' position in the plan.
        component: usize,
    },
    /// The demo's model is not where it should be.
    #[error("{} not found: run the demo from the repository root, or pass --models", path.display())]
    DemoModelMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An image of another shape than the first.
    #[error("{}: shape {shape:?} differs from the first image ({first:?})", path.display())]
    ImageShapeDiffers {
        /// The image.
        path: PathBuf,
        /// Its shape.
        shape: Vec<usize>,
        /// The first image's shape.
        first: Vec<usize>,
    },
    /// No image given.
    #[error("no images given")]
    NoImages,
    /// Images that do not make one batch.
    #[error("inconsistent images")]
    InconsistentImages,
}
