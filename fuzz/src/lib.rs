//! The bodies of libserl's fuzz targets, one function per target, each
//! checking invariants beyond "no crash". `fuzz_targets/` wraps them for
//! cargo-fuzz (nightly); `tests/replay.rs` runs the seeds and every kept
//! crash input through them on stable.
//!
//! Inputs with several parts (pairs, groups, file + mode) split on NUL
//! bytes or take a mode from the first byte.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serl_core::eval::{self, CaseMode, DiversityFilter, Parsed, VoteMode};
use serl_core::model::{self, LoadOptions, Tokenizer};
use serl_core::train::{self, Config, Trainer};

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target, by name, for the replay test.
pub const TARGETS: &[(&str, Target)] = &[
    ("extract", extract),
    ("equiv", equiv),
    ("vote", vote),
    ("instructions", instructions),
    ("rouge", rouge),
    ("diversity", diversity),
    ("jsonl", jsonl),
    ("config", config),
    ("gguf", gguf),
    ("safetensors", safetensors),
    ("tokenizer", tokenizer),
    ("trainer_state", trainer_state),
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

fn parts(data: &[u8], most: usize) -> Vec<String> {
    data.split(|&b| b == 0).take(most).map(text).collect()
}

/// Answer extraction and SeRL's normalisation of a model response.
pub fn extract(data: &[u8]) {
    let s = text(data);
    let a = eval::extract_answer(&s);
    let n = eval::strip_string(&a);
    // Both are SeRL's strings for the vote: never longer than needed to
    // hold the response twice (the normalisation adds a few characters,
    // e.g. a leading 0 or braces for \frac12).
    assert!(n.len() <= 2 * s.len() + 16, "{s:?} → {n:?}");
}

/// The LaTeX parser and equivalence of a pair of answers.
pub fn equiv(data: &[u8]) {
    let p = parts(data, 2);
    let (a, b) = (&p[0], p.get(1).map_or("", String::as_str));
    let ab = eval::equivalent(a, b);
    assert_eq!(ab, eval::equivalent(b, a), "not symmetric: {a:?} {b:?}");
    let parsed = eval::parse_candidates(a);
    if parsed.iter().any(|x| matches!(x, Parsed::Value(_))) {
        assert!(eval::equivalent(a, a), "not reflexive: {a:?}");
    }
}

/// The majority vote over a group of responses, in both modes.
pub fn vote(data: &[u8]) {
    let group = parts(data, 16);
    for mode in [VoteMode::String, VoteMode::Equiv] {
        let v = eval::vote(&group, mode);
        assert_eq!(v.rewards.len(), group.len());
        assert!(v.rewards.iter().all(|&r| r == 0.0 || r == 1.0), "{v:?}");
        let share = v.rewards.iter().sum::<f64>() / group.len() as f64;
        assert!((v.agreement - share).abs() < 1e-12, "{v:?}");
        assert!(v.rewards.contains(&1.0), "nobody in the majority: {v:?}");
        if mode == VoteMode::String {
            for (r, a) in v.rewards.iter().zip(&v.answers) {
                assert_eq!(*r == 1.0, *a == v.majority, "{v:?}");
            }
        }
    }
}

/// Instruction parsing and the rule filters.
pub fn instructions(data: &[u8]) {
    let s = text(data);
    for case in [CaseMode::Capitalize, CaseMode::Keep] {
        for item in eval::parse_items(&s, case) {
            assert_eq!(item.rejection, eval::rule_rejection(&item.text), "{item:?}");
        }
    }
}

/// ROUGE-L of a pair.
pub fn rouge(data: &[u8]) {
    let p = parts(data, 2);
    let (a, b) = (&p[0], p.get(1).map_or("", String::as_str));
    let s = eval::rouge_l(a, b);
    for x in [s.p, s.r, s.f] {
        assert!((0.0..=1.0).contains(&x), "{s:?}");
    }
    assert_eq!(s.f, eval::rouge_l(b, a).f, "F not symmetric: {a:?} {b:?}");
    if !eval::tokenize(a).is_empty() {
        assert_eq!(eval::rouge_l(a, a).f, 1.0);
    }
}

/// The diversity filter: seeds (lines of the first part), then offers.
pub fn diversity(data: &[u8]) {
    let Some((&t, rest)) = data.split_first() else {
        return;
    };
    let threshold = f64::from(t) / 255.0;
    let p = parts(rest, 64);
    let seeds: Vec<&str> = p[0].lines().collect();
    let mut full = DiversityFilter::new(&seeds, threshold);
    let mut fast = DiversityFilter::new(&seeds, threshold);
    for offer in &p[1..] {
        let v = full.offer(offer);
        assert!((0.0..=1.0).contains(&v.max_rouge_l), "{v:?}");
        assert_eq!(v.kept, fast.offer_fast(offer).kept, "{offer:?}");
    }
}

/// The JSONL reader of seeds and evaluation sets.
pub fn jsonl(data: &[u8]) {
    let s = text(data);
    for need in [false, true] {
        if let Ok(ex) = train::parse_examples(&s, "fuzz.jsonl", need) {
            assert!(!ex.is_empty());
            assert!(!need || ex.iter().all(|e| e.answer.is_some()));
        }
    }
}

/// The run configuration, TOML and JSON: a valid one survives a JSON round
/// trip unchanged.
pub fn config(data: &[u8]) {
    let s = text(data);
    for parsed in [Config::from_toml(&s), Config::from_json(&s)] {
        let Ok(cfg) = parsed else { continue };
        if cfg.validate().is_ok() {
            let json = serde_json::to_string(&cfg).expect("a config serialises");
            let back = Config::from_json(&json).expect("its JSON parses");
            assert_eq!(format!("{cfg:?}"), format!("{back:?}"));
        }
    }
}

/// A scratch directory of this process for the file targets.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("serl-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../serl-core/tests/fixtures/tiny-llama")
}

