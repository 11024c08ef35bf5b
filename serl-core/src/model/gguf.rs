//! llama.cpp GGUF files: hyper-parameters and tokenizer from the metadata,
//! tensors dequantised (F32/F16/BF16/Q4_0/Q4_1/Q5_x/Q8_0/K-quants) to
//! Hugging Face names and layouts.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use serde_json::json;

use super::ModelError;
use super::config::{Family, ModelConfig};

/// What a GGUF file holds, converted to this engine's terms.
pub struct GgufModel {
    /// Hyper-parameters.
    pub config: ModelConfig,
    /// Dequantised f32 tensors under Hugging Face names.
    pub tensors: HashMap<String, Tensor>,
    /// A `tokenizer.json` document built from the metadata.
    pub tokenizer_json: serde_json::Value,
    /// The chat template, when the file has one.
    pub chat_template: Option<String>,
    /// BOS/EOS/PAD token strings.
    pub bos_token: Option<String>,
    /// End-of-sequence token string.
    pub eos_token: Option<String>,
    /// Padding token string.
    pub pad_token: Option<String>,
}

fn meta<'a>(c: &'a Content, key: &str, origin: &str) -> Result<&'a Value, ModelError> {
    c.metadata
        .get(key)
        .ok_or_else(|| ModelError::Format(format!("{origin}: metadata key {key:?} is missing")))
}

fn as_usize(v: &Value, key: &str, origin: &str) -> Result<usize, ModelError> {
    let x = match v {
        Value::U8(x) => *x as u64,
        Value::U16(x) => *x as u64,
        Value::U32(x) => *x as u64,
        Value::U64(x) => *x,
        Value::I32(x) if *x >= 0 => *x as u64,
        Value::I64(x) if *x >= 0 => *x as u64,
        _ => {
            return Err(ModelError::Format(format!(
                "{origin}: metadata {key:?} is not an unsigned integer"
            )));
        }
    };
    Ok(x as usize)
}

fn as_f64(v: &Value, key: &str, origin: &str) -> Result<f64, ModelError> {
    match v {
        Value::F32(x) => Ok(*x as f64),
        Value::F64(x) => Ok(*x),
        _ => Err(ModelError::Format(format!(
            "{origin}: metadata {key:?} is not a float"
        ))),
    }
}

fn strings(v: &Value, key: &str, origin: &str) -> Result<Vec<String>, ModelError> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ModelError::Format(format!(
                    "{origin}: metadata {key:?} holds a non-string"
                ))),
            })
            .collect(),
        _ => Err(ModelError::Format(format!(
            "{origin}: metadata {key:?} is not an array"
        ))),
    }
}

