//! Majority votes against the reference rewards on `vote.jsonl`.
mod common;

use serl_core::eval::{VoteMode, vote};

fn rewards(case: &serde_json::Value, key: &str) -> Vec<f64> {
    serde_json::from_value(case[key].clone()).unwrap()
}

fn responses(case: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(case["responses"].clone()).unwrap()
}

#[test]
fn string_vote_matches_every_case() {
    for (i, case) in common::fixture("vote.jsonl").iter().enumerate() {
        let r = vote(&responses(case), VoteMode::String);
        assert_eq!(
            r.rewards,
            rewards(case, "rewards_string_maj"),
            "line {}",
            i + 1
        );
        let extracted: Vec<String> = serde_json::from_value(case["extracted"].clone()).unwrap();
        let once: Vec<String> = responses(case)
            .iter()
            .map(|x| serl_core::eval::extract_answer(x))
            .collect();
        assert_eq!(once, extracted, "line {}", i + 1);
        assert_eq!(
            r.agreement,
            r.rewards.iter().sum::<f64>() / r.rewards.len() as f64
        );
    }
}

#[test]
fn equiv_vote_matches_at_least_95_percent_of_groups() {
    let cases = common::fixture("vote.jsonl");
    let mut differ = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let r = vote(&responses(case), VoteMode::Equiv);
        let want = rewards(case, "rewards_math_verify_maj");
        if r.rewards != want {
            differ.push(format!(
                "line {}: got {:?}\n   want {:?}\n   answers {:?}",
                i + 1,
                r.rewards,
                want,
                r.answers
            ));
        }
    }
    let share = 1.0 - differ.len() as f64 / cases.len() as f64;
    println!(
        "identical groups {share:.4} ({} of {} differ)\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
    assert!(share >= 0.95, "identical groups {share}");
}
