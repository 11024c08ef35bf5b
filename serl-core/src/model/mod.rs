//! The model layer: a Llama-family decoder (Llama 3.x, Qwen2/2.5, SmolLM2)
//! in candle (file formats, and the oracle the compute engine is tested
//! against: a differentiable path and a cached rollout path), Hugging Face
//! and GGUF loading, Hugging Face saving, the tokenizer with its chat
//! template, and batched sampling through the [`Decoder`] seam (the
//! engine's [`EngineDecoder`] or the candle model).

mod config;
mod gemv;
mod gguf;
mod llama;
pub mod memory;
mod ops;
mod sample;
mod store;
mod tokenizer;

pub mod generate;

pub use candle_core::{DType, Device};
pub use config::{Family, Llama3RopeScaling, ModelConfig, limits};
pub use generate::{
    AnyCache, AnyDecoder, Decoder, EngineDecoder, GenerateRequest, Generation, Sampling,
    SamplingParams, SamplingStep,
};
pub use llama::{Model, RolloutState};
pub use sample::{argmax, logprob_of};
pub use store::{
    HfFiles, LoadOptions, load_model, load_model_from_memory, save_hf_meta, save_hf_tensors,
    write_atomic,
};
pub(crate) use store::{is_tmp_name, tmp_path as store_tmp_path};
pub use tokenizer::{CHATML_TEMPLATE, ChatMessage, Tokenizer, byte_to_char};

/// What can go wrong loading, running or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file is malformed (names the file and the field).
    #[error("{0}")]
    Format(String),
    /// A valid checkpoint this engine does not run.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A request that cannot be satisfied (bad sampling parameter, empty prompt, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A model or run needs more memory than the machine has (names the
    /// file and the sizes).
    #[error("{0}")]
    TooLarge(String),
    /// The tokenizer or chat template failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The compute engine rejected a batch or could not allocate.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl ModelError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Parses a device name: `cpu`, `cuda` or `cuda:N`, or `wgpu` / `wgpu:N`,
/// where the candle side (loading, the candle rollout path) stays on the
/// CPU and the engine runs on wgpu (see [`crate::engine::EngineDevice`]).
pub fn device_from_name(name: &str) -> Result<Device, ModelError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        n if n == "wgpu" || n.starts_with("wgpu:") => {
            crate::engine::EngineDevice::parse(n)?;
            Ok(Device::Cpu)
        }
        n if n == "cuda" || n.starts_with("cuda:") => {
            let ordinal = match n.strip_prefix("cuda:") {
                Some(i) => i
                    .parse::<usize>()
                    .map_err(|_| ModelError::Invalid(format!("device {n:?}: bad CUDA ordinal")))?,
                None => 0,
            };
            Device::new_cuda(ordinal).map_err(|e| {
                ModelError::Unsupported(format!(
                    "device {n:?}: {e} (build with the `cuda` feature)"
                ))
            })
        }
        other => Err(ModelError::Invalid(format!(
            "device {other:?} (expected cpu, wgpu, wgpu:N, cuda or cuda:N)"
        ))),
    }
}

/// Parses a dtype name: `f32`, `bf16` or `f16`.
pub fn dtype_from_name(name: &str) -> Result<DType, ModelError> {
    match name {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        other => Err(ModelError::Invalid(format!(
            "dtype {other:?} (expected f32, bf16 or f16)"
        ))),
    }
}

/// The shape of the tiny test model (`tests/fixtures/tiny-llama`): a
/// 2-layer Llama of width 32 (4 query / 2 key-value heads) over the
/// 259-token byte-level vocabulary of [`Tokenizer::byte_level`].
pub fn tiny_llama_config() -> ModelConfig {
    ModelConfig {
        family: Family::Llama,
        vocab_size: 259,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 1024,
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    }
}