/// Undoes llama.cpp's q/k row permutation (`convert_hf_to_gguf.py` permutes
/// rows for its interleaved-pair RoPE): GGUF row `h·d + 2i + j` becomes
/// Hugging Face row `h·d + j·d/2 + i`, for rotate-half RoPE.
fn unpermute(w: &Tensor, n_head: usize) -> Result<Tensor, ModelError> {
    let (rows, cols) = w.dims2()?;
    let hd = rows / n_head;
    Ok(w.reshape((n_head, hd / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// Reads a GGUF file (Llama or Qwen2 architecture).
pub fn read(path: &Path) -> Result<GgufModel, ModelError> {
    let origin = path.display().to_string();
    let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader)
        .map_err(|e| ModelError::Format(format!("{origin}: not a readable GGUF file: {e}")))?;
    let arch = match meta(&content, "general.architecture", &origin)? {
        Value::String(s) => s.clone(),
        _ => {
            return Err(ModelError::Format(format!(
                "{origin}: general.architecture is not a string"
            )));
        }
    };
    let family = match arch.as_str() {
        "llama" => Family::Llama,
        "qwen2" => Family::Qwen2,
        other => {
            return Err(ModelError::Unsupported(format!(
                "{origin}: architecture {other:?} (supported: llama, qwen2)"
            )));
        }
    };
    if content.tensor_infos.contains_key("rope_freqs.weight") {
        return Err(ModelError::Unsupported(format!(
            "{origin}: Llama-3 rope_freqs scaling in GGUF (load the Hugging Face checkpoint instead)"
        )));
    }
    let k = |name: &str| format!("{arch}.{name}");
    let tokens = strings(
        meta(&content, "tokenizer.ggml.tokens", &origin)?,
        "tokenizer.ggml.tokens",
        &origin,
    )?;
    let hidden = as_usize(
        meta(&content, &k("embedding_length"), &origin)?,
        &k("embedding_length"),
        &origin,
    )?;
    let heads = as_usize(
        meta(&content, &k("attention.head_count"), &origin)?,
        &k("attention.head_count"),
        &origin,
    )?;
    let kv_heads = match content.metadata.get(&k("attention.head_count_kv")) {
        Some(v) => as_usize(v, &k("attention.head_count_kv"), &origin)?,
        None => heads,
    };
    let head_dim = match content.metadata.get(&k("rope.dimension_count")) {
        Some(v) => as_usize(v, &k("rope.dimension_count"), &origin)?,
        None => hidden / heads.max(1),
    };
    let get_u32 = |key: &str| -> Option<u32> {
        content
            .metadata
            .get(key)
            .and_then(|v| as_usize(v, key, &origin).ok())
            .map(|x| x as u32)
    };
    let bos_id = get_u32("tokenizer.ggml.bos_token_id");
    let eos_id = get_u32("tokenizer.ggml.eos_token_id");
    let pad_id = get_u32("tokenizer.ggml.padding_token_id");
    let unk_id = get_u32("tokenizer.ggml.unknown_token_id");
    let has_output = content.tensor_infos.contains_key("output.weight");
    let config = ModelConfig {
        family,
        vocab_size: tokens.len(),
        hidden_size: hidden,
        intermediate_size: as_usize(
            meta(&content, &k("feed_forward_length"), &origin)?,
            &k("feed_forward_length"),
            &origin,
        )?,
        num_hidden_layers: as_usize(
            meta(&content, &k("block_count"), &origin)?,
            &k("block_count"),
            &origin,
        )?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: as_f64(
            meta(&content, &k("attention.layer_norm_rms_epsilon"), &origin)?,
            &k("attention.layer_norm_rms_epsilon"),
            &origin,
        )?,
        rope_theta: match content.metadata.get(&k("rope.freq_base")) {
            Some(v) => as_f64(v, &k("rope.freq_base"), &origin)?,
            None => 10_000.0,
        },
        rope_scaling: None,
        max_position_embeddings: match content.metadata.get(&k("context_length")) {
            Some(v) => as_usize(v, &k("context_length"), &origin)?,
            None => 4096,
        },
        tie_word_embeddings: !has_output,
        attention_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
        bos_token_id: bos_id,
        eos_token_ids: eos_id.into_iter().collect(),
    };
    config.validate(&origin)?;
    super::memory::ensure_weights_fit(&config, 1, "the f32 weights", &origin)?;
    let params = config.parameter_count();

    let mut tensors = HashMap::new();
    let names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    for name in names {
        let hf = match hf_name(&name) {
            Some(h) => h,
            None => continue,
        };
        // The dimensions come from the file: their product may overflow, or
        // exceed the model the metadata describes, before candle allocates
        // it (found by the `gguf` fuzz target).
        let dims = content
            .tensor_infos
            .get(&name)
            .map(|i| i.shape.dims().to_vec())
            .unwrap_or_default();
        let elems = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        if elems.is_none_or(|n| n > params) {
            return Err(ModelError::Format(format!(
                "{origin}: tensor {name:?} has dimensions {dims:?}, more elements than the whole model"
            )));
        }
        let q = content
            .tensor(&mut reader, &name, &Device::Cpu)
            .map_err(|e| ModelError::Format(format!("{origin}: tensor {name:?}: {e}")))?;
        let mut t = q
            .dequantize(&Device::Cpu)
            .map_err(|e| ModelError::Format(format!("{origin}: dequantising {name:?}: {e}")))?
            .to_dtype(DType::F32)?;
        // llama.cpp permutes q/k rows only for the Llama architecture (Qwen2 uses NeoX RoPE there).
        if family == Family::Llama {
            if name.ends_with("attn_q.weight") {
                t = unpermute(&t, heads)?;
            } else if name.ends_with("attn_k.weight") {
                t = unpermute(&t, kv_heads)?;
            }
        }
        tensors.insert(hf, t);
    }

    let token_type: Vec<i64> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::I32(x) => *x as i64,
                Value::U32(x) => *x as i64,
                Value::I64(x) => *x,
                _ => 1,
            })
            .collect(),
        _ => vec![1; tokens.len()],
    };
    let merges = match content.metadata.get("tokenizer.ggml.merges") {
        Some(v) => strings(v, "tokenizer.ggml.merges", &origin)?,
        None => Vec::new(),
    };
    let model_kind = match content.metadata.get("tokenizer.ggml.model") {
        Some(Value::String(s)) => s.clone(),
        _ => "gpt2".into(),
    };
    if model_kind != "gpt2" {
        return Err(ModelError::Unsupported(format!(
            "{origin}: tokenizer.ggml.model {model_kind:?} (only byte-level BPE, \"gpt2\")"
        )));
    }
    let pre = match content.metadata.get("tokenizer.ggml.pre") {
        Some(Value::String(s)) => s.clone(),
        _ => "default".into(),
    };
    let tokenizer_json = byte_level_bpe_json(&tokens, &token_type, &merges, &pre, unk_id, &origin)?;
    let name_of = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize).cloned());
    let chat_template = match content.metadata.get("tokenizer.chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(GgufModel {
        config,
        tensors,
        tokenizer_json,
        chat_template,
        bos_token: name_of(bos_id),
        eos_token: name_of(eos_id),
        pad_token: name_of(pad_id),
    })
}

