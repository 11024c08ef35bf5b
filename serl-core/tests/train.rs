//! The SeRL trainer on a tiny random model: learning with a reward that
//! prefers one kind of answer, deterministic bookkeeping, resume equality,
//! evaluation and configuration errors.
#![cfg(feature = "train")]

use std::path::Path;

mod common;

use common::train_setup as setup;
use serl_core::model::{DType, Device, Model, Tokenizer};
use serl_core::rl::Estimator;
use serl_core::train::{Config, RewardSource, Trainer};

fn lowercase_share(text: &str) -> f64 {
    let n = text.chars().count();
    if n == 0 {
        return 0.0;
    }
    text.chars().filter(|c| c.is_ascii_lowercase()).count() as f64 / n as f64
}

/// The `instructions.jsonl` lines of a run's kept groups (those trained on).
fn kept_lines(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("instructions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["status"] == "kept")
        .collect()
}

#[test]
fn mean_reward_rises_with_a_reward_that_prefers_one_kind_of_answer() {
    let (dir, mut cfg) = setup("learn");
    cfg.rollout_batch_size = 4;
    cfg.n_samples_per_prompt = 8;
    cfg.train_batch_size = 16;
    cfg.micro_train_batch_size = 8;
    cfg.advantage_estimator = Estimator::GroupNorm;
    cfg.init_kl_coef = 0.0;
    cfg.lr_warmup_ratio = 0.0;
    cfg.min_lr_ratio = 1.0;
    cfg.eval_data = None;
    let mut t = Trainer::new(cfg).unwrap();
    t.set_reward_fn(Box::new(|text, _| lowercase_share(text)));
    let mut rewards = Vec::new();
    t.train(12, |s| rewards.push(s.reward_mean)).unwrap();
    let first: f64 = rewards[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = rewards[9..].iter().sum::<f64>() / 3.0;
    eprintln!("rewards {rewards:?}");
    assert!(
        last > first + 0.2,
        "mean reward {first:.3} -> {last:.3}: {rewards:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn weights(t: &Trainer) -> Vec<Vec<f32>> {
    let m = t.model().unwrap();
    m.named_parameters()
        .iter()
        .map(|(_, v)| {
            let t = v.as_tensor().to_dtype(candle_core::DType::F32).unwrap();
            t.flatten_all().unwrap().to_vec1().unwrap()
        })
        .collect()
}

#[test]
fn resume_continues_exactly() {
    check_resume("resume", "f32");
}

#[test]
fn resume_continues_exactly_with_bf16_checkpoints() {
    // The checkpoint's weights are bf16; the f32 master weights travel in
    // optimizer.safetensors, so the resumed run matches bit for bit.
    check_resume("resume-bf16", "bf16");
}

fn check_resume(name: &str, dtype: &str) {
    let (dir, mut cfg) = setup(name);
    cfg.dtype = dtype.into();
    let mut straight = Trainer::new(Config {
        out: dir.join("straight"),
        ..cfg.clone()
    })
    .unwrap();
    straight.train(4, |_| {}).unwrap();

    let mut half = Trainer::new(Config {
        out: dir.join("halves"),
        ..cfg.clone()
    })
    .unwrap();
    half.train(2, |_| {}).unwrap();
    half.save_checkpoint().unwrap();
    // Steps after the checkpoint are lost with the process.
    half.train(1, |_| {}).unwrap();
    drop(half);
    let mut resumed = Trainer::resume(&dir.join("halves")).unwrap();
    assert_eq!(resumed.steps_done(), 2);
    resumed.train(2, |_| {}).unwrap();
    assert_eq!(
        weights(&straight),
        weights(&resumed),
        "N straight = N/2 + resume + N/2"
    );
    let metrics = std::fs::read_to_string(dir.join("halves/metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
    let ck = dir.join("halves/checkpoints/step-000002");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(ck.join(f).exists(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn strip_timings(v: &mut serde_json::Value) {
    if let Some(o) = v.as_object_mut() {
        o.remove("seconds");
        o.remove("tokens_per_s");
    }
}

#[test]
fn self_instruction_bookkeeping_is_deterministic_for_a_seed() {
    let (dir, mut cfg) = setup("selfinstruct");
    cfg.self_instruct = true;
    cfg.max_rounds_per_step = 2;
    cfg.eval_data = None;
    let run = |out: &Path| {
        let mut t = Trainer::new(Config {
            out: out.to_path_buf(),
            ..cfg.clone()
        })
        .unwrap();
        t.train(2, |_| {}).unwrap();
        let mut m: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        m.iter_mut().for_each(strip_timings);
        let instr = std::fs::read_to_string(out.join("instructions.jsonl")).unwrap_or_default();
        (m, instr, t.pool().to_vec())
    };
    let a = run(&dir.join("a"));
    let b = run(&dir.join("b"));
    assert_eq!(a, b);
    for m in &a.0 {
        let g = m["generated"].as_u64().unwrap();
        let filtered =
            m["rule_filtered"].as_u64().unwrap() + m["similarity_filtered"].as_u64().unwrap();
        assert!(g >= filtered);
        assert!(m["rounds"].as_u64().unwrap() <= 2);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ground_truth_baseline_and_evaluation_run() {
    let (dir, mut cfg) = setup("gt");
    cfg.reward = RewardSource::GroundTruth;
    cfg.eval_steps = 1;
    let mut t = Trainer::new(cfg).unwrap();
    let s = t.step().unwrap();
    assert_eq!(s.kept, 3);
    assert!(s.reward_mean >= 0.0 && s.reward_mean <= 1.0);
    let e = s.eval.expect("evaluated after step 1");
    assert_eq!(e.questions, 2);
    assert!(e.pass_at_1 <= 1.0 && e.avg_at_k.is_some() && e.maj_at_k.is_some());
    assert!(dir.join("run/eval.jsonl").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configurations_are_rejected_with_the_field_named() {
    let (dir, cfg) = setup("badcfg");
    let cases = [
        (
            Config {
                advantage_estimator: Estimator::Rloo,
                n_samples_per_prompt: 1,
                ..cfg.clone()
            },
            "rloo",
        ),
        (
            Config {
                reward_difficulty_bounds: [0.5, 1.5],
                ..cfg.clone()
            },
            "reward_difficulty_bounds",
        ),
        (
            Config {
                seeds: dir.join("nope.jsonl"),
                ..cfg.clone()
            },
            "seeds",
        ),
        (
            Config {
                micro_train_batch_size: 64,
                ..cfg.clone()
            },
            "micro_train_batch_size",
        ),
        (
            Config {
                top_p: 0.0,
                ..cfg.clone()
            },
            "top_p",
        ),
        (
            Config {
                input_template: "no placeholder".into(),
                ..cfg.clone()
            },
            "input_template",
        ),
    ];
    for (c, word) in cases {
        let e = Trainer::new(c).err().expect("rejected").to_string();
        assert!(e.contains(word), "{e}");
    }
    // Unknown keys and bad types in a TOML file name the problem.
    let p = dir.join("bad.toml");
    std::fs::write(&p, "steps = 3\nlearning_rate = 1e-6\n").unwrap();
    let e = Config::from_file(&p).expect_err("unknown key").to_string();
    assert!(e.contains("learning_rate"), "{e}");
    std::fs::write(&p, "steps = \"three\"\n").unwrap();
    let e = Config::from_file(&p).expect_err("bad type").to_string();
    assert!(e.contains("steps"), "{e}");
    // A seed line without a problem names file and line.
    std::fs::write(
        dir.join("seeds.jsonl"),
        "{\"problem\": \"ok\"}\n{\"text\": \"no problem field\"}\n",
    )
    .unwrap();
    let e = Trainer::new(cfg).err().expect("bad seeds").to_string();
    assert!(e.contains("seeds.jsonl:2") && e.contains("problem"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sft_lowers_the_loss_and_is_reproducible() {
    use serl_core::train::{SftConfig, sft};
    let dir = std::env::temp_dir().join(format!("serl-sft-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut corpus = String::new();
    for i in 0..8 {
        corpus.push_str(&format!(
            "{{\"messages\": [{{\"role\": \"user\", \"content\": \"{i}+1?\"}}, {{\"role\": \"assistant\", \"content\": \"\\\\boxed{{{}}}\"}}]}}\n",
            i + 1
        ));
    }
    corpus
        .push_str("{\"prompt\": \"say hi\", \"completion\": \"hi\"}\n{\"text\": \"plain text\"}\n");
    std::fs::write(dir.join("sft.jsonl"), &corpus).unwrap();
    let run = |out: &str| {
        let model = Model::random(
            serl_core::model::tiny_llama_config(),
            3,
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        let tok = Tokenizer::byte_level(&[]).unwrap();
        let cfg = SftConfig {
            data: dir.join("sft.jsonl"),
            out: dir.join(out),
            steps: 30,
            batch_size: 4,
            lr: 3e-3,
            max_len: 128,
            ..SftConfig::default()
        };
        let s = sft(&model, &tok, &cfg, &mut |_, _, _| {}).unwrap();
        (
            s,
            std::fs::read(dir.join(out).join("model.safetensors")).unwrap(),
        )
    };
    let (a, wa) = run("a");
    let (_, wb) = run("b");
    assert!(
        a.loss_last < a.loss_first * 0.7,
        "loss {} -> {}",
        a.loss_first,
        a.loss_last
    );
    assert!(wa == wb, "same data, seed and steps give the same weights");
    // A record without a known shape names its line.
    std::fs::write(dir.join("bad.jsonl"), "{\"text\": \"ok\"}\n{\"foo\": 1}\n").unwrap();
    let model = Model::random(
        serl_core::model::tiny_llama_config(),
        3,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let cfg = SftConfig {
        data: dir.join("bad.jsonl"),
        out: dir.join("c"),
        steps: 1,
        ..SftConfig::default()
    };
    let e = sft(
        &model,
        &Tokenizer::byte_level(&[]).unwrap(),
        &cfg,
        &mut |_, _, _| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("bad.jsonl:2"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn byte_level_bpe_learns_merges_and_round_trips() {
    let texts = [
        "the cat and the hat",
        "the bat and the mat",
        "then there were three",
    ];
    let tok = Tokenizer::train_byte_level(&texts, 20).unwrap();
    assert!(tok.vocab_size() > 259 && tok.vocab_size() <= 279);
    for t in texts
        .iter()
        .chain(["unseen words 123", "<|im_end|>x"].iter())
    {
        let ids = tok.encode(t).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), *t);
    }
    let plain = Tokenizer::byte_level(&[]).unwrap();
    assert!(tok.encode(texts[0]).unwrap().len() < plain.encode(texts[0]).unwrap().len());
    // Digits stay single tokens (the arithmetic must see them).
    assert_eq!(tok.encode("123").unwrap().len(), 3);
    // Deterministic.
    let again = Tokenizer::train_byte_level(&texts, 20).unwrap();
    assert_eq!(
        again.encode("the hat and the cat").unwrap(),
        tok.encode("the hat and the cat").unwrap()
    );
}

#[test]
fn every_estimator_and_kl_placement_runs_a_step() {
    let (dir, cfg) = setup("estimators");
    for (i, est) in [
        Estimator::Reinforce,
        Estimator::Rloo,
        Estimator::ReinforceBaseline,
        Estimator::GroupNorm,
        Estimator::DrGrpo,
        Estimator::Raft,
    ]
    .into_iter()
    .enumerate()
    {
        for use_kl_loss in [false, true] {
            let out = dir.join(format!("run-{i}-{use_kl_loss}"));
            let mut t = Trainer::new(Config {
                advantage_estimator: est,
                use_kl_loss,
                eval_data: None,
                out,
                ..cfg.clone()
            })
            .unwrap();
            t.step().unwrap();
            let s = t.step().unwrap();
            assert!(
                s.loss.is_finite() && s.grad_norm.is_finite() && s.grad_norm > 0.0,
                "{est:?} {use_kl_loss}: {s:?}"
            );
            // After one update the policy has moved away from the reference.
            assert!(s.kl.abs() > 0.0, "{est:?} {use_kl_loss}: kl {}", s.kl);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_update_reproduces_the_samplers_log_probs_and_reports_clipping() {
    let (dir, cfg) = setup("drift");
    // One epoch: the loss must see exactly the sampler's log-probs (ratio 1),
    // so a misaligned position or prompt shows up as drift here.
    let mut t = Trainer::new(Config {
        eval_data: None,
        out: dir.join("one-epoch"),
        train_batch_size: 12,
        micro_train_batch_size: 4,
        ..cfg.clone()
    })
    .unwrap();
    let s = t.step().unwrap();
    assert_eq!(s.optimizer_steps, 1);
    assert!(s.log_ratio_abs_mean < 1e-4, "{s:?}");
    assert_eq!(s.clip_fraction, 0.0, "{s:?}");
    // Every group scored by majority vote is logged with its majority
    // answer, the pseudo-label it was trained on.
    let kept = kept_lines(&dir.join("one-epoch"));
    assert_eq!(kept.len(), s.kept, "{kept:?}");
    assert!(kept.iter().all(|v| v["majority"].is_string()), "{kept:?}");
    // Later epochs train on a moved policy: the ratio leaves 1 and, at this
    // learning rate, some tokens are clipped.
    let mut t = Trainer::new(Config {
        eval_data: None,
        out: dir.join("four-epochs"),
        max_epochs: 4,
        train_batch_size: 3,
        ..cfg
    })
    .unwrap();
    let s = t.step().unwrap();
    assert!(s.log_ratio_abs_mean > 1e-3, "{s:?}");
    assert!(s.clip_fraction > 0.0, "{s:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_labeler_measures_the_pseudo_labels_of_unlabelled_problems() {
    let (dir, cfg) = setup("labeler");
    let mut seeds = String::new();
    for i in 0..6 {
        seeds.push_str(&format!("{{\"problem\": \"What is {i} plus 1?\"}}\n"));
    }
    std::fs::write(dir.join("seeds.jsonl"), seeds).unwrap();
    let run = |name: &str, labeler: Option<serl_core::train::LabelFn>| {
        let out = dir.join(name);
        let mut t = Trainer::new(Config {
            eval_data: None,
            out: out.clone(),
            ..cfg.clone()
        })
        .unwrap();
        if let Some(f) = labeler {
            t.set_labeler(f);
        }
        let s = t.step().unwrap();
        (s, kept_lines(&out))
    };
    let (s, log) = run("none", None);
    assert_eq!((s.label_accuracy, s.kept_label_accuracy), (None, None));
    assert!(log.iter().all(|v| v["majority_correct"].is_null()));
    // Labels for "What is 0 plus 1?" .. "What is 5 plus 1?"; the random
    // model's majority answers are whatever they are, and the metric must
    // be the share of kept lines marked correct.
    let (s, log) = run(
        "labelled",
        Some(Box::new(|q: &str| {
            let i: u32 = q.split(' ').nth(2)?.parse().ok()?;
            Some((i + 1).to_string())
        })),
    );
    assert!(!log.is_empty());
    let right = log
        .iter()
        .map(|v| v["majority_correct"].as_bool().expect("marked"))
        .filter(|&ok| ok)
        .count();
    assert_eq!(
        s.kept_label_accuracy,
        Some(right as f64 / log.len() as f64),
        "{log:?}"
    );
    assert!(s.label_accuracy.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A damaged or hand-edited checkpoint is a clear error naming the file,
/// never a panic or a silently different run.
#[test]
fn damaged_checkpoints_are_errors_that_name_the_file() {
    let (dir, cfg) = setup("damaged");
    let out = dir.join("run");
    let mut t = Trainer::new(cfg).unwrap();
    t.train(1, |_| {}).unwrap();
    t.save_checkpoint().unwrap();
    drop(t);
    let ck = out.join("checkpoints/step-000001");
    let resume_err = || match Trainer::resume(&out) {
        Ok(_) => panic!("a damaged checkpoint resumed"),
        Err(e) => e.to_string(),
    };
    let keep = |f: &str| std::fs::read(ck.join(f)).unwrap();

    // A truncated optimizer file.
    let opt = keep("optimizer.safetensors");
    std::fs::write(ck.join("optimizer.safetensors"), &opt[..opt.len() / 2]).unwrap();
    let e = resume_err();
    assert!(e.contains("optimizer.safetensors"), "{e}");
    std::fs::write(ck.join("optimizer.safetensors"), &opt).unwrap();

    // trainer_state.json that is not this program's.
    let state = keep("trainer_state.json");
    std::fs::write(ck.join("trainer_state.json"), "{\"step\": \"three\"}").unwrap();
    let e = resume_err();
    assert!(e.contains("trainer_state.json"), "{e}");
    std::fs::write(ck.join("trainer_state.json"), &state).unwrap();

    // trainer_state.json of a run with another configuration.
    let mut st: serde_json::Value = serde_json::from_slice(&state).unwrap();
    st["config"]["seed"] = serde_json::json!(7);
    st["config"]["n_samples_per_prompt"] = serde_json::json!(8);
    std::fs::write(ck.join("trainer_state.json"), st.to_string()).unwrap();
    let e = resume_err();
    assert!(
        e.contains("trainer_state.json")
            && e.contains("another configuration (n_samples_per_prompt, seed differ"),
        "{e}"
    );
    // ... or whose step disagrees with its history.
    let mut st: serde_json::Value = serde_json::from_slice(&state).unwrap();
    st["step"] = serde_json::json!(3);
    std::fs::write(ck.join("trainer_state.json"), st.to_string()).unwrap();
    let e = resume_err();
    assert!(
        e.contains("trainer_state.json: step 3 with 1 steps of history"),
        "{e}"
    );
    std::fs::write(ck.join("trainer_state.json"), &state).unwrap();

    // A checkpoint whose model is not the run's model.
    let config = keep("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&config).unwrap();
    c["num_hidden_layers"] = serde_json::json!(c["num_hidden_layers"].as_u64().unwrap() + 1);
    std::fs::write(ck.join("config.json"), c.to_string()).unwrap();
    let e = resume_err();
    assert!(e.contains("step-000001"), "{e}");
    std::fs::write(ck.join("config.json"), &config).unwrap();

    // Undamaged again, it resumes.
    assert_eq!(Trainer::resume(&out).unwrap().steps_done(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stop flag (what Ctrl-C sets in `serl train`) set in each phase of a
/// step: the step stops at the next phase boundary, the trainer is left as
/// before it, and the run saved then and resumed ends with the weights of a
/// run never interrupted.
#[test]
fn a_stop_in_any_phase_resumes_to_the_uninterrupted_weights() {
    let (dir, mut cfg) = setup("stop");
    cfg.save_steps = 1;
    cfg.steps = 3;
    cfg.max_rounds_per_step = 2;
    // (self-instruction, phase in which the flag is set during step 2,
    // steps finished when the stop lands). The tiny model's own problems
    // rarely pass the filters, so rollouts and updates run on the seeds.
    let cases = [
        (true, "instructions", 1),
        (false, "rollouts", 1),
        (false, "update", 2),
        (false, "checkpoint", 2),
    ];
    let mut want = std::collections::HashMap::new();
    for si in [true, false] {
        let mut straight = Trainer::new(Config {
            out: dir.join(format!("straight-{si}")),
            self_instruct: si,
            ..cfg.clone()
        })
        .unwrap();
        straight.train(3, |_| {}).unwrap();
        want.insert(si, weights(&straight));
    }
    for (si, phase, done) in cases {
        let out = dir.join(format!("stop-{phase}"));
        let mut t = Trainer::new(Config {
            out: out.clone(),
            self_instruct: si,
            ..cfg.clone()
        })
        .unwrap();
        t.train(1, |_| {}).unwrap();
        let stop = t.stop_flag();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let saw = seen.clone();
        t.set_progress(Box::new(move |p, _, _| {
            if p == phase {
                saw.store(true, std::sync::atomic::Ordering::SeqCst);
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }));
        let mut stopped = false;
        for _ in 0..2 {
            match t.step() {
                Ok(_) => {}
                Err(serl_core::train::TrainError::Interrupted) => {
                    stopped = true;
                    break;
                }
                Err(e) => panic!("{phase}: {e}"),
            }
        }
        assert!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            "{phase} never ran"
        );
        assert!(stopped, "{phase}: the stop never landed");
        assert_eq!(t.steps_done(), done, "{phase}");
        // `serl train` then saves the last finished step unless it is saved.
        assert_eq!(t.checkpointed_step(), Some(done), "{phase}");
        drop(t);
        let mut resumed = Trainer::resume(&out).unwrap();
        assert_eq!(resumed.steps_done(), done, "{phase}");
        resumed.train(3 - done, |_| {}).unwrap();
        assert!(
            weights(&resumed) == want[&si],
            "{phase}: resumed weights differ"
        );
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), 3, "{phase}");
    }
    // Without resuming, the interrupted trainer continues as if never stopped.
    let out = dir.join("continue");
    let mut t = Trainer::new(Config {
        out: out.clone(),
        self_instruct: false,
        ..cfg.clone()
    })
    .unwrap();
    t.train(1, |_| {}).unwrap();
    let stop = t.stop_flag();
    let flag = stop.clone();
    t.set_progress(Box::new(move |p, _, _| {
        if p == "rollouts" {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }));
    assert!(matches!(
        t.step(),
        Err(serl_core::train::TrainError::Interrupted)
    ));
    t.set_progress(Box::new(|_, _, _| {}));
    stop.store(false, std::sync::atomic::Ordering::SeqCst);
    t.train(2, |_| {}).unwrap();
    assert!(weights(&t) == want[&false], "continued weights differ");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a crash or a full disk leaves in `checkpoints/` is put in order on
/// resume: half-written directories and files go, a checkpoint moved aside
/// for its replacement comes back, and log lines of unsaved steps go.
#[test]
fn resume_tidies_what_a_crash_left() {
    let (dir, cfg) = setup("tidy");
    let out = dir.join("run");
    let mut t = Trainer::new(cfg).unwrap();
    t.train(1, |_| {}).unwrap();
    t.save_checkpoint().unwrap();
    t.train(1, |_| {}).unwrap();
    drop(t);
    let root = out.join("checkpoints");
    // A checkpoint of step 2 that never finished, and a `latest` half-written.
    std::fs::create_dir_all(root.join("step-000002.tmp")).unwrap();
    std::fs::write(root.join("step-000002.tmp/model.safetensors"), b"torn").unwrap();
    std::fs::write(root.join("latest.tmp4242"), b"step-0").unwrap();
    // step 1 moved aside while being rewritten, its replacement never renamed.
    std::fs::rename(root.join("step-000001"), root.join("step-000001.old")).unwrap();
    // A torn last line of the instruction log.
    let mut log = std::fs::read_to_string(out.join("instructions.jsonl")).unwrap();
    let step2 = log.lines().filter(|l| l.contains("\"step\":2")).count();
    assert!(step2 > 0);
    log.push_str("{\"step\": 2, \"instr");
    std::fs::write(out.join("instructions.jsonl"), &log).unwrap();

    let t = Trainer::resume(&out).unwrap();
    assert_eq!(t.steps_done(), 1);
    let mut left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["latest", "step-000001"]);
    let log = std::fs::read_to_string(out.join("instructions.jsonl")).unwrap();
    assert!(!log.is_empty() && log.ends_with('\n'));
    for l in log.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["step"], 1, "{l}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg(not(feature = "wgpu"))]
fn a_wgpu_device_without_the_feature_is_a_clear_error() {
    let (dir, cfg) = setup("no-wgpu");
    let e = Trainer::new(Config {
        device: "wgpu".into(),
        ..cfg
    })
    .err()
    .expect("no wgpu backend in this build");
    assert!(
        e.to_string().contains("--features wgpu") || e.to_string().contains("`wgpu` feature"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
