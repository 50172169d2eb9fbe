//! `param-tester`: which encryption parameters work for a model, and what they cost.

use clap::Parser;
use he_layers::plan::LayoutKind;
use indicatif::{ProgressBar, ProgressStyle};
use param_tester::{
    chosen_line, fill_in, load, plot_svg, recommend, run, table, ParameterSet, Recommendation,
    TesterConfig,
};
use std::path::PathBuf;
use std::process::ExitCode;

/// Run a model encrypted and in plaintext for each parameter set of a config, layer by layer
/// with the secret key at hand, and report per layer: noise budget left, predicted bound
/// against t/2 (overflow), error against the float model, whether the result equals the exact
/// integer mirror, time, ciphertexts and bytes; per set a verdict (ok / overflow / noise
/// exhausted / insecure) with the smallest fix. Layers after the encryptable prefix (ReLU,
/// MaxPool, …) are listed as run by the client after decryption, and run so: labels,
/// agreement and accuracy are end to end, with every image's decrypted and float outputs.
/// A set may give only "degree": the input scale and plaintext modulus are then chosen (the
/// smallest within the config's max_quantization_error and min_agreement) and reported.
/// JSON report to --out or stdout, a table on stderr, an SVG with --plot.
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
    /// The label agreement with the float model, on the config's images, that --recommend
    /// and the automatic input-scale and plaintext-modulus choice keep (overrides the
    /// config's min_agreement; default 0.995).
    #[arg(long)]
    min_agreement: Option<f64>,
    /// Also draw the report as an SVG: noise budget and error per layer, one series per
    /// parameter set, layouts in the legend, sanitized answers marked.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
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
    if let Some(a) = args.min_agreement {
        if !(0.0..=1.0).contains(&a) {
            eprintln!("error: --min-agreement {a}: a fraction between 0 and 1");
            return ExitCode::FAILURE;
        }
        cfg.min_agreement = a;
    }
    let loaded = match load(&cfg, std::path::Path::new(".")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if loaded.input_shape_guessed {
        eprintln!(
            "note: the pickle does not record its input shape; guessed {:?} (give \"input_shape\" in the config or the model folder's manifest)",
            loaded.spec.input_shape
        );
    }
    // Drawn only when stderr is a terminal (indicatif hides it otherwise).
    let spinner = ProgressBar::new(cfg.encryption_parameters.len().max(1) as u64);
    spinner.set_style(
        ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} sets {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let output = if args.recommend {
        let first = cfg.encryption_parameters.first();
        let input_bits = match first.and_then(|s| s.input_scale_bits) {
            Some(b) => b,
            None => {
                // The smallest scale within the quantization bound at the first set's (or
                // N = 8192's) degree.
                let base = ParameterSet {
                    degree: first.map_or(8192, |s| s.degree),
                    weight_bits: first.and_then(|s| s.weight_bits),
                    ..ParameterSet::open(8192)
                };
                match fill_in(&loaded, &cfg, &base) {
                    Ok((set, Some(chosen))) => {
                        spinner.suspend(|| eprintln!("{}", chosen_line(&chosen)));
                        set.input_scale_bits.unwrap_or(4)
                    }
                    Ok((set, None)) => set.input_scale_bits.unwrap_or(4),
                    Err(e) => {
                        eprintln!("error: choosing an input scale: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        };
        let weight_bits = first.and_then(|s| s.weight_bits);
        let layouts = match args.layout {
            Some(l) => vec![l],
            None => vec![LayoutKind::Batch, LayoutKind::Packed],
        };
        let found: Vec<Recommendation> = layouts
            .iter()
            .filter_map(|&layout| {
                recommend(&loaded, &cfg, input_bits, weight_bits, layout, |m| {
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
            eprintln!(
                "error: no preset set found that keeps every layer exact{} in {layouts:?}; {}",
                if weight_bits.is_none() {
                    format!(" and {:.1}% label agreement", 100.0 * cfg.min_agreement)
                } else {
                    String::new()
                },
                if weight_bits.is_none() {
                    "lower input_scale_bits, give weight_bits, or lower --min-agreement"
                } else {
                    "lower input_scale_bits or weight_bits"
                }
            );
            return ExitCode::FAILURE;
        };
        let report = param_tester::Report {
            model: loaded.spec.name.clone(),
            images: loaded.images.batch(),
            input_shape: loaded.spec.input_shape.clone(),
            input_shape_guessed: loaded.input_shape_guessed,
            sets: found.iter().map(|r| r.report.clone()).collect(),
        };
        eprintln!("{}", table(&report));
        if let Some(path) = &args.plot {
            if let Err(e) = plot_svg(&report, path) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        for r in &found {
            eprintln!(
                "{}: the integer model's labels agree with the float model's on {:.1}% of the {} images ({})",
                r.layout,
                100.0 * r.agreement,
                loaded.images.batch(),
                if r.agreement >= cfg.min_agreement {
                    format!("kept ≥ {:.1}%", 100.0 * cfg.min_agreement)
                } else {
                    format!(
                        "UNDER {:.1}%, at the weight_bits the config gives: raise it or input_scale_bits",
                        100.0 * cfg.min_agreement
                    )
                }
            );
            if let Some(p) = &r.passed_over {
                eprintln!(
                    "  keeping it costs {:.2}× the cheapest candidate passed over ({}: {}-bit weights, {:.1}% agreement, estimated {:.3e} NTTs per group)",
                    r.cost_per_group / p.cost_per_group.max(f64::MIN_POSITIVE),
                    p.set.label(),
                    p.weight_bits,
                    100.0 * p.agreement,
                    p.cost_per_group
                );
            }
        }
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
            spinner.set_position(k as u64);
            spinner.set_message(format!("set {}/{n}: {m}", k + 1))
        });
        spinner.finish_and_clear();
        eprintln!("{}", table(&report));
        if let Some(path) = &args.plot {
            if let Err(e) = plot_svg(&report, path) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            eprintln!("plot written to {}", path.display());
        }
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
