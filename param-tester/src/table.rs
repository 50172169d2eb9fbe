//! The human-readable table and verdict lines.

use crate::*;

/// The verdict in words.
pub fn verdict_line(v: &Verdict) -> String {
    match v {
        Verdict::Ok => "OK".to_string(),
        Verdict::Insecure { message } => format!("INSECURE: {message}"),
        Verdict::Invalid { message } => format!("INVALID: {message}"),
        Verdict::Overflow { layer, fix } => format!("OVERFLOW at layer {layer}: {fix}"),
        Verdict::NoiseExhausted { layer, fix } => {
            format!("NOISE EXHAUSTED at layer {layer}: {fix}")
        }
        Verdict::NoRoomForCircuitPrivacy { layer, fix } => {
            format!("NO ROOM FOR CIRCUIT PRIVACY after layer {layer}: {fix}")
        }
    }
}

/// How many images the table shows one by one (the JSON report has them all).
const PER_IMAGE_ROWS: usize = 4;

/// A human table of a report.
pub fn table(report: &Report) -> String {
    let mut s = format!(
        "model {} (input {:?}{}) on {} images\n",
        report.model,
        report.input_shape,
        if report.input_shape_guessed {
            ", guessed: give \"input_shape\" if it is not the model's"
        } else {
            ""
        },
        report.images
    );
    for set in &report.sets {
        s += &format!(
            "\n{} — {} — security {} — moduli {:?} — weights {} bits\n",
            set.name,
            verdict_line(&set.verdict),
            set.security.clone().unwrap_or_else(|| "-".into()),
            set.plain_moduli,
            set.weight_bits.map_or("-".into(), |w| w.to_string())
        );
        if let Some(c) = &set.chosen {
            s += &format!("  {}\n", chosen_line(c));
        }
        if set.layers.is_empty() {
            continue;
        }
        s += &format!(
            "  {:>3} {:<42} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6} {:>9} {:>6} {:>9}\n",
            "#", "layer", "budget", "pred.", "bound", "cap", "max err", "exact", "ms", "cts", "MB"
        );
        for l in &set.layers {
            let Some(e) = &l.encrypted else {
                s += &format!(
                    "  {:>3} {:<42} {:>7} {:>7} {:>7} {:>7} {:>9.2e} {:>6} {:>9.1}  client, plaintext, after decryption\n",
                    l.index,
                    l.description.chars().take(42).collect::<String>(),
                    "-",
                    "-",
                    "-",
                    "-",
                    l.max_error,
                    "-",
                    l.ms,
                );
                continue;
            };
            s += &format!(
                "  {:>3} {:<42} {:>7} {:>7.1} {:>7.1} {:>7.1} {:>9.2e} {:>6} {:>9.0} {:>6} {:>9.1}\n",
                l.index,
                l.description.chars().take(42).collect::<String>(),
                e.noise_budget,
                e.predicted_noise_budget,
                e.bound_bits,
                e.capacity_bits,
                l.max_error,
                if e.equals_mirror { "yes" } else { "NO" },
                l.ms,
                e.ciphertexts,
                e.bytes as f64 / 1e6
            );
            if let Some(p) = &e.sanitization {
                s += &format!(
                    "      sanitized: {} → {} primes, flood 2^{} (λ = {}), budget {} → {} bits, {:.1} → {:.1} MB, {:.0} ms\n",
                    p.from_level,
                    p.level,
                    p.flood_log2,
                    p.flood_bits,
                    e.budget_before_sanitization.unwrap_or(0),
                    e.noise_budget,
                    e.bytes_before_sanitization.unwrap_or(0) as f64 / 1e6,
                    e.bytes as f64 / 1e6,
                    e.sanitize_ms.unwrap_or(0.0)
                );
            }
        }
        s += &format!(
            "  keys: public {:.1} MB, relinearization {:.1} MB; upload {:.1} MB, download {:.1} MB per batch; total {:.1} s; {:.2} ms/image; labels agree with the float model on {:.1}%{}\n",
            set.public_key_bytes as f64 / 1e6,
            set.relin_key_bytes as f64 / 1e6,
            set.upload_bytes as f64 / 1e6,
            set.download_bytes as f64 / 1e6,
            set.total_ms / 1000.0,
            set.ms_per_image,
            100.0 * set.label_agreement,
            set.accuracy.map_or(String::new(), |a| format!("; accuracy {:.1}%", 100.0 * a))
        );
        if let Some(r) = set.reference_agreement {
            s += &format!(
                "  labels agree with the reference outputs on {:.1}%\n",
                100.0 * r
            );
        }
        for im in set.per_image.iter().take(PER_IMAGE_ROWS) {
            s += &format!(
                "  image {:>3}: encrypted label {}, float {}{}{} — decrypted {:?}\n",
                im.index,
                im.encrypted_label,
                im.float_label,
                im.reference_label
                    .map_or(String::new(), |r| format!(", reference {r}")),
                im.label.map_or(String::new(), |r| format!(", true {r}")),
                im.decrypted
                    .iter()
                    .take(10)
                    .map(|v| (v * 1000.0).round() / 1000.0)
                    .collect::<Vec<_>>()
            );
        }
        if set.per_image.len() > PER_IMAGE_ROWS {
            s += &format!(
                "  … {} more images in the JSON report (per_image)\n",
                set.per_image.len() - PER_IMAGE_ROWS
            );
        }
    }
    s
}
