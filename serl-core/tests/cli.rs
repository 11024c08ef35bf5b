//! The `serl` command line: its JSONL interface, errors and exit codes.
mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn serl(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_serl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serl runs");
    // Write from another thread: a large input and output would otherwise
    // fill both pipes and block the test and serl on each other.
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        // serl may exit early on bad input and close its end; that is fine.
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("serl finishes");
    writer.join().expect("writer thread");
    out
}

/// Fails with serl's stderr unless it exited 0.
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("serl-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn extract_reproduces_the_reference() {
    let cases = &common::fixture("extract.jsonl")[..200];
    let input: String = cases
        .iter()
        .map(|c| serde_json::json!({"response": c["input"]}).to_string() + "\n")
        .collect();
    let out = serl(&["extract"], &input);
    assert!(out.status.success());
    let got = lines(&out);
    assert_eq!(got.len(), cases.len());
    for (g, c) in got.iter().zip(cases) {
        assert_eq!(g["answer"], c["extracted"]);
        assert_eq!(g["normalized"], c["stripped"]);
    }
}

#[test]
fn vote_matches_reference_rewards_in_both_modes() {
    // The string vote follows SeRL's vectors; the equivalence vote
    // math_verify 0.8.0's rewards on the same groups.
    let string_cases = &common::fixture("vote.jsonl")[..40];
    let equiv_cases = &common::fixture("vote_mv08.jsonl")[..40];
    let input: String = string_cases
        .iter()
        .map(|c| serde_json::json!({"responses": c["responses"]}).to_string() + "\n")
        .collect();
    for (mode, key, cases) in [
        ("string", "rewards_string_maj", string_cases),
        ("equiv", "rewards_math_verify_maj", equiv_cases),
    ] {
        let out = serl(&["vote", "--mode", mode], &input);
        assert_success(&out);
        for (g, c) in lines(&out).iter().zip(cases) {
            assert_eq!(g["rewards"], c[key], "mode {mode}");
            let rewards: Vec<f64> = serde_json::from_value(g["rewards"].clone()).unwrap();
            assert_eq!(
                g["agreement"].as_f64().unwrap(),
                rewards.iter().sum::<f64>() / rewards.len() as f64
            );
            assert_eq!(g["answers"].as_array().unwrap().len(), 16);
            assert!(g["majority"].is_string());
        }
    }
}

#[test]
fn equal_rouge_and_parse_instructions() {
    let out = serl(
        &["equal"],
        "{\"pred\": \"\\\\frac{1}{2}\", \"ref\": \"0.5\"}\n\n{\"pred\": \"3\", \"ref\": \"4\"}\n",
    );
    assert!(out.status.success());
    assert_eq!(
        lines(&out),
        [
            serde_json::json!({"equal": true}),
            serde_json::json!({"equal": false})
        ]
    );

    let out = serl(&["rouge"], "{\"a\": \"the cat sat\", \"b\": \"the cat\"}\n");
    let v = &lines(&out)[0];
    assert_eq!(
        (v["p"].as_f64(), v["r"].as_f64()),
        (Some(1.0), Some(2.0 / 3.0))
    );

    let text = "1. What is the sum of 2 and 3 apples?\n2. Draw a graph of y = x now\n3. Find x if x plus 2 is 5";
    let input = serde_json::json!({"response": text}).to_string() + "\n";
    let out = serl(&["parse-instructions"], &input);
    assert_eq!(
        lines(&out)[0]["instructions"],
        serde_json::json!([
            "What is the sum of 2 and 3 apples?",
            "Find x if x plus 2 is 5"
        ])
    );
    let out = serl(
        &["parse-instructions", "--keep-case"],
        &serde_json::json!({"response": "1. Find X in ABC today"}).to_string(),
    );
    assert_eq!(
        lines(&out)[0]["instructions"],
        serde_json::json!(["Find X in ABC today"])
    );
}

