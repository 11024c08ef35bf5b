//! Status codes, the thread-local error message, and the panic boundary
//! every exported function goes through.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Outcome of a libserl call. `SERL_OK` (0) is success.
pub type serl_status = u32;

/// Success.
pub const SERL_OK: serl_status = 0;
/// A required pointer was NULL, a string was not UTF-8, an array was empty,
/// or a value was out of range.
pub const SERL_ERR_INVALID_ARGUMENT: serl_status = 1;
/// Input data could not be used (e.g. a result that cannot become a C string).
pub const SERL_ERR_BAD_DATA: serl_status = 2;
/// Reading or writing a file failed.
pub const SERL_ERR_IO: serl_status = 3;
/// The operation failed while running.
pub const SERL_ERR_RUNTIME: serl_status = 4;
/// A bug inside libserl was caught at the boundary; the message says where.
pub const SERL_ERR_PANIC: serl_status = 5;

/// An error on its way to C: a status and a message.
#[derive(Debug, thiserror::Error)]
#[cfg_attr(not(feature = "trainer"), allow(dead_code))]
pub(crate) enum FfiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    BadData(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Runtime(String),
}

impl FfiError {
    fn status(&self) -> serl_status {
        match self {
            FfiError::InvalidArgument(_) => SERL_ERR_INVALID_ARGUMENT,
            FfiError::BadData(_) => SERL_ERR_BAD_DATA,
            FfiError::Io(_) => SERL_ERR_IO,
            FfiError::Runtime(_) => SERL_ERR_RUNTIME,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs an exported function's body: errors and panics become a status and
/// a message for [`serl_last_error`].
pub(crate) fn guard(body: impl FnOnce() -> Result<(), FfiError>) -> serl_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            SERL_OK
        }
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            e.status()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "internal error (panic caught at the C boundary): {what}"
            ));
            SERL_ERR_PANIC
        }
    }
}

/// The message of the last failed call on this thread ("" after a
/// successful call). The pointer stays valid until the next libserl call on
/// the same thread; do not free it. Never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn serl_last_error() -> *const c_char {
    // Reading the thread-local can only fail while the thread is being torn
    // down; then there is no message, and still no panic crosses into C.
    catch_unwind(|| LAST_ERROR.with(|e| e.borrow().as_ptr())).unwrap_or(c"".as_ptr())
}