/// GGUF tensor name → Hugging Face parameter name.
fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// The split regex of llama.cpp's pre-tokenizer names (byte-level BPE).
fn pre_tokenizer(pre: &str, origin: &str) -> Result<serde_json::Value, ModelError> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Ok(match pre {
        "default" | "gpt2" | "gpt-2" => byte_level(true),
        // SmolLM/StarCoder: single digits first, then the GPT-2 split.
        "smollm" | "starcoder" | "refact" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "llama-bpe" | "llama3" | "smaug-bpe" => {
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3), byte_level(false)]})
        }
        "qwen2" | "deepseek-r1-qwen" => {
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2), byte_level(false)]})
        }
        other => {
            return Err(ModelError::Unsupported(format!(
                "{origin}: tokenizer.ggml.pre {other:?} (supported: default, gpt2, smollm, starcoder, llama-bpe, qwen2)"
            )));
        }
    })
}

/// A `tokenizer.json` for a byte-level BPE vocabulary. Token types 3
/// (control) become special added tokens and 4 (user-defined) plain added
/// tokens, as transformers' GGUF converter does.
fn byte_level_bpe_json(
    tokens: &[String],
    token_type: &[i64],
    merges: &[String],
    pre: &str,
    unk_id: Option<u32>,
    origin: &str,
) -> Result<serde_json::Value, ModelError> {
    let mut vocab = serde_json::Map::new();
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t.clone(), json!(i));
    }
    let mut added = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let ty = token_type.get(i).copied().unwrap_or(1);
        if ty == 3 || ty == 4 {
            added.push(
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": ty == 4, "special": ty == 3}),
            );
        }
    }
    let merges: Vec<serde_json::Value> = merges
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').unwrap_or((m.as_str(), ""));
            json!([a, b])
        })
        .collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer(pre, origin)?,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null,
            "unk_token": unk_id.and_then(|i| tokens.get(i as usize)).cloned(),
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
    }))
}
