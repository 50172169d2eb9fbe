//! `param-tester`: which encryption parameters work for a model, and what they cost.

use clap::Parser;
use he_layers::plan::LayoutKind;
use indicatif::{ProgressBar, ProgressStyle};
use param_tester::{load, recommend, run, table, Recommendation, TesterConfig};
use std::path::PathBuf;
use std::process::ExitCode;

/// Run a model encrypted and in plaintext for each parameter set of a config, layer by layer
/// with the secret key at hand, and report per layer: noise budget left, predicted bound
/// against t/2 (overflow), error against the float model, whether the result equals the exact
/// integer mirror, time, ciphertexts and bytes; per set a verdict (ok / overflow / noise
/// exhausted / insecure) with the smallest fix. JSON report to --out or stdout, a table on
/// stderr.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Tester config: {"model", "images", "encryption_parameters": [...], "debug"}; see
    /// models/configs/*.tester.json. Paths are relative to the current folder.
    #[arg(long)]
    config: PathBuf,
    /// Write the JSON report here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Per-layer value samples in the report.
    #[arg(long)]
    debug: bool,
    /// Instead of testing the config's sets: search the 128-bit presets, plaintext moduli and
    /// re-encryption positions for the cheapest set that keeps every layer exact (using the
    /// first set's input_scale_bits and weight_bits), and print it as a client config.
    #[arg(long)]
    recommend: bool,
    /// With --recommend: search this layout only (`batch` or `packed`); default: both, and
    /// print the config of the one expected to cost less for --images.
    #[arg(long)]
    layout: Option<LayoutKind>,
    /// With --recommend: the number of images the recommendation is for (the batch layout
    /// runs up to N at once, the packed one two per ciphertext).
    #[arg(long, default_value_t = 1)]
    images: usize,
}

fn main() -> ExitCode {
    he_layers::tune_allocator();
    let args = Args::parse();
    let text = match std::fs::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", args.config.display());
            return ExitCode::FAILURE;
        }
    };
    let mut cfg: TesterConfig = match serde_json::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {e}", args.config.display());
            return ExitCode::FAILURE;
        }
    };
    cfg.debug |= args.debug;
    let loaded = match load(&cfg, std::path::Path::new(".")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let output = if args.recommend {
        let first = cfg.encryption_parameters.first();
        let input_bits = first.map_or(4, |s| s.input_scale_bits);
        let weight_bits = first.and_then(|s| s.weight_bits);
        let layouts = match args.layout {
            Some(l) => vec![l],
            None => vec![LayoutKind::Batch, LayoutKind::Packed],
        };
        let found: Vec<Recommendation> = layouts
            .iter()
            .filter_map(|&layout| {
                recommend(&loaded, input_bits, weight_bits, layout, |m| {
                    spinner.suspend(|| eprintln!("{m}"))
                })
            })
            .collect();
        spinner.finish_and_clear();
        let images = args.images.max(1);
        let Some(best) = found
            .iter()
            .min_by(|a, b| a.cost_for(images).total_cmp(&b.cost_for(images)))
        else {
            eprintln!("error: no preset set found that keeps every layer exact in {layouts:?}; lower input_scale_bits or weight_bits");
            return ExitCode::FAILURE;
        };
        eprintln!(
            "{}",
            table(&param_tester::Report {
                model: loaded.spec.name.clone(),
                images: loaded.images.batch(),
                sets: found.iter().map(|r| r.report.clone()).collect(),
            })
        );
        for r in &found {
            eprintln!(
                "{}: estimated {:.3e} NTTs for {images} image(s) ({:.3e} per group of {})",
                r.layout,
                r.cost_for(images),
                r.cost_per_group,
                r.images_per_group
            );
        }
        if let [a, b] = &found[..] {
            // The count from which the layout with the larger groups is cheaper.
            let (big, small) = if a.images_per_group >= b.images_per_group {
                (a, b)
            } else {
                (b, a)
            };
            if let Some(n) =
                (1..=big.images_per_group).find(|&n| big.cost_for(n) < small.cost_for(n))
            {
                eprintln!(
                    "{} is expected to be cheaper from {n} images on",
                    big.layout
                );
            }
        }
        eprintln!(
            "recommended for {images} image(s): the {} layout",
            best.layout
        );
        serde_json::to_string_pretty(&best.config).unwrap_or_default()
    } else {
        let n = cfg.encryption_parameters.len();
        let report = run(&cfg, &loaded, |k, m| {
            spinner.set_message(format!("set {}/{n}: {m}", k + 1))
        });
        spinner.finish_and_clear();
        eprintln!("{}", table(&report));
        serde_json::to_string_pretty(&report).unwrap_or_default()
    };
    match &args.out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, output) {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        None => println!("{output}"),
    }
    ExitCode::SUCCESS
}
