//! C strings and arrays to Rust and back; every failure names the parameter.

use std::ffi::{CStr, CString, c_char};

use crate::boundary::FfiError;

/// A required UTF-8 string parameter.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, FfiError> {
    if p.is_null() {
        return Err(FfiError::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        FfiError::InvalidArgument(format!(
            "{name} is not valid UTF-8 (byte {})",
            e.valid_up_to()
        ))
    })
}

/// A required, non-empty array of UTF-8 strings.
///
/// # Safety
/// `items` is NULL or points to `len` pointers, each NULL or a
/// NUL-terminated string valid for the call.
pub(crate) unsafe fn str_array_arg<'a>(
    items: *const *const c_char,
    len: usize,
    name: &str,
) -> Result<Vec<&'a str>, FfiError> {
    if len == 0 {
        return Err(FfiError::InvalidArgument(format!("{name} is empty")));
    }
    if items.is_null() {
        return Err(FfiError::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: `items` points to `len` pointers per the caller's contract.
    let ptrs = unsafe { std::slice::from_raw_parts(items, len) };
    ptrs.iter()
        .enumerate()
        // SAFETY: each element is NULL or a valid C string (checked in str_arg).
        .map(|(i, &p)| unsafe { str_arg(p, &format!("{name}[{i}]")) })
        .collect()
}

/// Like [`str_array_arg`], but an empty array (any pointer, `len` 0) is allowed.
///
/// # Safety
/// As for [`str_array_arg`].
pub(crate) unsafe fn str_array_arg_or_empty<'a>(
    items: *const *const c_char,
    len: usize,
    name: &str,
) -> Result<Vec<&'a str>, FfiError> {
    if len == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: forwarded contract.
    unsafe { str_array_arg(items, len, name) }
}

/// A required out-pointer.
pub(crate) fn out_arg<T>(p: *mut T, name: &str) -> Result<*mut T, FfiError> {
    if p.is_null() {
        Err(FfiError::InvalidArgument(format!("{name} is NULL")))
    } else {
        Ok(p)
    }
}

/// A string the caller owns (freed with `serl_string_free`).
pub(crate) fn owned_c_string(s: &str, what: &str) -> Result<*mut c_char, FfiError> {
    CString::new(s).map(CString::into_raw).map_err(|_| {
        FfiError::BadData(format!(
            "{what} contains a NUL byte and cannot be returned as a C string"
        ))
    })
}

/// Two strings the caller owns, or neither (the first is freed when the
/// second cannot be made).
pub(crate) fn owned_c_string_pair(
    first: (&str, &str),
    second: (&str, &str),
) -> Result<(*mut c_char, *mut c_char), FfiError> {
    let a = owned_c_string(first.0, first.1)?;
    match owned_c_string(second.0, second.1) {
        Ok(b) => Ok((a, b)),
        Err(e) => {
            // SAFETY: `a` was just allocated here and is not handed out.
            unsafe { free_c_string(a) };
            Err(e)
        }
    }
}

/// Frees a string returned by libserl.
///
/// # Safety
/// `s` is NULL or a pointer returned by libserl and not freed yet.
pub(crate) unsafe fn free_c_string(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: allocated by CString::into_raw in owned_c_string.
        drop(unsafe { CString::from_raw(s) });
    }
}
