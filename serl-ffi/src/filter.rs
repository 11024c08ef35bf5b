//! The diversity filter as an opaque handle.

use std::ffi::c_char;

use serl_core::eval::DiversityFilter;

use crate::boundary::{FfiError, guard, serl_status};
use crate::convert::{out_arg, str_arg, str_array_arg};

/// SeRL's diversity filter: a pool of seeds plus the instructions kept so
/// far; an instruction whose ROUGE-L F against any of them is above the
/// threshold is rejected. Not thread-safe: use one handle from one thread at
/// a time (it may move between threads).
pub struct serl_filter {
    inner: DiversityFilter,
}

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
        let handle = Box::new(serl_filter {
            inner: DiversityFilter::new(&seeds, threshold),
        });
        // SAFETY: checked non-NULL above.
        unsafe { *filter_out = Box::into_raw(handle) };
        Ok(())
    })
}

/// Offers an instruction: `*kept_out` says whether it joined the pool;
/// `*max_out` (the highest ROUGE-L F against the pool) and `*argmax_out`
/// (its pool index, seeds first then kept instructions; -1 for an empty
/// pool) are written when not NULL.
///
/// # Safety
/// `filter` comes from [`serl_filter_new`] and is not used concurrently;
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
        if filter.is_null() {
            return Err(FfiError::InvalidArgument("filter is NULL".into()));
        }
        // SAFETY: per this function's contract.
        let instruction = unsafe { str_arg(instruction, "instruction") }?;
        let kept_out = out_arg(kept_out, "kept_out")?;
        // SAFETY: a live handle from serl_filter_new, used by this thread only.
        let f = unsafe { &mut (*filter).inner };
        let v = f.offer(instruction);
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

/// Frees a filter. NULL is a no-op.
///
/// # Safety
/// `filter` is NULL or a handle from [`serl_filter_new`] not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_filter_free(filter: *mut serl_filter) {
    let _ = std::panic::catch_unwind(|| {
        if !filter.is_null() {
            // SAFETY: allocated by Box::into_raw in serl_filter_new.
            drop(unsafe { Box::from_raw(filter) });
        }
    });
}
