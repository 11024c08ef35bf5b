//! The diversity filter as an opaque handle.

use std::ffi::c_char;

use serl_core::eval::DiversityFilter;

use crate::boundary::{FfiError, guard, serl_status};
use crate::convert::{out_arg, str_arg, str_array_arg};
use crate::handles::{Access, lease, register, unregister};

/// SeRL's diversity filter: a pool of seeds plus the instructions kept so
/// far; an instruction whose ROUGE-L F against any of them is above the
/// threshold is rejected. One call at a time per handle (it may move
/// between threads); a second call meanwhile, or a handle used after
/// [`serl_filter_free`], is refused with SERL_ERR_INVALID_ARGUMENT.
pub struct serl_filter {
    inner: DiversityFilter,
}

/// The kind name of filter handles in messages.
const FILTER: &str = "filter";

/// Creates a filter whose pool starts with `n_seeds` seed instructions;
/// `threshold` is in [0, 1] (SeRL: 0.7). Free it with [`serl_filter_free`].
///
/// # Safety
/// `seeds` points to `n_seeds` NUL-terminated strings; `filter_out` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_filter_new(
    seeds: *const *const c_char,
    n_seeds: usize,
    threshold: f64,
    filter_out: *mut *mut serl_filter,
) -> serl_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let seeds = unsafe { str_array_arg(seeds, n_seeds, "seeds") }?;
        let filter_out = out_arg(filter_out, "filter_out")?;
        if !(0.0..=1.0).contains(&threshold) {
            return Err(FfiError::InvalidArgument(format!(
                "threshold {threshold} is outside [0, 1]"
            )));
        }
        let handle = register(
            serl_filter {
                inner: DiversityFilter::new(&seeds, threshold),
            },
            FILTER,
        );
        // SAFETY: checked non-NULL above.
        unsafe { *filter_out = handle };
        Ok(())
    })
}

/// Offers an instruction: `*kept_out` says whether it joined the pool;
/// `*max_out` (the highest ROUGE-L F against the pool) and `*argmax_out`
/// (its pool index, seeds first then kept instructions; -1 for an empty
/// pool) are written when not NULL.
///
/// # Safety
/// `filter` is NULL or a handle from libserl;
/// `instruction` is a NUL-terminated string; `kept_out` is valid; the other
/// out-pointers are NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_filter_offer(
    filter: *mut serl_filter,
    instruction: *const c_char,
    kept_out: *mut bool,
    max_out: *mut f64,
    argmax_out: *mut i64,
) -> serl_status {
    guard(|| {
        let mut f = lease(filter, FILTER, Access::Exclusive)?;
        // SAFETY: per this function's contract.
        let instruction = unsafe { str_arg(instruction, "instruction") }?;
        let kept_out = out_arg(kept_out, "kept_out")?;
        let v = f.get().inner.offer(instruction);
        // SAFETY: checked non-NULL above / optional pointers tested.
        unsafe {
            *kept_out = v.kept;
            if !max_out.is_null() {
                *max_out = v.max_rouge_l;
            }
            if !argmax_out.is_null() {
                *argmax_out = v.argmax.map_or(-1, |i| i as i64);
            }
        }
        Ok(())
    })
}

/// Frees a filter. NULL is a no-op; a handle freed already is left alone,
/// with the reason in [`serl_last_error`](crate::serl_last_error).
///
/// # Safety
/// `filter` is NULL or a handle from libserl.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_filter_free(filter: *mut serl_filter) {
    guard(|| {
        drop(unregister(filter, FILTER)?);
        Ok(())
    });
}
