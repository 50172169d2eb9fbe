//! `param-tester`: runs a model encrypted and in plaintext for each parameter set of a config,
//! layer by layer with the secret key at hand, and reports per layer the noise budget left,
//! the predicted interval against t/2, the error against the float reference, whether it equals
//! the integer mirror exactly, time, and ciphertext count and bytes; per set a verdict and the
//! smallest change that would fix it. The plaintext tail (ReLU, MaxPool, … after the
//! encryptable prefix) is run on the decrypted values as the client runs it, so labels are
//! end to end. A set may leave the input scale and plaintext modulus open: the tester picks
//! the smallest within a stated quantization bound. `recommend` searches for the cheapest set
//! that works and keeps accuracy, per layout; `plot_svg` draws budget and error per layer.
#![warn(missing_docs)]

mod choose;
mod config;
mod error;
mod fixes;
mod load;
mod observe;
mod plot;
mod recommend;
mod report;
mod run;
mod table;

pub use choose::{fill_in, quantization_quality, Chosen, MAX_AUTO_INPUT_SCALE_BITS};
pub use config::{
    ImagesConfig, ParameterSet, TesterConfig, DEFAULT_MAX_QUANTIZATION_ERROR, DEFAULT_MIN_AGREEMENT,
};
pub use error::TesterError;
pub(crate) use fixes::{fix_for_noise, fix_for_overflow};
pub use load::{load, Loaded};
pub(crate) use observe::{segment_ending, Observations};
pub use plot::{plot_svg, PlotError};
pub use recommend::{recommend, PassedOver, Recommendation};
pub use report::{EncryptedLayerReport, ImageReport, LayerReport, Report, SetReport, Verdict};
pub use run::{chosen_line, run, run_set};
pub use table::{table, verdict_line};
