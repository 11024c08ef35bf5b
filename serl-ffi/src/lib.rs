//! libserl's C ABI (`libserl.so` / `libserl.a`, header `include/serl.h`).
//!
//! A thin layer over [`serl_core::eval`] and [`serl_core::train`]: it converts C strings and arrays,
//! maps errors to a [`serl_status`] and a thread-local message, and catches
//! every panic at the boundary. No decision is made here.
#![allow(non_camel_case_types)]

mod boundary;
mod convert;
mod filter;
mod handles;
mod toolkit;
#[cfg(feature = "trainer")]
mod trainer;

pub use boundary::{
    SERL_ERR_BAD_DATA, SERL_ERR_INVALID_ARGUMENT, SERL_ERR_IO, SERL_ERR_PANIC, SERL_ERR_RUNTIME,
    SERL_OK,
};
pub use boundary::{serl_last_error, serl_status};
pub use filter::{serl_filter, serl_filter_free, serl_filter_new, serl_filter_offer};
pub use toolkit::*;
#[cfg(feature = "trainer")]
pub use trainer::*;
