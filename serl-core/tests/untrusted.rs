//! Untrusted model files have bounds: a chat template is code from the
//! model file, and one that loops or writes without end fails with an error
//! naming the file, in bounded time and memory; sizes read from a file are
//! checked against the file's length, libserl's limits and the machine's
//! memory before anything is allocated for them.
#![cfg(feature = "train")]
mod common;

use std::time::{Duration, Instant};

use serl_core::model::{ChatMessage, Tokenizer};

/// Renders the tiny fixture's tokenizer with `template` as its
/// `chat_template.jinja` (in a directory of its own): the result, the time
/// it took and the template file's path.
fn render(name: &str, template: &str) -> (Result<String, String>, Duration, String) {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-llama");
    let dir = std::env::temp_dir().join(format!("serl-untrusted-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(format!("{src}/{f}"), dir.join(f)).expect("copy");
    }
    let jinja = dir.join("chat_template.jinja");
    std::fs::write(&jinja, template).expect("write template");
    let tok = Tokenizer::from_hf_dir(&dir).expect("tokenizer");
    let msgs = [ChatMessage::new("user", "What is 2 + 3?")];
    let t = Instant::now();
    let out = tok
        .apply_chat_template(&msgs, true)
        .map_err(|e| e.to_string());
    let took = t.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    (out, took, jinja.display().to_string())
}

#[test]
fn a_chat_template_that_loops_too_long_is_stopped() {
    let (out, took, file) = render(
        "loop",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    );
    let err = out.expect_err("a 10^10-step template must not finish");
    assert!(err.contains(&file), "names the file: {err}");
    assert!(err.contains("template instructions"), "{err}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn a_chat_template_that_writes_too_much_is_stopped() {
    let (out, _, file) = render(
        "output",
        "{% for i in range(1000) %}{{ 'x' * 10000000 }}{% endfor %}",
    );
    let err = out.expect_err("10 GB of output must not be produced");
    assert!(
        err.contains(&file) && err.contains("output passed"),
        "{err}"
    );
}

#[test]
fn a_recursive_chat_template_is_stopped() {
    let (out, _, file) = render(
        "recursion",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    );
    let err = out.expect_err("unbounded recursion must fail");
    assert!(err.contains(&file), "{err}");
}

#[test]
fn an_ordinary_template_still_renders() {
    let (out, _, _) = render(
        "ordinary",
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
    );
    let text = out.expect("renders");
    assert_eq!(text, "<|user|>What is 2 + 3?\n<|assistant|>");
}

/// A copy of the tiny fixture model in a directory of its own, with
/// `edit` applied to its config.json.
fn model_with_config(name: &str, edit: impl Fn(&mut serde_json::Value)) -> std::path::PathBuf {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-llama");
    let dir = std::env::temp_dir().join(format!("serl-untrusted-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    for f in std::fs::read_dir(src).expect("fixture") {
        let f = f.expect("entry").path();
        std::fs::copy(&f, dir.join(f.file_name().expect("name"))).expect("copy");
    }
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).expect("write config");
    dir
}

fn load_err(dir: &std::path::Path) -> String {
    let opts = serl_core::model::LoadOptions::default();
    match serl_core::model::load_model(dir, &opts) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parameter_count_is_the_parameters_a_model_has() {
    use serl_core::model::{DType, Device, Family, Model};
    for (family, tie) in [
        (Family::Llama, true),
        (Family::Llama, false),
        (Family::Qwen2, true),
    ] {
        let cfg = common::tiny_config(family, tie);
        let m = Model::random(cfg.clone(), 3, &Device::Cpu, DType::F32).expect("model");
        let n: usize = m
            .named_parameters()
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count())
            .sum();
        assert_eq!(cfg.parameter_count(), n as u64, "{family:?} tie={tie}");
    }
}

#[test]
fn model_sizes_past_the_limits_or_the_machine_are_errors_before_loading() {
    // A field far past any model: named, with the limit.
    let dir = model_with_config("wide", |c| c["hidden_size"] = serde_json::json!(1u64 << 40));
    let e = load_err(&dir);
    assert!(
        e.contains("config.json")
            && e.contains("hidden_size 1099511627776 is above libserl's limit"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    // Every field within its limit, too many parameters in all.
    let dir = model_with_config("many", |c| {
        c["num_hidden_layers"] = serde_json::json!(1024);
        c["intermediate_size"] = serde_json::json!(1 << 18);
        c["hidden_size"] = serde_json::json!(1 << 16);
        c["num_attention_heads"] = serde_json::json!(512);
        c["num_key_value_heads"] = serde_json::json!(512);
        c["head_dim"] = serde_json::json!(128);
    });
    let e = load_err(&dir);
    assert!(e.contains("parameters are above libserl's limit"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    // A plausible model far bigger than this machine (about 240
    // billion parameters, 1 TB in f32): refused before its tensors are read (the
    // file holds only the tiny ones).
    let dir = model_with_config("huge", |c| {
        c["num_hidden_layers"] = serde_json::json!(64);
        c["intermediate_size"] = serde_json::json!(1 << 16);
        c["hidden_size"] = serde_json::json!(1 << 14);
        c["num_attention_heads"] = serde_json::json!(128);
        c["num_key_value_heads"] = serde_json::json!(8);
        c["head_dim"] = serde_json::json!(128);
    });
    let e = load_err(&dir);
    assert!(
        e.contains("config.json") && e.contains("more than this machine's"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn safetensors_and_gguf_headers_that_lie_about_sizes_are_errors_naming_the_file() {
    // A safetensors header length past the end of the file.
    let dir = model_with_config("st", |_| {});
    let st = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&st).expect("weights");
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&st, &bytes).expect("write");
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);

    // GGUF: a metadata string claiming 2^50 bytes, and an array claiming
    // 2^40 elements, in files of a few dozen bytes.
    let gguf = |name: &str, body: &[u8]| {
        let path =
            std::env::temp_dir().join(format!("serl-untrusted-{name}-{}.gguf", std::process::id()));
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes()); // version
        b.extend(0u64.to_le_bytes()); // tensors
        b.extend(1u64.to_le_bytes()); // metadata entries
        b.extend(body);
        std::fs::write(&path, b).expect("write gguf");
        path
    };
    let key = |k: &str| {
        let mut b = (k.len() as u64).to_le_bytes().to_vec();
        b.extend(k.as_bytes());
        b
    };
    let mut long_string = key("general.architecture");
    long_string.extend(8u32.to_le_bytes()); // string
    long_string.extend((1u64 << 50).to_le_bytes());
    long_string.extend(b"llama");
    let mut long_array = key("tokenizer.ggml.tokens");
    long_array.extend(9u32.to_le_bytes()); // array
    long_array.extend(8u32.to_le_bytes()); // of strings
    long_array.extend((1u64 << 40).to_le_bytes());
    for (name, body) in [("string", long_string), ("array", long_array)] {
        let path = gguf(name, &body);
        let t = Instant::now();
        let e = load_err(&path);
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{name}: {:?}",
            t.elapsed()
        );
        let _ = std::fs::remove_file(&path);
    }
}

/// The tokenizers crate panics on some malformed documents; libserl turns
/// that into an error naming the file (found by the `tokenizer` fuzz target;
/// the input is `fuzz/regressions/tokenizer/decoder-expect-panic`).
#[test]
fn a_tokenizer_json_that_makes_the_tokenizers_crate_panic_is_an_error() {
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-llama/tokenizer.json"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src).expect("fixture")).expect("json");
    // A raw control character in a key of the decoder object.
    let text = doc
        .to_string()
        .replacen("\"decoder\":{", "\"decoder\":{\"a\u{0}\":true,", 1);
    assert!(text.contains('\u{0}'));
    let r = Tokenizer::from_json(&text, None, None, None, None, "bad/tokenizer.json");
    let e = r
        .err()
        .expect("a malformed decoder is an error")
        .to_string();
    assert!(
        e.contains("bad/tokenizer.json") && e.contains("the tokenizers crate failed"),
        "{e}"
    );
}
