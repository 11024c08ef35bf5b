//! libserl's compute engine in the browser: a model on WebGPU (wgpu's
//! browser backend) running SeRL's self-play rounds in the page — the
//! model writes problems, answers each many times, and the evaluator votes
//! on the answers — with no server. [`round`] holds the round on any
//! engine backend (natively testable on the CPU); the JavaScript API
//! (wasm-bindgen, `SelfPlay`) exists on `wasm32` only.

pub mod round;
#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
pub use web::SelfPlay;
