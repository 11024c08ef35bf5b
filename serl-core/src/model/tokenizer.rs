//! Text ⇄ token ids (Hugging Face `tokenizers`) and chat templates rendered
//! with Jinja (`minijinja`) as transformers renders them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and text.
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A tokenizer with its special tokens and chat template.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    json: String,
    chat_template: Option<String>,
    /// Where the chat template came from, for errors: a template is code
    /// from the model file.
    template_origin: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
    eos_ids: Vec<u32>,
}

/// The most work a chat template may do in one rendering, in template
/// instructions (minijinja's fuel): a template comes from the model file, so
/// it is a stranger's code. Real templates (SmolLM2's, ChatML) loop once
/// over the messages and stay far below it.
pub const CHAT_TEMPLATE_FUEL: u64 = 5_000_000;

/// The most text one rendering may produce beyond four times the messages'
/// own text.
pub const CHAT_TEMPLATE_EXTRA_OUTPUT: usize = 1 << 20;

/// A writer that refuses to grow past `cap` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > self.cap {
            return Err(std::io::Error::other("output limit"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// Runs a call into the tokenizers crate, which panics on some malformed
/// `tokenizer.json` documents instead of failing (an `expect` in its
/// decoder's deserialisation, found by the `tokenizer` fuzz target): such a
/// panic becomes an error about `what`.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, ModelError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        ModelError::Tokenizer(format!("{what}: the tokenizers crate failed ({why})"))
    })
}

/// A special token in `tokenizer_config.json`: a string or `{"content": ...}`.
fn token_field(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(String::from),
        _ => None,
    }
}

impl Tokenizer {
    /// Builds a tokenizer from a `tokenizer.json` document and its special tokens.
    pub fn from_json(
        json: &str,
        chat_template: Option<String>,
        bos_token: Option<String>,
        eos_token: Option<String>,
        pad_token: Option<String>,
        origin: &str,
    ) -> Result<Self, ModelError> {
        let inner: tokenizers::Tokenizer = guarded(origin, || json.parse())?
            .map_err(|e| ModelError::Tokenizer(format!("{origin}: {e}")))?;
        let eos_ids = eos_token
            .as_deref()
            .and_then(|t| inner.token_to_id(t))
            .into_iter()
            .collect();
        Ok(Tokenizer {
            inner,
            json: json.to_string(),
            chat_template,
            template_origin: origin.to_string(),
            bos_token,
            eos_token,
            pad_token,
            eos_ids,
        })
    }

