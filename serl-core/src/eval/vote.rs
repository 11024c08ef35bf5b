//! Majority vote over a group of sampled responses: SeRL's self-reward.

use super::equiv::{Parsed, agreement_matrix, parse_candidates};
use super::extract::{extract_answer, strip_string};

/// How answers are grouped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VoteMode {
    /// Exact match of the normalised answers (SeRL's `math_maj_reward`).
    #[default]
    String,
    /// Mathematical equivalence, as SeRL's `math_verify_maj_reward`.
    Equiv,
}

impl std::str::FromStr for VoteMode {
    type Err = super::Error;
    fn from_str(s: &str) -> Result<Self, super::Error> {
        match s {
            "string" => Ok(VoteMode::String),
            "equiv" => Ok(VoteMode::Equiv),
            other => Err(super::Error::UnknownVoteMode(other.to_string())),
        }
    }
}

/// The outcome of a vote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VoteResult {
    /// 1.0 for responses in the majority cluster, 0.0 otherwise.
    pub rewards: Vec<f64>,
    /// Each response's extracted, normalised answer.
    pub answers: Vec<String>,
    /// The majority answer (the representative's answer in `equiv` mode).
    pub majority: String,
    /// Mean reward: the share of the group that agrees with the majority.
    pub agreement: f64,
}

/// Votes over `responses`.
///
/// `String` mode: answers are extracted and normalised twice (as the
/// reference does); the most common wins, ties go to the first seen, and an
/// empty answer is an ordinary vote. `Equiv` mode: math_verify parses every
/// response; for each pair both directions of `verify` are tried; the
/// representative is the first response with the most matches and the
/// rewards are its row of the (not necessarily transitive) relation; when
/// nothing at all can be extracted, only the first response is rewarded.
pub fn vote<S: AsRef<str>>(responses: &[S], mode: VoteMode) -> VoteResult {
    let answers: Vec<String> = responses
        .iter()
        .map(|r| strip_string(&extract_answer(r.as_ref())))
        .collect();
    let n = responses.len();
    let (rewards, majority) = match mode {
        VoteMode::String => {
            let mut best: Option<(usize, usize)> = None; // (count, first index)
            for (i, a) in answers.iter().enumerate() {
                if answers[..i].contains(a) {
                    continue;
                }
                let count = answers[i..].iter().filter(|b| *b == a).count();
                if best.is_none_or(|(c, _)| count > c) {
                    best = Some((count, i));
                }
            }
            match best {
                Some((_, i)) => {
                    let maj = answers[i].clone();
                    (
                        answers
                            .iter()
                            .map(|a| if *a == maj { 1.0 } else { 0.0 })
                            .collect(),
                        maj,
                    )
                }
                None => (Vec::new(), String::new()),
            }
        }
        VoteMode::Equiv => {
            // Identical responses are parsed once (string equality compares
            // lengths first, so this is cheap).
            let mut parsed: Vec<Vec<Parsed>> = Vec::with_capacity(n);
            for (i, r) in responses.iter().enumerate() {
                let r = r.as_ref();
                let same = (0..i).find(|&j| responses[j].as_ref() == r);
                parsed.push(match same {
                    Some(j) => parsed[j].clone(),
                    None => parse_candidates(r),
                });
            }
            let mut eq = agreement_matrix(&parsed);
            // A response always agrees with itself (the reference's pairs
            // never include i == i).
            for (i, row) in eq.iter_mut().enumerate() {
                row[i] = true;
            }
            // A response with nothing extracted matches nothing, itself included.
            for (i, p) in parsed.iter().enumerate() {
                if p.is_empty() {
                    eq[i][i] = false;
                }
            }
            let counts: Vec<usize> = eq
                .iter()
                .map(|row| row.iter().filter(|x| **x).count())
                .collect();
            let rep = (0..n).fold(0, |best, i| if counts[i] > counts[best] { i } else { best });
            if n == 0 {
                (Vec::new(), String::new())
            } else if counts[rep] == 0 {
                let mut r = vec![0.0; n];
                r[0] = 1.0;
                (r, answers[0].clone())
            } else {
                (
                    eq[rep].iter().map(|x| if *x { 1.0 } else { 0.0 }).collect(),
                    answers[rep].clone(),
                )
            }
        }
    };
    let agreement = if n == 0 {
        0.0
    } else {
        rewards.iter().sum::<f64>() / n as f64
    };
    VoteResult {
        rewards,
        answers,
        majority,
        agreement,
    }
}
