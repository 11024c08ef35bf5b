//! Property tests: the evaluator never panics and keeps its invariants.
use proptest::prelude::*;
use serl_core::eval::{self, CaseMode, DiversityFilter, VoteMode};

/// Text that looks like model output: LaTeX-ish fragments mixed with
/// arbitrary Unicode.
fn mathish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\\boxed{".to_string()),
        Just("}".to_string()),
        Just("$".to_string()),
        Just("\\frac{1}{2}".to_string()),
        Just("The answer is ".to_string()),
        Just("final answer is $".to_string()),
        Just("$. I hope".to_string()),
        Just("\\sqrt".to_string()),
        Just("\\text{cm}".to_string()),
        Just("=".to_string()),
        Just("1.".to_string()),
        Just("\n2. ".to_string()),
        "[0-9]{1,4}",
        "[a-z ]{1,6}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn nothing_panics_on_arbitrary_text(a in mathish(), b in any::<String>()) {
        let _ = eval::extract_answer(&a);
        let _ = eval::strip_string(&b);
        let _ = eval::equivalent(&a, &b);
        let _ = eval::parse_candidates(&b);
        let _ = eval::parse_instructions(&a, CaseMode::Capitalize);
        let _ = eval::parse_instructions(&b, CaseMode::Keep);
        let s = eval::rouge_l(&a, &b);
        prop_assert!((0.0..=1.0).contains(&s.f) && (0.0..=1.0).contains(&s.p) && (0.0..=1.0).contains(&s.r));
        let mut f = DiversityFilter::new(std::slice::from_ref(&a), 0.7);
        let _ = f.offer(&b);
    }

    #[test]
    fn rewards_are_binary_and_agreement_is_their_mean(group in proptest::collection::vec(mathish(), 1..8)) {
        for mode in [VoteMode::String, VoteMode::Equiv] {
            let r = eval::vote(&group, mode);
            prop_assert_eq!(r.rewards.len(), group.len());
            prop_assert!(r.rewards.iter().all(|x| *x == 0.0 || *x == 1.0));
            prop_assert!(r.rewards.contains(&1.0));
            let mean = r.rewards.iter().sum::<f64>() / r.rewards.len() as f64;
            prop_assert_eq!(r.agreement, mean);
        }
    }

    #[test]
    fn shuffling_keeps_the_majority_unless_tied(
        answers in proptest::collection::vec(0u8..4, 1..16),
        perm_seed in any::<u64>(),
    ) {
        let group: Vec<String> = answers.iter().map(|a| format!("so \\boxed{{{a}}}")).collect();
        let mut shuffled = group.clone();
        eval::Rng::new(perm_seed).shuffle(&mut shuffled);
        let mut counts = [0usize; 4];
        for a in &answers { counts[*a as usize] += 1; }
        let top = *counts.iter().max().unwrap_or(&0);
        let tied = counts.iter().filter(|c| **c == top).count() > 1;
        for mode in [VoteMode::String, VoteMode::Equiv] {
            let a = eval::vote(&group, mode);
            let b = eval::vote(&shuffled, mode);
            if !tied {
                prop_assert_eq!(&a.majority, &b.majority);
                prop_assert_eq!(a.agreement, b.agreement);
            }
        }
    }

    #[test]
    fn rouge_of_a_text_with_itself_is_one(a in any::<String>(), b in "[a-z0-9 ]{0,40}") {
        for t in [&a, &b] {
            let s = eval::rouge_l(t, t);
            if eval::tokenize(t).is_empty() {
                prop_assert_eq!(s.f, 0.0);
            } else {
                prop_assert_eq!(s.f, 1.0);
            }
        }
    }
}

/// Model text can nest without end: deep groups, long sign runs and long
/// operator chains are answers that do not parse, never a stack overflow
/// (found by reading the parser while writing the fuzz targets; the probe
/// is `examples/deep_probe.rs`).
#[test]
fn deeply_nested_answers_do_not_overflow_the_stack() {
    let n = 100_000;
    let shapes = [
        format!("\\boxed{{{}1{}}}", "(".repeat(n), ")".repeat(n)),
        format!("\\boxed{{{}1{}}}", "{".repeat(n), "}".repeat(n)),
        format!("\\boxed{{{}1{}}}", "\\frac{1}{".repeat(n), "}".repeat(n)),
        format!("\\boxed{{{}1}}", "-".repeat(n)),
        format!("\\boxed{{{}2}}", "2^".repeat(n)),
        format!("\\boxed{{{}2{}}}", "\\sqrt{".repeat(n), "}".repeat(n)),
        format!("\\boxed{{3{}}}", "!".repeat(n)),
        format!(
            "\\boxed{{{}1{}}}",
            "\\left(".repeat(n),
            "\\right)".repeat(n)
        ),
        format!("{}1{}", "\\boxed{".repeat(n), "}".repeat(n)),
    ];
    for s in &shapes {
        let v = serl_core::eval::vote(&[s.as_str(), "1"], serl_core::eval::VoteMode::Equiv);
        assert_eq!(v.rewards.len(), 2);
        let _ = serl_core::eval::equivalent(s, s);
    }
    // An even run of minus signs is the number itself.
    assert!(serl_core::eval::equivalent(
        &format!("\\boxed{{{}1}}", "-".repeat(n)),
        "1"
    ));
}