/// A scratch copy of the tiny fixture's `files`, with `replaced` holding
/// `bytes` instead.
fn fixture_with(name: &str, files: &[&str], replaced: &str, bytes: &[u8]) -> PathBuf {
    let dir = scratch(name);
    for f in files {
        std::fs::copy(fixture().join(f), dir.join(f)).expect("copy fixture");
    }
    std::fs::write(dir.join(replaced), bytes).expect("write");
    dir
}

/// The GGUF reader (metadata, tokenizer, tensors, dequantisation).
pub fn gguf(data: &[u8]) {
    let path = scratch("gguf").join("model.gguf");
    std::fs::write(&path, data).expect("write");
    let _ = model::load_model(&path, &LoadOptions::default());
}

/// The Hugging Face loader: the first byte picks which file of the tiny
/// fixture the rest replaces (0: model.safetensors, 1: config.json).
pub fn safetensors(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = fixture_with(
        "safetensors",
        &[
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ],
        ["model.safetensors", "config.json"][mode as usize % 2],
        rest,
    );
    if let Ok((m, _)) = model::load_model(&dir, &LoadOptions::default()) {
        assert!(m.config().parameter_count() > 0);
    }
}

/// Tokenizer loading, encoding and chat-template rendering: the first byte
/// picks which file of the fixture the rest replaces (0: tokenizer.json,
/// 1: chat_template.jinja, 2: tokenizer_config.json).
pub fn tokenizer(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let files = [
        "tokenizer.json",
        "chat_template.jinja",
        "tokenizer_config.json",
    ];
    let dir = fixture_with("tokenizer", &files, files[mode as usize % 3], rest);
    // libFuzzer's panic hook aborts on any panic, even one the library
    // catches: let the tokenizers crate's own panics, which the library
    // turns into errors, unwind to it (one that escaped would still abort
    // in libfuzzer-sys's catch_unwind).
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let fuzzers = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info
                .location()
                .is_some_and(|l| l.file().contains("/tokenizers-"))
            {
                fuzzers(info);
            }
        }));
    });
    let Ok(tok) = Tokenizer::from_hf_dir(&dir) else {
        return;
    };
    let msgs = [
        model::ChatMessage::new("system", "Be brief."),
        model::ChatMessage::new("user", "What is 2 + 3?"),
    ];
    if let Ok(prompt) = tok.apply_chat_template(&msgs, true)
        && let Ok(ids) = tok.encode(&prompt)
    {
        let _ = tok.decode(&ids, false);
    }
}

/// A run directory with one checkpoint of the tiny model, made once.
fn run_dir() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("trainer-state");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("run directory");
        let seeds = dir.join("seeds.jsonl");
        std::fs::write(
            &seeds,
            "{\"problem\": \"What is 1 plus 1?\"}\n{\"problem\": \"What is 2 plus 3?\"}\n",
        )
        .expect("seeds");
        let cfg = Config {
            model: fixture(),
            seeds,
            out: dir.join("run"),
            self_instruct: false,
            rollout_batch_size: 2,
            n_samples_per_prompt: 2,
            generate_max_len: 4,
            input_template: "{problem}".into(),
            reward_difficulty_bounds: [0.0, 1.0],
            train_batch_size: 4,
            micro_train_batch_size: 2,
            steps: 2,
            ..Config::default()
        };
        let mut t = Trainer::new(cfg).expect("trainer");
        t.step().expect("a step");
        t.save_checkpoint().expect("checkpoint");
        dir.join("run")
    })
}

/// `trainer_state.json` of a checkpoint, on resume.
pub fn trainer_state(data: &[u8]) {
    let run = run_dir();
    let state = run.join("checkpoints/step-000001/trainer_state.json");
    std::fs::write(&state, data).expect("write");
    if let Ok(mut t) = Trainer::resume(run) {
        // A state that resumes is one the trainer can continue from.
        assert_eq!(t.history().len(), t.steps_done());
        if t.steps_done() < 1000 {
            t.set_total_steps(t.steps_done() + 1);
            t.step().expect("a resumed trainer steps");
        }
    }
}
