//! `extract_answer` and `strip_string` against the official parser's output.
mod common;

use serl_core::eval::{extract_answer, strip_string};

#[test]
fn every_extract_vector_matches_the_reference() {
    let cases = common::fixture("extract.jsonl");
    assert!(cases.len() > 2000);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let input = common::s(case, "input");
        let extracted = extract_answer(input);
        let stripped = strip_string(&extracted);
        if extracted != common::s(case, "extracted") || stripped != common::s(case, "stripped") {
            failures.push(format!(
                "line {}: input {:?}\n  got      {:?} / {:?}\n  expected {:?} / {:?}",
                i + 1,
                input
                    .chars()
                    .rev()
                    .take(80)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>(),
                extracted,
                stripped,
                common::s(case, "extracted"),
                common::s(case, "stripped")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
