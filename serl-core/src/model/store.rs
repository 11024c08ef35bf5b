//! Loading a model and tokenizer from a Hugging Face directory or a GGUF
//! file, and saving in Hugging Face format.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::ModelError;
use super::config::ModelConfig;
use super::llama::Model;
use super::tokenizer::Tokenizer;

/// Where and in which precision to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Device for the weights.
    pub device: Device,
    /// Weight dtype (f32 or bf16).
    pub dtype: DType,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }
}

/// Loads a model and its tokenizer from a Hugging Face directory
/// (`config.json`, `model.safetensors` or an index of shards, tokenizer
/// files) or from a `.gguf` file.
pub fn load_model(path: &Path, opts: &LoadOptions) -> Result<(Model, Tokenizer), ModelError> {
    if path.is_dir() {
        load_hf_dir(path, opts)
    } else if path.extension().and_then(|e| e.to_str()) == Some("gguf") {
        let g = super::gguf::read(path)?;
        let origin = path.display().to_string();
        let mut cfg = g.config;
        let json = serde_json::to_string(&g.tokenizer_json)
            .map_err(|e| ModelError::Format(e.to_string()))?;
        let tok = Tokenizer::from_json(
            &json,
            g.chat_template,
            g.bos_token,
            g.eos_token,
            g.pad_token,
            &origin,
        )?;
        if cfg.eos_token_ids.is_empty() {
            cfg.eos_token_ids = tok.eos_ids().to_vec();
        }
        let model = Model::from_tensors(cfg, g.tensors, &opts.device, opts.dtype, &origin)?;
        Ok((model, tok))
    } else if path.exists() {
        Err(ModelError::Invalid(format!(
            "{}: expected a Hugging Face model directory or a .gguf file",
            path.display()
        )))
    } else {
        Err(ModelError::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        })
    }
}

fn load_hf_dir(dir: &Path, opts: &LoadOptions) -> Result<(Model, Tokenizer), ModelError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
    let mut cfg = ModelConfig::from_hf_json(&text, &cfg_path.display().to_string())?;
    super::memory::ensure_weights_fit(&cfg, 1, "the f32 weights", &cfg_path.display().to_string())?;
    let tok = Tokenizer::from_hf_dir(dir)?;
    if cfg.eos_token_ids.is_empty() {
        cfg.eos_token_ids = tok.eos_ids().to_vec();
    }
    let files = safetensor_files(dir)?;
    // The files are read whole: they must fit too, whatever config.json says.
    let mut bytes = 0u64;
    for f in &files {
        bytes += std::fs::metadata(f)
            .map_err(|e| ModelError::io(f, e))?
            .len();
    }
    super::memory::ensure_fits(
        bytes,
        super::memory::machine_bytes(),
        "the safetensors files",
        &dir.display().to_string(),
    )?;
    let mut tensors = HashMap::new();
    for file in files {
        let t = candle_core::safetensors::load(&file, &Device::Cpu)
            .map_err(|e| ModelError::Format(format!("{}: {e}", file.display())))?;
        tensors.extend(t);
    }
    // Some checkpoints with tied embeddings still store lm_head.weight.
    if cfg.tie_word_embeddings {
        tensors.remove("lm_head.weight");
    }
    let model = Model::from_tensors(
        cfg,
        tensors,
        &opts.device,
        opts.dtype,
        &dir.display().to_string(),
    )?;
    Ok((model, tok))
}

/// A Hugging Face model's files in memory, for places without a file
/// system (a browser): what [`load_model`] reads from a directory.
#[derive(Debug, Clone, Copy)]
pub struct HfFiles<'a> {
    /// `config.json`.
    pub config_json: &'a str,
    /// `model.safetensors` (one file; no shards).
    pub safetensors: &'a [u8],
    /// `tokenizer.json`.
    pub tokenizer_json: &'a str,
    /// `tokenizer_config.json`, if the model has one.
    pub tokenizer_config_json: Option<&'a str>,
    /// `chat_template.jinja`, if the model has one.
    pub chat_template: Option<&'a str>,
    /// What messages call the model (its URL or directory).
    pub origin: &'a str,
}