#[test]
fn filter_reproduces_the_reference_decisions() {
    let case = &common::fixture("filter.jsonl")[0];
    let seeds: String = case["seed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::json!({"problem": s}).to_string() + "\n")
        .collect();
    let seeds_path = temp_file("seeds.jsonl", &seeds);
    let input: String = case["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::json!({"instruction": s}).to_string() + "\n")
        .collect();
    let out = serl(&["filter", "--seeds", seeds_path.to_str().unwrap()], &input);
    assert_success(&out);
    for (k, g) in lines(&out).iter().enumerate() {
        assert_eq!(g["kept"], case["kept"][k]);
        assert_eq!(g["max_rouge_l"], case["max_rougeL"][k]);
        assert_eq!(g["argmax"], case["argmax"][k]);
    }
}

#[test]
fn prompt_is_seeded_and_exact() {
    let seeds: String = (0..12)
        .map(|i| format!("{{\"problem\": \"Seed question number {i}:\"}}\n"))
        .collect();
    let seeds_path = temp_file("prompt-seeds.jsonl", &seeds);
    let pool_path = temp_file(
        "pool.jsonl",
        "{\"instruction\": \"Pool question one here\"}\n",
    );
    let args = [
        "prompt",
        "--seeds",
        seeds_path.to_str().unwrap(),
        "--pool",
        pool_path.to_str().unwrap(),
        "--seed",
        "3",
    ];
    let a = serl(&args, "");
    let b = serl(&args, "");
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let v = &lines(&a)[0];
    let user = v["user"].as_str().unwrap();
    assert!(user.starts_with("Come up with a series of questions:\n1. "));
    assert!(user.ends_with("\n9."));
    assert!(user.contains("Pool question one here"));
    assert!(!user.contains("number 1:"));
    assert_eq!(v["system"], serl_core::eval::GENERATION_SYSTEM);
}

#[test]
fn bad_input_names_the_line_and_field_and_exits_1() {
    let out = serl(
        &["vote"],
        "{\"responses\": [\"1\"]}\n{\"responses\": [\"a\", 3]}\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("responses") && err.contains("[1]"),
        "{err}"
    );
    assert_eq!(
        lines(&out).len(),
        1,
        "the good line before the bad one is still answered"
    );

    let out = serl(&["extract"], "not json\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));

    let out = serl(&["equal"], "{\"pred\": \"1\"}\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"ref\""));

    let bad_seeds = temp_file(
        "bad-seeds.jsonl",
        "{\"problem\": \"ok seed\"}\n{\"answer\": 3}\n",
    );
    let out = serl(&["filter", "--seeds", bad_seeds.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad-seeds.jsonl:2"), "{err}");

    let out = serl(&["filter", "--seeds", "/nonexistent/seeds.jsonl"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/seeds.jsonl"));
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(
        serl(&["vote", "--mode", "plurality"], "").status.code(),
        Some(2)
    );
    assert_eq!(serl(&["no-such-command"], "").status.code(), Some(2));
    assert_eq!(serl(&["filter"], "").status.code(), Some(2));
}

#[test]
fn advantages_reproduce_rl_vectors() {
    let cases = &common::fixture("rl.jsonl")[..20];
    let input: String = cases.iter().map(|c| c.to_string() + "\n").collect();
    let out = serl(&["advantages"], &input);
    assert_success(&out);
    for (g, c) in lines(&out).iter().zip(cases) {
        let want = c["expected"]["policy_loss_token_mean"].as_f64().unwrap();
        let got = g["policy_loss_token_mean"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-9 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
        assert_eq!(
            g["advantages"].as_array().unwrap().len(),
            c["rewards"].as_array().unwrap().len()
        );
    }
    let out = serl(&["advantages"], "{\"estimator\": \"ppo\"}\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown variant `ppo`"));
    let bad = "{\"estimator\": \"rloo\", \"kl_estimator\": \"k1\", \"kl_coef\": 0, \"n_samples_per_prompt\": 1, \"action_mask\": [[1]], \"rewards\": [1], \"log_probs\": [[0]], \"ref_log_probs\": [[0]]}\n";
    let out = serl(&["advantages"], bad);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rloo needs at least 2"));
}

/// A tiny random model saved in Hugging Face format for `serl generate`.
#[cfg(feature = "train")]
fn tiny_model_dir(name: &str) -> std::path::PathBuf {
    use serl_core::model::{DType, Device, Model, Tokenizer};
    let dir = std::env::temp_dir().join(format!("serl-cli-model-{name}-{}", std::process::id()));
    let cfg = serl_core::model::tiny_llama_config();
    let model = Model::random(cfg, 1, &Device::Cpu, DType::F32).unwrap();
    model
        .save_hf(&Tokenizer::byte_level(&[]).unwrap(), &dir)
        .unwrap();
    dir
}

#[cfg(feature = "train")]
#[test]
fn generate_prints_json_samples_and_a_rate() {
    let dir = tiny_model_dir("generate");
    let m = dir.to_str().unwrap();
    let out = serl(
        &[
            "generate",
            "--model",
            m,
            "--prompt",
            "hi",
            "--chat",
            "--n",
            "2",
            "--temperature",
            "0.9",
            "--max-new-tokens",
            "5",
            "--seed",
            "4",
            "--json",
        ],
        "",
    );
    assert_success(&out);
    let recs = lines(&out);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        let ids = r["token_ids"].as_array().unwrap();
        assert!(!ids.is_empty() && ids.len() <= 5);
        assert_eq!(r["logprobs"].as_array().unwrap().len(), ids.len());
        assert!(r["text"].is_string());
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokens/s"));
    // Same seed, same samples.
    let again = serl(
        &[
            "generate",
            "--model",
            m,
            "--prompt",
            "hi",
            "--chat",
            "--n",
            "2",
            "--temperature",
            "0.9",
            "--max-new-tokens",
            "5",
            "--seed",
            "4",
            "--json",
        ],
        "",
    );
    assert_eq!(lines(&again), recs);
    // Streaming text mode.
    let out = serl(
        &[
            "generate",
            "--model",
            m,
            "--prompt",
            "hi",
            "--temperature",
            "0",
            "--max-new-tokens",
            "3",
        ],
        "",
    );
    assert!(out.status.success());
    // Bad knobs and paths: exit 1 with a message naming them.
    let out = serl(
        &["generate", "--model", m, "--prompt", "hi", "--top-p", "1.5"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("top_p"));
    let out = serl(
        &[
            "generate",
            "--model",
            "/nonexistent/model",
            "--prompt",
            "hi",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "train")]
#[test]
fn train_resume_and_eval_through_the_command_line() {
    let model = tiny_model_dir("train");
    let dir = std::env::temp_dir().join(format!("serl-cli-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("seeds.jsonl"), "{\"problem\": \"What is 1 plus 1?\", \"answer\": \"2\"}\n{\"problem\": \"What is 2 plus 2?\", \"answer\": \"4\"}\n").unwrap();
    let toml = format!(
        "model = \"{}\"\nseeds = \"seeds.jsonl\"\neval_data = \"seeds.jsonl\"\nout = \"run\"\nsteps = 1\nself_instruct = false\nrollout_batch_size = 2\nn_samples_per_prompt = 2\ngenerate_max_len = 4\ninput_template = \"{{problem}}\"\nreward_difficulty_bounds = [0.0, 1.0]\ntrain_batch_size = 4\nmicro_train_batch_size = 2\neval_k = 2\neval_max_len = 3\n",
        model.display()
    );
    let cfg = dir.join("serl.toml");
    std::fs::write(&cfg, toml).unwrap();
    let out = serl(&["train", "--config", cfg.to_str().unwrap(), "--quiet"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("before: pass@1") && err.contains("after: pass@1") && err.contains("step 1:"),
        "{err}"
    );
    let run = dir.join("run");
    assert!(
        run.join("checkpoints/step-000001/model.safetensors")
            .exists()
    );
    let svg = std::fs::read_to_string(run.join("metrics.svg")).unwrap();
    assert!(svg.contains("<polyline") && svg.contains("evaluation accuracy"));
    // Extend the finished run by one step.
    let out = serl(
        &[
            "train",
            "--resume",
            run.to_str().unwrap(),
            "--steps",
            "2",
            "--quiet",
        ],
        "",
    );
    assert_success(&out);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    assert!(
        run.join("checkpoints/step-000002/trainer_state.json")
            .exists()
    );
    // The before/after table of the run; a directory without evaluations is an error naming the file.
    let out = serl(&["compare", run.to_str().unwrap()], "");
    let table = String::from_utf8_lossy(&out.stdout);
    assert_success(&out);
    assert!(
        table.starts_with("| run | steps | greedy pass@1 (%) | avg@2 (%) | maj@2 (%)"),
        "{table}"
    );
    assert!(
        table.contains(&format!("| {} | 2 | ", run.display())),
        "{table}"
    );
    let out = serl(&["compare", dir.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("eval.jsonl"));
    // The trained checkpoint evaluates and generates.
    let ck = run.join("checkpoints/step-000002");
    let out = serl(
        &[
            "eval",
            "--model",
            ck.to_str().unwrap(),
            "--data",
            dir.join("seeds.jsonl").to_str().unwrap(),
            "--k",
            "2",
            "--max-new-tokens",
            "3",
            "--answers",
            dir.join("answers.jsonl").to_str().unwrap(),
        ],
        "",
    );
    assert_success(&out);
    let r = &lines(&out)[0];
    assert_eq!(r["questions"], 2);
    assert!(r["maj_at_k"].is_number());
    // Every question's answers, in order, agree with the summary.
    let answers: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("answers.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seeds = std::fs::read_to_string(dir.join("seeds.jsonl")).unwrap();
    assert_eq!(answers.len(), 2);
    for (a, seed) in answers.iter().zip(seeds.lines()) {
        let seed: serde_json::Value = serde_json::from_str(seed).unwrap();
        assert_eq!(a["problem"], seed["problem"]);
        assert_eq!(a["samples"].as_array().unwrap().len(), 2);
    }
    let share =
        |f: &dyn Fn(&serde_json::Value) -> f64, per: f64| answers.iter().map(f).sum::<f64>() / per;
    let flag = |k: &'static str| move |a: &serde_json::Value| a[k].as_bool().unwrap() as u8 as f64;
    assert_eq!(
        share(&flag("greedy_correct"), 2.0),
        r["pass_at_1"].as_f64().unwrap()
    );
    assert_eq!(
        share(&flag("majority_correct"), 2.0),
        r["maj_at_k"].as_f64().unwrap()
    );
    assert_eq!(
        share(&|a| a["samples_correct"].as_f64().unwrap(), 4.0),
        r["avg_at_k"].as_f64().unwrap()
    );
    // A bad value names the field; no model at all says what to give.
    std::fs::write(&cfg, "steps = 1\nreward_difficulty_bounds = [0.9, 0.1]\n").unwrap();
    let out = serl(
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--seeds",
            dir.join("seeds.jsonl").to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reward_difficulty_bounds"));
    // --model without --seeds says what is missing.
    let out = serl(&["train", "--model", model.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seeds"));
    // A new run never appends to an earlier run's logs.
    std::fs::write(&cfg, "steps = 1\n").unwrap();
    let out = serl(
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--seeds",
            dir.join("seeds.jsonl").to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds a run"), "{err}");
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(),
        metrics
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&model);
}

#[cfg(feature = "train")]
#[test]
fn demo_data_and_sft_through_the_command_line() {
    let dir = std::env::temp_dir().join(format!("serl-cli-sft-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.join("data");
    let out = serl(
        &[
            "demo-data",
            "--out",
            d.to_str().unwrap(),
            "--n-sft",
            "16",
            "--n-eval",
            "5",
        ],
        "",
    );
    assert_success(&out);
    let sft_lines = std::fs::read_to_string(d.join("sft.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(sft_lines, 18); // 16 problems + 2 question lists (from the 12th on)
    assert_eq!(
        std::fs::read_to_string(d.join("seeds.jsonl"))
            .unwrap()
            .lines()
            .count(),
        50
    );
    assert_eq!(
        std::fs::read_to_string(d.join("eval.jsonl"))
            .unwrap()
            .lines()
            .count(),
        5
    );
    let m = dir.join("model");
    let out = serl(
        &[
            "sft",
            "--data",
            d.join("sft.jsonl").to_str().unwrap(),
            "--out",
            m.to_str().unwrap(),
            "--preset",
            "demo",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--max-len",
            "1024",
        ],
        "",
    );
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("saved"));
    // The result is a model the other commands load.
    let out = serl(
        &[
            "generate",
            "--model",
            m.to_str().unwrap(),
            "--prompt",
            "Ann has 3 apples.",
            "--chat",
            "--max-new-tokens",
            "4",
            "--json",
        ],
        "",
    );
    assert_success(&out);
    let out = serl(
        &[
            "sft",
            "--data",
            d.join("sft.jsonl").to_str().unwrap(),
            "--out",
            m.to_str().unwrap(),
            "--preset",
            "big",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("preset"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "train")]
#[test]
fn train_without_arguments_runs_the_embedded_demo() {
    let dir = std::env::temp_dir().join(format!("serl-cli-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // One step of the demo (the full run is `serl train` alone).
    let out = serl(
        &["train", "--steps", "1", "--out", dir.to_str().unwrap()],
        "",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("running the embedded demo"), "{err}");
    // The progress bar, the step line and the before/after table.
    assert!(err.contains("] step 1/1"), "{err}");
    assert!(err.contains("step 1: reward"), "{err}");
    for row in ["pass@1", "avg@16", "maj@16", "before", "after", "change"] {
        assert!(err.contains(row), "no {row} in {err}");
    }
    let svg = std::fs::read_to_string(dir.join("metrics.svg")).unwrap();
    assert!(svg.contains("<polyline"));
    let evals = std::fs::read_to_string(dir.join("eval.jsonl")).unwrap();
    assert_eq!(evals.lines().count(), 2, "before and after");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `serl` with `args`, sends it SIGINT once `marker` appears in its
/// progress output, and returns its exit status and everything it printed.
#[cfg(all(feature = "train", unix))]
fn serl_interrupted_at(args: &[&str], marker: &str) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_serl"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serl runs");
    let pid = child.id().to_string();
    let mut err = child.stderr.take().expect("stderr");
    let mut seen = String::new();
    let mut sent = false;
    let mut buf = [0u8; 4096];
    loop {
        let n = err.read(&mut buf).expect("reading serl's stderr");
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if !sent && seen.contains(marker) {
            let kill = Command::new("kill").args(["-INT", &pid]).status();
            assert!(kill.expect("kill runs").success());
            sent = true;
        }
    }
    let status = child.wait().expect("serl finishes");
    assert!(sent, "{marker} never appeared: {seen}");
    (status.code(), seen)
}

/// Ctrl-C at several points of a run (rollouts, update, checkpoint write)
/// saves the last finished step and exits 130; a checkpoint write that hits
/// a full disk (`ulimit -f`, SIGXFSZ ignored) fails with the file named,
/// leaving the previous checkpoint and `latest` valid; each run then
/// resumes to the weights of a run never interrupted.
#[cfg(all(feature = "train", unix))]
#[test]
fn ctrl_c_and_a_full_disk_leave_runs_that_resume_exactly() {
    let model = tiny_model_dir("faults");
    let dir = std::env::temp_dir().join(format!("serl-cli-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut seeds = String::new();
    for i in 0..8 {
        seeds.push_str(&format!(
            "{{\"problem\": \"What is {i} plus {i}?\", \"answer\": \"{}\"}}\n",
            2 * i
        ));
    }
    std::fs::write(dir.join("seeds.jsonl"), seeds).unwrap();
    let steps = 12;
    let toml = format!(
        "model = \"{}\"\nseeds = \"seeds.jsonl\"\nsteps = {steps}\nsave_steps = 1\nself_instruct = false\nrollout_batch_size = 4\nn_samples_per_prompt = 8\ngenerate_max_len = 48\ninput_template = \"{{problem}}\"\nreward_difficulty_bounds = [0.0, 1.0]\ntrain_batch_size = 32\nmicro_train_batch_size = 8\nactor_learning_rate = 0.01\n",
        model.display()
    );
    let cfg = dir.join("serl.toml");
    std::fs::write(&cfg, toml).unwrap();
    let cfg = cfg.to_str().unwrap();
    let last = format!("checkpoints/step-{steps:06}/model.safetensors");
    let straight = dir.join("straight");
    let out = serl(
        &[
            "train",
            "--config",
            cfg,
            "--out",
            straight.to_str().unwrap(),
            "--quiet",
        ],
        "",
    );
    assert_success(&out);
    let want = std::fs::read(straight.join(&last)).unwrap();
    let latest =
        |run: &std::path::Path| std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    for (i, marker) in [
        "step 2/12 rollouts",
        "step 3/12 update",
        "step 4/12 checkpoint",
    ]
    .iter()
    .enumerate()
    {
        let run = dir.join(format!("run{i}"));
        let (code, err) = serl_interrupted_at(
            &["train", "--config", cfg, "--out", run.to_str().unwrap()],
            marker,
        );
        assert_eq!(code, Some(130), "{marker}: {err}");
        assert!(err.contains("interrupted"), "{marker}: {err}");
        let name = latest(&run);
        let k: usize = name.trim_start_matches("step-").parse().unwrap();
        assert!(k >= 1 && k < steps, "{marker}: {name}");
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), k, "{marker}");
        if i == 0 {
            // The disk fills while step k+1 is saved: every file the run
            // appends to stays below the limit, the model file does not.
            let ck = run.join("checkpoints").join(&name);
            let model_bytes = std::fs::metadata(ck.join("model.safetensors"))
                .unwrap()
                .len();
            let limit_kib = model_bytes / 2 / 1024;
            for f in ["metrics.jsonl", "instructions.jsonl", "config.json"] {
                let len = std::fs::metadata(run.join(f)).map(|m| m.len()).unwrap_or(0);
                assert!(len * 4 < limit_kib * 1024, "{f}: {len} bytes");
            }
            let full = Command::new("bash")
                .args([
                    "-c",
                    &format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" \"$@\""),
                    env!("CARGO_BIN_EXE_serl"),
                    "train",
                    "--resume",
                    run.to_str().unwrap(),
                    "--quiet",
                ])
                .output()
                .unwrap();
            let e = String::from_utf8_lossy(&full.stderr);
            assert_eq!(full.status.code(), Some(1), "{e}");
            let half = format!("step-{:06}.tmp", k + 1);
            assert!(e.contains(&half) && e.contains("model.safetensors"), "{e}");
            assert_eq!(latest(&run), name, "latest moved: {e}");
            for f in [
                "model.safetensors",
                "optimizer.safetensors",
                "trainer_state.json",
            ] {
                assert!(ck.join(f).exists(), "{f}");
            }
            assert!(run.join("checkpoints").join(&half).exists());
        }
        let out = serl(&["train", "--resume", run.to_str().unwrap(), "--quiet"], "");
        assert!(
            out.status.success(),
            "{marker}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = std::fs::read(run.join(&last)).unwrap();
        assert!(
            got == want,
            "{marker}: resumed weights differ from the uninterrupted run"
        );
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), steps, "{marker}");
        let leftovers: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp") || n.ends_with(".old"))
            .collect();
        assert!(leftovers.is_empty(), "{marker}: {leftovers:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&model);
}
