//! The browser's self-play round, run natively on the CPU backend with the
//! shipped demo model and configuration: the model writes problems and the
//! filters judge each, then every kept problem is answered and voted on.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use serl_core::eval::Rng;
use serl_core::model::{LoadOptions, load_model};
use serl_core::train::{Config, Scorer, read_examples};
use serl_webgpu::round;

/// Runs a future that never waits on anything outside it (the CPU
/// backend's reads are ready at once).
fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn a_self_play_round_writes_filters_answers_and_votes() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo");
    let cfg = Config::from_toml(&std::fs::read_to_string(demo.join("serl-demo.toml")).unwrap())
        .expect("demo config");
    let (model, tok) = load_model(&demo.join("model"), &LoadOptions::default()).expect("model");
    let seeds: Vec<String> = read_examples(&demo.join("seeds.jsonl"), false)
        .expect("seeds")
        .into_iter()
        .map(|e| e.problem)
        .collect();
    let scorer = Scorer::new(&model).expect("scorer");
    let dec = scorer.decoder();
    let player = round::Player {
        dec: &dec,
        tok: &tok,
        cfg: &cfg,
    };
    let mut rng = Rng::new(3);
    let mut events = 0usize;
    let (written, tokens) = run(player.write_problems(&seeds, &[], 4, &mut rng, |_| events += 1))
        .expect("write problems");
    assert_eq!(events, tokens, "one callback per generated token");
    assert!(tokens > 0);
    let kept: Vec<String> = written
        .iter()
        .filter(|w| w.status == "kept")
        .map(|w| w.text.clone())
        .collect();
    assert!(!kept.is_empty() && kept.len() <= 4, "kept {written:?}");
    for w in &written {
        match w.status {
            "kept" => assert!(w.reason.is_none() && w.rouge_l.is_none()),
            "rule_filtered" => assert!(w.reason.is_some()),
            "similarity_filtered" => {
                assert!(
                    w.rouge_l
                        .is_some_and(|r| r > cfg.rouge_threshold && r <= 1.0)
                )
            }
            other => panic!("status {other}"),
        }
    }
    // A problem that was kept is new: no seed repeats it.
    assert!(kept.iter().all(|k| !seeds.contains(k)));
    let (groups, tokens) = run(player.answer_and_vote(&kept, 6, &mut rng, |_| {})).expect("answer");
    assert!(tokens > 0);
    assert_eq!(groups.len(), kept.len());
    let [lo, hi] = cfg.reward_difficulty_bounds;
    for g in &groups {
        assert_eq!(g.answers.len(), 6);
        assert_eq!(g.extracted.len(), 6);
        assert!(g.rewards.iter().all(|&r| r == 0.0 || r == 1.0));
        let mean = g.rewards.iter().sum::<f64>() / 6.0;
        assert!((mean - g.agreement).abs() < 1e-12);
        assert!(g.rewards.contains(&1.0), "somebody is in the majority");
        assert_eq!(g.kept, lo <= g.agreement && g.agreement <= hi);
    }
    // Same seed, same round.
    let mut again = Rng::new(3);
    let (written2, _) =
        run(player.write_problems(&seeds, &[], 4, &mut again, |_| {})).expect("again");
    assert_eq!(
        written.iter().map(|w| &w.text).collect::<Vec<_>>(),
        written2.iter().map(|w| &w.text).collect::<Vec<_>>()
    );
}
