//! `param-tester`: runs a model encrypted and in plaintext for each parameter set of a config,
//! layer by layer with the secret key at hand, and reports per layer the noise budget left,
//! the predicted interval against t/2, the error against the float reference, whether it equals
//! the integer mirror exactly, time, and ciphertext count and bytes; per set a verdict and the
//! smallest change that would fix it. `recommend` searches for the cheapest set that works, per layout.
#![warn(missing_docs)]

mod config;
mod error;
mod fixes;
mod load;
mod observe;
mod recommend;
mod report;
mod run;
mod table;

pub use config::{ImagesConfig, ParameterSet, TesterConfig};
pub use error::TesterError;
pub(crate) use fixes::{fix_for_noise, fix_for_overflow};
pub use load::{load, Loaded};
pub(crate) use observe::{segment_ending, Observations};
pub use recommend::{recommend, Recommendation};
pub use report::{LayerReport, Report, SetReport, Verdict};
pub use run::{run, run_set};
pub use table::{table, verdict_line};
