//! Equivalence of two answers as math_verify decides it for SeRL's majority
//! reward, without Python or sympy: extraction of candidates from the text,
//! a LaTeX parser, and a comparison procedure on the parsed values.

mod envscan;
mod expr;
mod extract;
mod latex;
mod num;
mod realset;

pub use expr::Expr;
pub use extract::{Parsed, parse_candidates};

use expr::expr_eq;

/// math_verify's `verify(gold, target)`: any value pair equal, or any pair
/// of fallback strings equal and non-empty.
pub fn verify(gold: &[Parsed], target: &[Parsed]) -> bool {
    gold.iter().any(|g| {
        target.iter().any(|t| match (g, t) {
            (Parsed::Value(a), Parsed::Value(b)) => expr_eq(a, b),
            (Parsed::Text(a), Parsed::Text(b)) => {
                fallback_text(a).is_some_and(|a| Some(a) == fallback_text(b))
            }
            _ => false,
        })
    })
}

/// A fallback string as `verify` compares it: trimmed, and only when not
/// empty.
fn fallback_text(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|t| !t.is_empty())
}

/// `verify(a, b) || verify(b, a)` for every pair of parse results (the
/// diagonal included), as the majority reward needs it. A group repeats few
/// values, so each distinct value pair is compared once; fallback strings
/// are compared directly.
pub fn agreement_matrix(parsed: &[Vec<Parsed>]) -> Vec<Vec<bool>> {
    let n = parsed.len();
    let mut values: Vec<&Expr> = Vec::new();
    let classes: Vec<Vec<usize>> = parsed
        .iter()
        .map(|p| {
            p.iter()
                .filter_map(|x| match x {
                    Parsed::Value(e) => Some(e),
                    Parsed::Text(_) => None,
                })
                .map(|e| match values.iter().position(|v| *v == e) {
                    Some(c) => c,
                    None => {
                        values.push(e);
                        values.len() - 1
                    }
                })
                .collect()
        })
        .collect();
    let k = values.len();
    let mut same = vec![false; k * k];
    for a in 0..k {
        for b in a..k {
            let v = expr_eq(values[a], values[b]) || expr_eq(values[b], values[a]);
            same[a * k + b] = v;
            same[b * k + a] = v;
        }
    }
    let texts: Vec<Vec<&str>> = parsed
        .iter()
        .map(|p| {
            p.iter()
                .filter_map(|x| match x {
                    Parsed::Text(t) => fallback_text(t),
                    Parsed::Value(_) => None,
                })
                .collect()
        })
        .collect();
    let mut m = vec![vec![false; n]; n];
    for i in 0..n {
        for j in i..n {
            let v = classes[i]
                .iter()
                .any(|&a| classes[j].iter().any(|&b| same[a * k + b]))
                || texts[i].iter().any(|t| texts[j].contains(t));
            m[i][j] = v;
            m[j][i] = v;
        }
    }
    m
}

/// Whether two answers are equivalent as SeRL's math_verify reward decides
/// it: `ref` is parsed as the gold answer and `pred` as the prediction, and
/// either direction passing counts.
pub fn equivalent(pred: &str, reference: &str) -> bool {
    let p = parse_candidates(pred);
    let r = parse_candidates(reference);
    verify(&r, &p) || verify(&p, &r)
}
