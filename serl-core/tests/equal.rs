//! The equivalence checker against math_verify on `equal.jsonl`.
mod common;

use serl_core::eval::equivalent;

#[test]
fn equivalence_agrees_with_math_verify() {
    let cases = common::fixture("equal.jsonl");
    let mut disagree = Vec::new();
    let mut total = 0;
    for (i, case) in cases.iter().enumerate() {
        let Some(want) = case["math_verify"].as_bool() else {
            continue;
        };
        total += 1;
        let got = equivalent(common::s(case, "pred"), common::s(case, "ref"));
        if got != want {
            disagree.push(format!(
                "line {}: pred {:?} ref {:?}: want {want}",
                i + 1,
                case["pred"],
                case["ref"]
            ));
        }
    }
    let agreement = 1.0 - disagree.len() as f64 / total as f64;
    println!(
        "agreement {agreement:.4} ({} of {total} differ)\n{}",
        disagree.len(),
        disagree.join("\n")
    );
    assert!(agreement >= 0.97, "agreement {agreement}");
}