/// [`load_model`] from files in memory (see [`HfFiles`]).
pub fn load_model_from_memory(
    files: &HfFiles<'_>,
    opts: &LoadOptions,
) -> Result<(Model, Tokenizer), ModelError> {
    let dir = Path::new(files.origin);
    let cfg_origin = dir.join("config.json").display().to_string();
    let mut cfg = ModelConfig::from_hf_json(files.config_json, &cfg_origin)?;
    super::memory::ensure_weights_fit(&cfg, 1, "the f32 weights", &cfg_origin)?;
    let tok = Tokenizer::from_hf_files(
        files.tokenizer_json,
        files.tokenizer_config_json,
        files.chat_template,
        files.origin,
    )?;
    if cfg.eos_token_ids.is_empty() {
        cfg.eos_token_ids = tok.eos_ids().to_vec();
    }
    let st = dir.join("model.safetensors").display().to_string();
    let mut tensors = candle_core::safetensors::load_buffer(files.safetensors, &Device::Cpu)
        .map_err(|e| ModelError::Format(format!("{st}: {e}")))?;
    if cfg.tie_word_embeddings {
        tensors.remove("lm_head.weight");
    }
    let model = Model::from_tensors(cfg, tensors, &opts.device, opts.dtype, files.origin)?;
    Ok((model, tok))
}

fn safetensor_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|_| {
        ModelError::Format(format!(
            "{}: neither model.safetensors nor model.safetensors.index.json is present",
            dir.display()
        ))
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::Format(format!("{}: not valid JSON: {e}", index.display())))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            ModelError::Format(format!("{}: field \"weight_map\" missing", index.display()))
        })?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|f| f.as_str().map(String::from))
        .collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so a crash never leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let tmp = tmp_path(path);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // A full disk leaves no half-written temporary file behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelError::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}

/// Whether a file or directory `name` is a write's temporary left behind:
/// `X.tmp<pid>` from [`tmp_path`], or a checkpoint's `step-N.tmp`.
pub(crate) fn is_tmp_name(name: &str) -> bool {
    name.rsplit_once(".tmp")
        .is_some_and(|(_, pid)| pid.bytes().all(|b| b.is_ascii_digit()))
}

pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

impl Model {
    /// Writes the model in Hugging Face format (safetensors, `config.json`,
    /// tokenizer files) into `dir`.
    pub fn save_hf(&self, tokenizer: &Tokenizer, dir: &Path) -> Result<(), ModelError> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, v) in self.named_parameters() {
            tensors.insert(name, v.as_tensor().to_device(&Device::Cpu)?);
        }
        save_hf_tensors(&tensors, self.config(), self.dtype(), tokenizer, dir)
    }
}

/// Writes named weights (already in `dtype`) with `cfg` and the tokenizer
/// as a Hugging Face model directory; the weights file through a temporary.
pub fn save_hf_tensors(
    tensors: &HashMap<String, Tensor>,
    cfg: &ModelConfig,
    dtype: DType,
    tokenizer: &Tokenizer,
    dir: &Path,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let st = dir.join("model.safetensors");
    let tmp = tmp_path(&st);
    candle_core::safetensors::save(tensors, &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ModelError::Format(format!("{}: {e}", tmp.display()))
    })?;
    std::fs::rename(&tmp, &st).map_err(|e| ModelError::io(&st, e))?;
    save_hf_meta(cfg, dtype, tokenizer, dir)
}

/// Writes `config.json` (naming `dtype`) and the tokenizer files into `dir`.
pub fn save_hf_meta(
    cfg: &ModelConfig,
    dtype: DType,
    tokenizer: &Tokenizer,
    dir: &Path,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let dtype = match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    };
    let text = serde_json::to_string_pretty(&cfg.to_hf_json(dtype))
        .map_err(|e| ModelError::Format(e.to_string()))?;
    write_atomic(&dir.join("config.json"), text.as_bytes())?;
    tokenizer.save_hf(dir)
}
