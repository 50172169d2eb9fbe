//! Prints a model's layers, shapes, scales, bounds and multiplicative depth for a parameter set.

use clap::Parser;
use he_layers::crypto::BfvParameters;
use net_builder::{build_model, load_model, BuildOptions, PickleOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Inspect a model exported from PyTorch (ONNX, or a PyCrCNN `.pt` pickle): its layers and,
/// for a BFV parameter set, the fixed-point scale, the exact worst-case bound of every layer
/// against the plaintext capacity t/2, and the multiplicative depth.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Model file: `model.onnx` (weights may sit in `model.onnx.data` beside it) or a `.pt`
    /// whole-model pickle.
    model: PathBuf,
    /// Ring degree of the 128-bit preset to evaluate against (2048, 4096, 8192, 16384, 32768).
    #[arg(long, default_value_t = 8192)]
    degree: usize,
    /// Plaintext modulus bits (the largest batching prime of this size is used).
    #[arg(long, default_value_t = 40)]
    plain_bits: u32,
    /// Input scale: inputs are held as round(x · 2^bits).
    #[arg(long, default_value_t = 8)]
    input_scale_bits: u32,
    /// Weight precision: each layer's largest |weight| maps to at most 2^bits; default: the
    /// largest that keeps every layer under t/2.
    #[arg(long)]
    weight_bits: Option<u32>,
    /// Smallest input value the model accepts.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    input_min: f64,
    /// Largest input value the model accepts.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    input_max: f64,
    /// Re-encrypt after these layer indices (comma-separated), as PyCrCNN's rencrypt_positions.
    #[arg(long, value_delimiter = ',')]
    reencrypt_after: Vec<usize>,
    /// Input shape for pickles, e.g. 1,28,28 (pickles do not record it).
    #[arg(long, value_delimiter = ',')]
    input_shape: Option<Vec<usize>>,
    /// Extra class names of custom modules computing x² (pickles only).
    #[arg(long)]
    square_class: Vec<String>,
    /// Measure accuracy on an IDX image file (e.g. models/data/mnist-t10k-images-idx3-ubyte.gz).
    #[arg(long, requires = "labels")]
    images: Option<PathBuf>,
    /// The matching IDX label file.
    #[arg(long, requires = "images")]
    labels: Option<PathBuf>,
    /// How many images to evaluate (from the first).
    #[arg(long, default_value_t = 10_000)]
    count: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut popts = PickleOptions::default();
    popts
        .square_classes
        .extend(args.square_class.iter().cloned());
    popts.input_shape = args.input_shape.clone();
    let spec = load_model(&args.model, &popts)?;
    let t = BfvParameters::batching_plain_modulus(args.degree, args.plain_bits)
        .ok_or("no batching prime of that size for this degree")?;
    let params = BfvParameters::preset(args.degree, t)?;
    let built = build_model(
        &spec,
        &params,
        &BuildOptions {
            input_scale_bits: args.input_scale_bits,
            weight_bits: args.weight_bits,
            input_min: args.input_min,
            input_max: args.input_max,
            reencrypt_after: args.reencrypt_after.clone(),
            ..Default::default()
        },
    )?;
    let model = &built.model;
    println!("model {} — input {:?}", spec.name, spec.input_shape);
    println!(
        "parameters: N={}, t={} ({} bits), log q={} ({}), fingerprint {}",
        params.degree(),
        t,
        args.plain_bits,
        params.total_modulus_bits(),
        params.achieved_security(),
        params.fingerprint_hex()
    );
    println!(
        "quantization: inputs × 2^{}, weights of {} bits per layer{}; capacity t/2 = 2^{:.1}",
        args.input_scale_bits,
        built.weight_bits,
        if built.weight_bits_auto {
            " (chosen: the most without overflow)"
        } else {
            ""
        },
        (model.capacity() as f64).log2()
    );
    println!();
    println!(
        "{:>3}  {:<24} {:<46} {:<14} {:>9} {:>9} {:>10} {:>5} {:>7}  note",
        "#", "name", "layer", "shape", "scale", "bound", "error", "depth", "budget"
    );
    let budgets = model.estimate_noise_budgets();
    let prefix = model.encryptable_prefix();
    for p in model.predict() {
        if p.index >= prefix {
            // The plaintext tail: the client runs it in floating point after decrypting, so
            // no scale, bound or budget applies.
            println!(
                "{:>3}  {:<24} {:<46} {:<14} {:>9} {:>9} {:>10} {:>5} {:>7}  client, after decryption",
                p.index,
                truncate(&p.name, 24),
                truncate(&p.description, 46),
                format!("{:?}", p.output.shape),
                "-",
                "-",
                "-",
                "-",
                "-",
            );
            continue;
        }
        let note = if !p.encryptable {
            "client re-encrypts"
        } else if p.overflow {
            "OVERFLOW"
        } else {
            ""
        };
        println!(
            "{:>3}  {:<24} {:<46} {:<14} {:>9} {:>9} {:>10.2e} {:>5} {:>7.1}  {}",
            p.index,
            truncate(&p.name, 24),
            truncate(&p.description, 46),
            format!("{:?}", p.output.shape),
            format!("2^{:.1}", p.output.scale.log2()),
            format!("2^{:.1}", p.output.bound_bits()),
            p.output.error_bound,
            p.depth,
            budgets[p.index],
            note
        );
    }
    println!();
    println!(
        "encryptable prefix: layers 0..{prefix} (bounds, overflow and the weight choice judge \
         only these); multiplicative depth per encrypted segment ≤ {}",
        model.max_depth()
    );
    if prefix < model.layers().len() {
        println!(
            "plaintext tail: layers {prefix}..{} run on the client after the last decryption",
            model.layers().len()
        );
    }
    if let (Some(images), Some(labels)) = (&args.images, &args.labels) {
        let x = net_builder::data::idx_images(images, 0, args.count)?;
        let y = net_builder::data::idx_labels(labels, 0, args.count)?;
        let acc = net_builder::eval::accuracy(&spec, &built, &x, &y, 1000)?;
        println!(
            "accuracy on {} images: float {:.2}%, integer mirror {:.2}% (labels agree on {:.2}%)",
            acc.images,
            100.0 * acc.float,
            100.0 * acc.mirror,
            100.0 * acc.agreement
        );
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}
