//! The benchmark workload, built from the reference vectors in
//! `tests/fixtures` so that the Rust benches and the Python comparison
//! script (`bench/compare.py`) time the same inputs.
#![allow(dead_code)]

use serde_json::Value;

fn fixture(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture JSON"))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).expect("array of strings")
}

/// The inputs of every benchmark.
pub struct Workload {
    /// Every group of 16 responses in `vote.jsonl` (333 groups).
    pub groups: Vec<Vec<String>>,
    /// 500 MATH seed problems (filter case 2 of `filter.jsonl`).
    pub seeds: Vec<String>,
    /// 2,000 candidate instructions: the filter candidates, then the
    /// distinct predictions of `rouge.jsonl`.
    pub candidates: Vec<String>,
    /// Generated numbered lists of `postprocess.jsonl`.
    pub lists: Vec<String>,
    /// ROUGE-L pairs (target, prediction) of `rouge.jsonl`.
    pub pairs: Vec<(String, String)>,
}

impl Workload {
    /// Loads the workload.
    pub fn load() -> Self {
        let groups = fixture("vote.jsonl")
            .iter()
            .map(|c| strings(&c["responses"]))
            .collect();
        let filter = fixture("filter.jsonl");
        let seeds = filter
            .iter()
            .find(|c| c["seed"].as_array().map_or(0, Vec::len) == 500)
            .map(|c| strings(&c["seed"]))
            .expect("a 500-seed case");
        let rouge = fixture("rouge.jsonl");
        let mut candidates: Vec<String> = filter
            .iter()
            .flat_map(|c| strings(&c["candidates"]))
            .collect();
        for r in &rouge {
            if candidates.len() >= 2000 {
                break;
            }
            let b = r["b"].as_str().unwrap_or("").to_string();
            if !candidates.contains(&b) {
                candidates.push(b);
            }
        }
        let pairs = rouge
            .iter()
            .map(|r| {
                (
                    r["a"].as_str().unwrap_or("").to_string(),
                    r["b"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let lists = fixture("postprocess.jsonl")
            .iter()
            .map(|c| c["response"].as_str().unwrap_or("").to_string())
            .collect();
        Workload {
            groups,
            seeds,
            candidates,
            lists,
            pairs,
        }
    }

    /// The workload as JSON, for the Python side of `bench/compare.py`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "groups": self.groups,
            "seeds": self.seeds,
            "candidates": self.candidates,
            "lists": self.lists,
            "pairs": self.pairs,
        })
    }
}