    /// Loads `tokenizer.json` plus `tokenizer_config.json` (special tokens,
    /// chat template) and `chat_template.jinja` from a Hugging Face directory.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, ModelError> {
        let tj = dir.join("tokenizer.json");
        let json = std::fs::read_to_string(&tj).map_err(|e| ModelError::io(&tj, e))?;
        let tc = dir.join("tokenizer_config.json");
        let config = std::fs::read_to_string(&tc).ok();
        let jinja = dir.join("chat_template.jinja");
        let template = std::fs::read_to_string(&jinja).ok();
        Tokenizer::from_hf_files(
            &json,
            config.as_deref(),
            template.as_deref(),
            &dir.display().to_string(),
        )
    }

    /// [`Tokenizer::from_hf_dir`] from the files' contents (a browser has no
    /// file system): `tokenizer.json`, and where present
    /// `tokenizer_config.json` and `chat_template.jinja` (which wins over
    /// the config's template). `dir` names them in messages.
    pub fn from_hf_files(
        json: &str,
        config: Option<&str>,
        chat_template: Option<&str>,
        dir: &str,
    ) -> Result<Self, ModelError> {
        let tj = Path::new(dir).join("tokenizer.json");
        let tc = Path::new(dir).join("tokenizer_config.json");
        let cfg: serde_json::Value = match config {
            Some(s) => serde_json::from_str(s).map_err(|e| {
                ModelError::Format(format!("{}: not valid JSON: {e}", tc.display()))
            })?,
            None => serde_json::Value::Null,
        };
        let mut template = match cfg.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            // A list of named templates: use "default".
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(|t| t.as_str())
                .map(String::from),
            _ => None,
        };
        let mut template_origin = tc.display().to_string();
        if let Some(s) = chat_template {
            template = Some(s.to_string());
            template_origin = Path::new(dir)
                .join("chat_template.jinja")
                .display()
                .to_string();
        }
        let mut tok = Tokenizer::from_json(
            json,
            template,
            token_field(cfg.get("bos_token")),
            token_field(cfg.get("eos_token")),
            token_field(cfg.get("pad_token")),
            &tj.display().to_string(),
        )?;
        tok.template_origin = template_origin;
        Ok(tok)
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` and (when there is a
    /// template) `chat_template.jinja` into `dir` (each via a temporary file).
    pub fn save_hf(&self, dir: &Path) -> Result<(), ModelError> {
        super::store::write_atomic(&dir.join("tokenizer.json"), self.json.as_bytes())?;
        let mut cfg = serde_json::Map::new();
        cfg.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        cfg.insert("clean_up_tokenization_spaces".into(), false.into());
        cfg.insert("add_bos_token".into(), false.into());
        for (k, v) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("pad_token", &self.pad_token),
        ] {
            if let Some(v) = v {
                cfg.insert(k.into(), v.clone().into());
            }
        }
        if let Some(t) = &self.chat_template {
            cfg.insert("chat_template".into(), t.clone().into());
            super::store::write_atomic(&dir.join("chat_template.jinja"), t.as_bytes())?;
        }
        let text =
            serde_json::to_string_pretty(&serde_json::Value::Object(cfg)).map_err(tok_err)?;
        super::store::write_atomic(&dir.join("tokenizer_config.json"), text.as_bytes())
    }

    /// Token ids of `text` (no special tokens added; special-token strings
    /// inside the text are matched as whole tokens).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        Ok(guarded("encoding", || self.inner.encode(text, false))?
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    /// The byte-level pieces of `text` (as the vocabulary spells them).
    pub fn tokens(&self, text: &str) -> Result<Vec<String>, ModelError> {
        Ok(guarded("encoding", || self.inner.encode(text, false))?
            .map_err(tok_err)?
            .get_tokens()
            .to_vec())
    }

    /// Text of `ids`; special tokens are kept unless `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ModelError> {
        guarded("decoding", || self.inner.decode(ids, skip_special))?.map_err(tok_err)
    }

    /// Id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// End-of-sequence ids (from the tokenizer's EOS token).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The BOS token string, if any.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The EOS token string, if any.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The chat template text, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Replaces the chat template.
    pub fn set_chat_template(&mut self, template: Option<String>) {
        self.chat_template = template;
        self.template_origin = "the chat template set by the caller".into();
    }

    /// Renders the chat template as transformers' `apply_chat_template(...,
    /// tokenize=False)` does (Jinja with trim_blocks and lstrip_blocks).
    ///
    /// The template runs with bounded work ([`CHAT_TEMPLATE_FUEL`]
    /// instructions), output ([`CHAT_TEMPLATE_EXTRA_OUTPUT`] bytes beyond
    /// four times the messages) and minijinja's recursion limit; past them
    /// it is an error naming the file the template came from.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| ModelError::Tokenizer("this tokenizer has no chat template".into()))?;
        let origin = &self.template_origin;
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(CHAT_TEMPLATE_FUEL));
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        let err =
            |e: minijinja::Error| ModelError::Tokenizer(format!("chat template of {origin}: {e}"));
        env.add_template("chat", template).map_err(err)?;
        let tmpl = env.get_template("chat").map_err(err)?;
        let text_len: usize = messages.iter().map(|m| m.content.len()).sum();
        let cap = text_len
            .saturating_mul(4)
            .saturating_add(CHAT_TEMPLATE_EXTRA_OUTPUT);
        let mut out = CappedWriter {
            buf: Vec::new(),
            cap,
        };
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
        };
        if let Err(e) = tmpl.render_captured_to(ctx, &mut out) {
            let why = match e.kind() {
                minijinja::ErrorKind::OutOfFuel => format!(
                    "it did not finish within {CHAT_TEMPLATE_FUEL} template instructions \
                     (a template is code from the model file; this one loops too long)"
                ),
                minijinja::ErrorKind::WriteFailure => {
                    format!("its output passed {cap} bytes (four times the messages plus 1 MiB)")
                }
                _ => e.to_string(),
            };
            return Err(ModelError::Tokenizer(format!(
                "chat template of {origin}: {why}"
            )));
        }
        String::from_utf8(out.buf).map_err(|_| {
            ModelError::Tokenizer(format!("chat template of {origin}: output is not UTF-8"))
        })
    }
}

/// GPT-2's byte → printable character table used by byte-level BPE.
pub fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 256u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            extra += 1;
            extra - 1
        };
        table[b as usize] = char::from_u32(c).unwrap_or('?');
    }
    table
}

/// The ChatML template (`<|im_start|>role\ncontent<|im_end|>\n`), as
/// SmolLM2 and Qwen use, without a default system prompt.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

