//! Whether work fits in this machine's memory, asked before allocating it:
//! a model or a run too large for the machine is an error with the sizes,
//! not a process killed by the kernel.

use super::ModelError;
use super::config::ModelConfig;

/// The memory the machine can give a process: RAM plus swap (Linux's
/// `/proc/meminfo`); `None` where that is not known.
pub fn machine_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some(field("MemTotal:")? + field("SwapTotal:").unwrap_or(0))
}

/// Fails when `need` bytes for `what` exceed `available` (unknown: passes).
pub fn ensure_fits(
    need: u64,
    available: Option<u64>,
    what: &str,
    origin: &str,
) -> Result<(), ModelError> {
    match available {
        Some(have) if need > have => Err(ModelError::TooLarge(format!(
            "{origin}: {what} take about {:.1} GiB, more than this machine's {:.1} GiB of memory and swap",
            gib(need),
            gib(have)
        ))),
        _ => Ok(()),
    }
}

/// Fails when `copies` f32 copies of `cfg`'s weights (`what`, e.g. "the f32
/// weights") exceed this machine's memory and swap.
pub fn ensure_weights_fit(
    cfg: &ModelConfig,
    copies: u64,
    what: &str,
    origin: &str,
) -> Result<(), ModelError> {
    let params = cfg.parameter_count();
    ensure_fits(
        params.saturating_mul(4 * copies),
        machine_bytes(),
        &format!("{what} of {params} parameters"),
        origin,
    )
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_the_machine_are_errors_naming_them() {
        let e = ensure_fits(3 << 30, Some(2 << 30), "the weights", "m.gguf")
            .expect_err("3 GiB do not fit in 2");
        assert_eq!(
            e.to_string(),
            "m.gguf: the weights take about 3.0 GiB, more than this machine's 2.0 GiB of memory and swap"
        );
        assert!(ensure_fits(1 << 30, Some(2 << 30), "x", "y").is_ok());
        assert!(ensure_fits(u64::MAX, None, "x", "y").is_ok());
        if cfg!(target_os = "linux") {
            assert!(machine_bytes().is_some_and(|b| b > 1 << 28));
        }
    }
}
