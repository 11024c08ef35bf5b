//! The decoder's hyper-parameters, read from and written to a Hugging Face
//! `config.json` (Llama 3.x, Qwen2/2.5, SmolLM2).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ModelError;

/// Llama-3 style RoPE frequency scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    /// Frequency scale factor.
    pub factor: f64,
    /// Wavelengths above `original / low_freq_factor` are scaled fully.
    pub low_freq_factor: f64,
    /// Wavelengths below `original / high_freq_factor` are not scaled.
    pub high_freq_factor: f64,
    /// The context length the model was pre-trained with.
    pub original_max_position_embeddings: usize,
}

/// Which checkpoint family the weights follow (decides biases and the
/// `model_type` written back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama 2/3.x and SmolLM2 (no attention biases).
    Llama,
    /// Qwen2 / Qwen2.5 (biases on q, k and v).
    Qwen2,
}

/// A decoder-only transformer's shape and numerics.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Checkpoint family.
    pub family: Family,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Optional Llama-3 frequency scaling.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Longest supported sequence.
    pub max_position_embeddings: usize,
    /// The output head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (Qwen2).
    pub attention_bias: bool,
    /// Beginning-of-sequence id, when the checkpoint names one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids (generation stops on any).
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Parses a Hugging Face `config.json` text; `origin` names the file in errors.
    pub fn from_hf_json(text: &str, origin: &str) -> Result<Self, ModelError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| ModelError::Format(format!("{origin}: not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ModelError::Format(format!("{origin}: expected a JSON object")))?;
        let model_type = obj
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("llama");
        let family = match model_type {
            "llama" | "mistral" => Family::Llama,
            "qwen2" => Family::Qwen2,
            other => {
                return Err(ModelError::Unsupported(format!(
                    "{origin}: model_type {other:?} (supported: llama, qwen2)"
                )));
            }
        };
        let act = obj
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("silu");
        if act != "silu" {
            return Err(ModelError::Unsupported(format!(
                "{origin}: hidden_act {act:?} (only silu)"
            )));
        }
        let req = |k: &str| -> Result<usize, ModelError> {
            obj.get(k)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| {
                    ModelError::Format(format!("{origin}: field {k:?} missing or not an integer"))
                })
        };
        let hidden_size = req("hidden_size")?;
        let num_attention_heads = req("num_attention_heads")?;
        let num_key_value_heads = obj
            .get("num_key_value_heads")
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .unwrap_or(num_attention_heads);
        let head_dim = obj
            .get("head_dim")
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .unwrap_or(hidden_size / num_attention_heads.max(1));
        // transformers 5 moved rope_theta into rope_parameters.
        let rope_params = obj.get("rope_parameters").and_then(Value::as_object);
        let rope_theta = obj
            .get("rope_theta")
            .and_then(Value::as_f64)
            .or_else(|| {
                rope_params
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10_000.0);
        let scaling = obj
            .get("rope_scaling")
            .filter(|v| !v.is_null())
            .or_else(|| rope_params.map(|_| obj.get("rope_parameters").unwrap_or(&Value::Null)));
        let rope_scaling = match scaling.and_then(Value::as_object) {
            Some(s) => {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                match kind {
                    "default" => None,
                    "llama3" => Some(
                        serde_json::from_value(Value::Object(s.clone())).map_err(|e| {
                            ModelError::Format(format!("{origin}: rope_scaling: {e}"))
                        })?,
                    ),
                    other => {
                        return Err(ModelError::Unsupported(format!(
                            "{origin}: rope_scaling type {other:?} (supported: default, llama3)"
                        )));
                    }
                }
            }
            None => None,
        };
        let eos_token_ids = match obj.get("eos_token_id") {
            Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_u64)
                .map(|x| x as u32)
                .collect(),
            _ => Vec::new(),
        };
        let cfg = ModelConfig {
            family,
            vocab_size: req("vocab_size")?,
            hidden_size,
            intermediate_size: req("intermediate_size")?,
            num_hidden_layers: req("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: obj
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: obj
                .get("max_position_embeddings")
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .unwrap_or(4096),
            tie_word_embeddings: obj
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            attention_bias: obj
                .get("attention_bias")
                .and_then(Value::as_bool)
                .unwrap_or(family == Family::Qwen2),
            bos_token_id: obj
                .get("bos_token_id")
                .and_then(Value::as_u64)
                .map(|x| x as u32),
            eos_token_ids,
        };
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Checks the shape is consistent (heads divide, sizes non-zero).
    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Format(format!("{origin}: {m}")));
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 {
            return bad("vocab_size, hidden_size and num_hidden_layers must be positive".into());
        }
        for (field, value, max) in [
            ("vocab_size", self.vocab_size, limits::VOCAB),
            ("hidden_size", self.hidden_size, limits::WIDTH),
            (
                "intermediate_size",
                self.intermediate_size,
                limits::INTERMEDIATE,
            ),
            ("num_hidden_layers", self.num_hidden_layers, limits::LAYERS),
            (
                "num_attention_heads",
                self.num_attention_heads,
                limits::HEADS,
            ),
            (
                "num_key_value_heads",
                self.num_key_value_heads,
                limits::HEADS,
            ),
            ("head_dim", self.head_dim, limits::HEAD_DIM),
        ] {
            if value > max {
                return bad(format!("{field} {value} is above libserl's limit of {max}"));
            }
        }
        let params = self.parameter_count();
        if params > limits::PARAMETERS {
            return bad(format!(
                "{params} parameters are above libserl's limit of {}",
                limits::PARAMETERS
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad(format!(
                "rms_norm_eps {} must be positive",
                self.rms_norm_eps
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!("rope_theta {} must be positive", self.rope_theta));
        }
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 {
            return bad("head counts must be positive".into());
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head_dim {} must be even and positive",
                self.head_dim
            ));
        }
        Ok(())
    }

    /// The number of parameters these shapes describe: the engine's
    /// [`Layout`](crate::engine::Layout), the one description of the
    /// architecture (its arithmetic cannot overflow within the [`limits`]
    /// that [`ModelConfig::validate`] checks first).
    pub fn parameter_count(&self) -> u64 {
        crate::engine::Layout::new(self).total as u64
    }

    /// The Hugging Face `config.json` for these weights (float32 or bfloat16).
    pub fn to_hf_json(&self, torch_dtype: &str) -> Value {
        let mut m = Map::new();
        let (arch, mt) = match self.family {
            Family::Llama => ("LlamaForCausalLM", "llama"),
            Family::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        };
        m.insert("architectures".into(), serde_json::json!([arch]));
        m.insert("model_type".into(), mt.into());
        m.insert("vocab_size".into(), self.vocab_size.into());
        m.insert("hidden_size".into(), self.hidden_size.into());
        m.insert("intermediate_size".into(), self.intermediate_size.into());
        m.insert("num_hidden_layers".into(), self.num_hidden_layers.into());
        m.insert(
            "num_attention_heads".into(),
            self.num_attention_heads.into(),
        );
        m.insert(
            "num_key_value_heads".into(),
            self.num_key_value_heads.into(),
        );
        m.insert("head_dim".into(), self.head_dim.into());
        m.insert("hidden_act".into(), "silu".into());
        m.insert("rms_norm_eps".into(), self.rms_norm_eps.into());
        m.insert("rope_theta".into(), self.rope_theta.into());
        m.insert(
            "rope_scaling".into(),
            match &self.rope_scaling {
                Some(s) => {
                    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                    if let Value::Object(o) = &mut v {
                        o.insert("rope_type".into(), "llama3".into());
                    }
                    v
                }
                None => Value::Null,
            },
        );
        m.insert(
            "max_position_embeddings".into(),
            self.max_position_embeddings.into(),
        );
        m.insert(
            "tie_word_embeddings".into(),
            self.tie_word_embeddings.into(),
        );
        if self.family == Family::Llama {
            m.insert("attention_bias".into(), self.attention_bias.into());
            m.insert("mlp_bias".into(), false.into());
        }
        if let Some(b) = self.bos_token_id {
            m.insert("bos_token_id".into(), b.into());
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                m.insert("eos_token_id".into(), (*one).into());
            }
            many => {
                m.insert("eos_token_id".into(), serde_json::json!(many));
            }
        }
        m.insert("torch_dtype".into(), torch_dtype.into());
        m.insert("use_cache".into(), true.into());
        Value::Object(m)
    }

    /// Number of parameters (tied head counted once).
    pub fn num_parameters(&self) -> usize {
        let (h, i, d) = (self.hidden_size, self.intermediate_size, self.head_dim);
        let q = self.num_attention_heads * d;
        let kv = self.num_key_value_heads * d;
        let bias = if self.attention_bias { q + 2 * kv } else { 0 };
        let layer = h * q + 2 * h * kv + q * h + bias + 3 * h * i + 2 * h;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * h
        };
        self.vocab_size * h + self.num_hidden_layers * layer + h + head
    }

    /// Inverse frequencies of the rotary embedding (`head_dim / 2` values),
    /// with Llama-3 scaling applied when configured.
    pub fn rope_inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim;
        let mut inv: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / d as f64))
            .collect();
        if let Some(s) = &self.rope_scaling {
            let old = s.original_max_position_embeddings as f64;
            let low_wavelen = old / s.low_freq_factor;
            let high_wavelen = old / s.high_freq_factor;
            for f in inv.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen < high_wavelen {
                    // unchanged
                } else if wavelen > low_wavelen {
                    *f /= s.factor;
                } else {
                    let smooth = (old / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
                }
            }
        }
        inv
    }
}

/// Bounds on a model configuration read from a file: far above the models
/// libserl is for (a 70B Llama has width 8,192, 80 layers and 128k tokens),
/// low enough that no size computed from them overflows.
pub mod limits {
    /// Largest vocabulary.
    pub const VOCAB: usize = 1 << 22;
    /// Largest `hidden_size`.
    pub const WIDTH: usize = 1 << 16;
    /// Largest `intermediate_size`.
    pub const INTERMEDIATE: usize = 1 << 18;
    /// Most layers.
    pub const LAYERS: usize = 1 << 10;
    /// Most attention (or key/value) heads.
    pub const HEADS: usize = 1 << 10;
    /// Largest `head_dim`.
    pub const HEAD_DIM: usize = 1 << 12;
    /// Most parameters (a trillion).
    pub const PARAMETERS: u64 = 1 << 40;
}