impl Tokenizer {
    /// A byte-level BPE tokenizer: ids 0–2 are `<|endoftext|>`,
    /// `<|im_start|>`, `<|im_end|>` (EOS), then the 256 bytes, then one token
    /// per merge (in order); ChatML chat template. Small models made by this
    /// project (tests, the embedded demo) use it.
    pub fn byte_level(merges: &[(String, String)]) -> Result<Self, ModelError> {
        let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
        let mut vocab = serde_json::Map::new();
        let mut added = Vec::new();
        for (i, s) in specials.iter().enumerate() {
            vocab.insert(s.to_string(), i.into());
            added.push(
                serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true}),
            );
        }
        for c in byte_to_char() {
            let n = vocab.len();
            vocab.insert(c.to_string(), n.into());
        }
        let mut merge_list = Vec::new();
        for (a, b) in merges {
            for part in [a, b] {
                if !vocab.contains_key(part.as_str()) {
                    return Err(ModelError::Tokenizer(format!(
                        "merge part {part:?} is not in the vocabulary"
                    )));
                }
            }
            let joined = format!("{a}{b}");
            if !vocab.contains_key(&joined) {
                let n = vocab.len();
                vocab.insert(joined, n.into());
            }
            merge_list.push(serde_json::json!([a, b]));
        }
        let doc = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merge_list}
        });
        let json = serde_json::to_string(&doc).map_err(tok_err)?;
        Tokenizer::from_json(
            &json,
            Some(CHATML_TEMPLATE.to_string()),
            Some("<|im_start|>".into()),
            Some("<|im_end|>".into()),
            Some("<|im_end|>".into()),
            "byte-level tokenizer",
        )
    }
}

impl Tokenizer {
    /// Learns up to `n_merges` byte-level BPE merges from `texts` (the same
    /// pre-tokenisation as [`Tokenizer::byte_level`]: single digits, then the
    /// GPT-2 split) and returns that tokenizer. Ties go to the pair that sorts
    /// first, so the result depends only on the texts.
    pub fn train_byte_level<S: AsRef<str>>(
        texts: &[S],
        n_merges: usize,
    ) -> Result<Self, ModelError> {
        use std::collections::HashMap;
        let base = Tokenizer::byte_level(&[])?;
        let mut symbols: Vec<String> = Vec::new();
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut words: HashMap<Vec<u32>, usize> = HashMap::new();
        for t in texts {
            let enc = base.inner.encode(t.as_ref(), false).map_err(tok_err)?;
            let mut current: Vec<u32> = Vec::new();
            let mut current_word = None;
            for (tokstr, w) in enc.get_tokens().iter().zip(enc.get_word_ids()) {
                if *w != current_word && !current.is_empty() {
                    *words.entry(std::mem::take(&mut current)).or_default() += 1;
                }
                current_word = *w;
                let id = *index.entry(tokstr.clone()).or_insert_with(|| {
                    symbols.push(tokstr.clone());
                    (symbols.len() - 1) as u32
                });
                current.push(id);
            }
            if !current.is_empty() {
                *words.entry(current).or_default() += 1;
            }
        }
        let mut words: Vec<(Vec<u32>, usize)> = words.into_iter().collect();
        words.sort();
        let mut merges = Vec::new();
        for _ in 0..n_merges {
            let mut counts: HashMap<(u32, u32), usize> = HashMap::new();
            for (w, c) in &words {
                for p in w.windows(2) {
                    *counts.entry((p[0], p[1])).or_default() += c;
                }
            }
            // Highest count; ties broken by the pair's strings.
            let best = counts
                .iter()
                .map(|(&(a, b), &c)| {
                    (
                        c,
                        std::cmp::Reverse((
                            symbols[a as usize].clone(),
                            symbols[b as usize].clone(),
                        )),
                        (a, b),
                    )
                })
                .max();
            let Some((count, _, (a, b))) = best else {
                break;
            };
            if count < 2 {
                break;
            }
            let joined = format!("{}{}", symbols[a as usize], symbols[b as usize]);
            let new_id = match index.get(&joined) {
                Some(&i) => i,
                None => {
                    symbols.push(joined.clone());
                    index.insert(joined, (symbols.len() - 1) as u32);
                    (symbols.len() - 1) as u32
                }
            };
            merges.push((symbols[a as usize].clone(), symbols[b as usize].clone()));
            for (w, _) in words.iter_mut() {
                let mut out = Vec::with_capacity(w.len());
                let mut i = 0;
                while i < w.len() {
                    if i + 1 < w.len() && w[i] == a && w[i + 1] == b {
                        out.push(new_id);
                        i += 2;
                    } else {
                        out.push(w[i]);
                        i += 1;
                    }
                }
                *w = out;
            }
        }
        Tokenizer::byte_level(&merges)
    }
}
