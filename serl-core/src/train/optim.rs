//! The cosine-with-minimum learning-rate schedule with linear warm-up
//! (AdamW and clipping are the learner's, on the compute engine).

/// Learning rate at optimizer step `step` (0-based) of `total`: linear
/// warm-up over `warmup_ratio·total` steps, then cosine decay from `peak` to
/// `min_ratio·peak` (OpenRLHF's `cosine_with_min_lr`).
pub fn cosine_lr(step: usize, total: usize, peak: f64, warmup_ratio: f64, min_ratio: f64) -> f64 {
    let warmup = (warmup_ratio * total as f64).ceil() as usize;
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (min_ratio + (1.0 - min_ratio) * cosine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_minimum() {
        let total = 100;
        assert!((cosine_lr(0, total, 1.0, 0.03, 0.1) - 1.0 / 3.0).abs() < 1e-12);
        assert!((cosine_lr(2, total, 1.0, 0.03, 0.1) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(3, total, 1.0, 0.03, 0.1) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(100, total, 1.0, 0.03, 0.1) - 0.1).abs() < 1e-12);
        let mid = cosine_lr(3 + 97 / 2, total, 1.0, 0.03, 0.1);
        assert!((mid - 0.55).abs() < 0.02);
    }
}
