//! The RL arithmetic against `rl.jsonl` (a float64 port of OpenRLHF's formulas).
mod common;

use serde_json::Value;
use serl_core::rl::{self, Estimator, KlEstimator, RlConfig};

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    serde_json::from_value(v.clone()).expect("matrix")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs()) || (a.is_nan() && b.is_nan())
}

#[test]
fn every_rl_vector_within_1e9() {
    let cases = common::fixture("rl.jsonl");
    assert_eq!(cases.len(), 200);
    for case in &cases {
        let id = &case["id"];
        let config = RlConfig {
            estimator: serde_json::from_value::<Estimator>(case["estimator"].clone())
                .expect("estimator"),
            kl_estimator: serde_json::from_value::<KlEstimator>(case["kl_estimator"].clone())
                .expect("kl estimator"),
            kl_coef: case["kl_coef"].as_f64().expect("kl_coef"),
            clip_eps: case["clip_eps"].as_f64().expect("clip_eps"),
            n_samples_per_prompt: case["n_samples_per_prompt"].as_u64().expect("n") as usize,
            gamma: case["gamma"].as_f64().expect("gamma"),
            reward_clip: (
                case["reward_clip"][0].as_f64().expect("lo"),
                case["reward_clip"][1].as_f64().expect("hi"),
            ),
        };
        let rewards: Vec<f64> = serde_json::from_value(case["rewards"].clone()).expect("rewards");
        let out = rl::compute(
            &config,
            &matrix(&case["action_mask"]),
            &rewards,
            &matrix(&case["log_probs"]),
            &matrix(&case["ref_log_probs"]),
            &matrix(&case["old_log_probs"]),
            &matrix(&case["new_log_probs"]),
        )
        .unwrap_or_else(|e| panic!("case {id}: {e}"));
        let e = &case["expected"];
        for (name, got) in [
            ("kl", &out.kl),
            ("token_rewards", &out.token_rewards),
            ("returns", &out.returns),
            ("advantages", &out.advantages),
        ] {
            let want = matrix(&e[name]);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                for (t, (a, b)) in g.iter().zip(w).enumerate() {
                    assert!(close(*a, *b), "case {id} {name}[{i}][{t}]: {a} vs {b}");
                }
            }
        }
        let shaped: Vec<f64> = serde_json::from_value(e["shaped_rewards"].clone()).expect("shaped");
        for (i, (a, b)) in out.shaped_rewards.iter().zip(&shaped).enumerate() {
            assert!(close(*a, *b), "case {id} shaped_rewards[{i}]: {a} vs {b}");
        }
        for (name, got) in [
            ("policy_loss_token_mean", out.policy_loss_token_mean),
            ("policy_loss_seq_mean", out.policy_loss_seq_mean),
        ] {
            let want = e[name].as_f64().expect("loss");
            assert!(close(got, want), "case {id} {name}: {got} vs {want}");
        }
    }
}

#[test]
fn bad_shapes_and_groups_are_errors() {
    let config = RlConfig {
        estimator: Estimator::Rloo,
        kl_estimator: KlEstimator::K1,
        kl_coef: 0.0,
        clip_eps: 0.2,
        n_samples_per_prompt: 1,
        gamma: 1.0,
        reward_clip: (-10.0, 10.0),
    };
    let m = vec![vec![1.0, 1.0]];
    let err = rl::compute(&config, &m, &[1.0], &m, &m, &m, &m).unwrap_err();
    assert!(err.to_string().contains("rloo needs at least 2"), "{err}");
    let err = rl::compute(&config, &m, &[1.0, 2.0], &m, &m, &m, &m).unwrap_err();
    assert!(err.to_string().contains("rewards has 2 entries"), "{err}");
    let short = vec![vec![1.0]];
    let err = rl::compute(
        &RlConfig {
            estimator: Estimator::Reinforce,
            ..config
        },
        &m,
        &[1.0],
        &short,
        &m,
        &m,
        &m,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("log_probs[0] has 1 positions"),
        "{err}"
    );
}

/// RAFT (not in the reference vectors): every token of a sequence gets its
/// reward, with KL shaping, and nothing is centred or normalised, so wrong
/// answers (reward 0) get no gradient at all.
#[test]
fn raft_advantages_are_the_rewards_themselves() {
    let config = RlConfig {
        estimator: Estimator::Raft,
        kl_estimator: KlEstimator::K1,
        kl_coef: 0.0,
        clip_eps: 0.2,
        n_samples_per_prompt: 2,
        gamma: 1.0,
        reward_clip: (-10.0, 10.0),
    };
    let m = vec![vec![1.0, 1.0, 0.0], vec![1.0, 1.0, 1.0]];
    let z = vec![vec![0.0; 3]; 2];
    let out = rl::compute(&config, &m, &[1.0, 0.0], &z, &z, &z, &z).unwrap();
    assert_eq!(out.shaped_rewards, vec![1.0, 0.0]);
    assert_eq!(out.advantages, vec![vec![1.0, 1.0, 0.0], vec![0.0; 3]]);
    // Ratio 1: the loss is minus the mean advantage over the 5 response tokens.
    assert!((out.policy_loss_token_mean + 2.0 / 5.0).abs() < 1e-12);
    // A KL penalty still shapes the returns token by token.
    let lp = vec![vec![0.5, 0.5, 0.0], vec![0.0; 3]];
    let out = rl::compute(
        &RlConfig {
            kl_coef: 0.1,
            ..config
        },
        &m,
        &[1.0, 0.0],
        &lp,
        &z,
        &z,
        &z,
    )
    .unwrap();
    assert!(
        (out.advantages[0][0] - 0.9).abs() < 1e-12,
        "{:?}",
        out.advantages
    );
    assert!(
        (out.advantages[0][1] - 0.95).abs() < 1e-12,
        "{:?}",
        out.advantages
    );
}
