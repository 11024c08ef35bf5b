//! Writes the tiny random Llama the C, C++ and Go trainer tests use
//! (`serl-core/tests/fixtures/tiny-llama`): 2 layers, width 32, the
//! byte-level tokenizer, seed 2026. Deterministic: `tests/model.rs` checks
//! the committed files equal a fresh generation.
//!
//! cargo run -p serl-core --example make_tiny_model [-- OUT_DIR]

use serl_core::model::{DType, Device, Model, Tokenizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-llama").to_string()
    });
    let model = Model::random(
        serl_core::model::tiny_llama_config(),
        2026,
        &Device::Cpu,
        DType::F32,
    )?;
    model.save_hf(&Tokenizer::byte_level(&[])?, std::path::Path::new(&out))?;
    println!("wrote {out}");
    Ok(())
}
