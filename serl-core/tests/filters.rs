//! Instruction parsing, ROUGE-L and the diversity filter against the
//! reference vectors.
mod common;

use serl_core::eval::{CaseMode, DiversityFilter, parse_instructions, rouge_l};

#[test]
fn every_postprocess_vector_matches_the_reference() {
    let cases = common::fixture("postprocess.jsonl");
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let got = parse_instructions(common::s(case, "response"), CaseMode::Capitalize);
        let want: Vec<String> = serde_json::from_value(case["instructions"].clone()).unwrap();
        if got != want {
            failures.push(format!("line {}: got {got:?}\n  want {want:?}", i + 1));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_rouge_vector_matches_bit_for_bit() {
    let cases = common::fixture("rouge.jsonl");
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let got = rouge_l(common::s(case, "a"), common::s(case, "b"));
        let want = (
            case["rougeL_f"].as_f64(),
            case["rougeL_p"].as_f64(),
            case["rougeL_r"].as_f64(),
        );
        if (Some(got.f), Some(got.p), Some(got.r)) != want {
            failures.push(format!("line {}: got {got:?} want {want:?}", i + 1));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_filter_vector_matches_the_reference() {
    for case in common::fixture("filter.jsonl") {
        let seeds: Vec<String> = serde_json::from_value(case["seed"].clone()).unwrap();
        let candidates: Vec<String> = serde_json::from_value(case["candidates"].clone()).unwrap();
        let threshold = case["threshold"].as_f64().unwrap();
        for fast in [false, true] {
            let mut filter = DiversityFilter::new(&seeds, threshold);
            for (k, cand) in candidates.iter().enumerate() {
                let v = if fast {
                    filter.offer_fast(cand)
                } else {
                    filter.offer(cand)
                };
                assert_eq!(
                    v.kept,
                    case["kept"][k].as_bool().unwrap(),
                    "case {} candidate {k}",
                    case["id"]
                );
                if !fast || v.kept {
                    assert_eq!(
                        v.max_rouge_l,
                        case["max_rougeL"][k].as_f64().unwrap(),
                        "case {} cand {k}",
                        case["id"]
                    );
                    assert_eq!(
                        v.argmax,
                        case["argmax"][k].as_u64().map(|x| x as usize),
                        "case {} cand {k}",
                        case["id"]
                    );
                } else {
                    assert!(v.max_rouge_l > threshold);
                }
            }
            let kept: Vec<String> =
                serde_json::from_value(case["kept_instructions"].clone()).unwrap();
            assert_eq!(filter.kept(), kept.as_slice());
        }
    }
}
