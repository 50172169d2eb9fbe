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

/// A human table of a report.
pub fn table(report: &Report) -> String {
    let mut s = format!("model {} on {} images\n", report.model, report.images);
    for set in &report.sets {
        s += &format!(
            "\n{} — {} — security {} — moduli {:?} — weights {} bits\n",
            set.name,
            verdict_line(&set.verdict),
            set.security.clone().unwrap_or_else(|| "-".into()),
            set.plain_moduli,
            set.weight_bits.map_or("-".into(), |w| w.to_string())
        );
        if set.layers.is_empty() {
            continue;
        }
        s += &format!(
            "  {:>3} {:<42} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6} {:>9} {:>6} {:>9}\n",
            "#", "layer", "budget", "pred.", "bound", "cap", "max err", "exact", "ms", "cts", "MB"
        );
        for l in &set.layers {
            s += &format!(
                "  {:>3} {:<42} {:>7} {:>7.1} {:>7.1} {:>7.1} {:>9.2e} {:>6} {:>9.0} {:>6} {:>9.1}\n",
                l.index,
                l.description.chars().take(42).collect::<String>(),
                l.noise_budget,
                l.predicted_noise_budget,
                l.bound_bits,
                l.capacity_bits,
                l.max_error,
                if l.equals_mirror { "yes" } else { "NO" },
                l.ms,
                l.ciphertexts,
                l.bytes as f64 / 1e6
            );
            if let Some(p) = &l.sanitization {
                s += &format!(
                    "      sanitized: {} → {} primes, flood 2^{} (λ = {}), budget {} → {} bits, {:.1} → {:.1} MB, {:.0} ms\n",
                    p.from_level,
                    p.level,
                    p.flood_log2,
                    p.flood_bits,
                    l.budget_before_sanitization.unwrap_or(0),
                    l.noise_budget,
                    l.bytes_before_sanitization.unwrap_or(0) as f64 / 1e6,
                    l.bytes as f64 / 1e6,
                    l.sanitize_ms.unwrap_or(0.0)
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
    }
    s
}
