//! Untrusted model files have bounds: a chat template is code from the
//! model file, and one that loops or writes without end fails with an error
//! naming the file, in bounded time and memory.
#![cfg(feature = "train")]

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
