//! The trainer with a verifier as the reward (`Trainer::set_reward_fn`):
//! here the demo task family's true answers (`train::demo::answer_of`) on
//! every problem, the model's own included. It is the oracle control of
//! the demo's probes: SeRL's loop with labels that are never wrong, to tell
//! the pseudo-labels' errors apart from what the update itself does.
//!
//! `cargo run --release -p serl-core --example oracle_probe -- CONFIG.toml`
//! (any trainer config; its `reward` is replaced).

use anyhow::Context;
use serl_core::train::{Config, Trainer, demo::answer_of, is_correct};

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: oracle_probe CONFIG.toml")?;
    let cfg = Config::from_file(std::path::Path::new(&path))?;
    let steps = cfg.steps;
    let mut t = Trainer::new(cfg)?;
    t.set_reward_fn(Box::new(|text, ex| {
        let right = answer_of(&ex.problem).is_some_and(|a| is_correct(text, &a.to_string()));
        f64::from(u8::from(right))
    }));
    let before = t.evaluate()?;
    println!("before: {before:?}");
    t.train(steps, |s| {
        println!(
            "step {} reward {:.3} kept {}{}",
            s.step,
            s.reward_mean,
            s.kept,
            s.eval
                .as_ref()
                .map(|e| format!(" eval {e:?}"))
                .unwrap_or_default()
        )
    })?;
    Ok(())
}
