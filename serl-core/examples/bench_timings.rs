//! Times the evaluator on the benchmark workload and prints JSON figures;
//! `bench/compare.py` runs it beside the Python reference on the same inputs.
//!
//! `cargo run --release --example bench_timings -- [--dump FILE]`: with
//! `--dump`, the workload is also written to FILE as JSON.

use std::time::{Duration, Instant};

use serl_core::eval::{self, CaseMode, DiversityFilter, VoteMode};

#[path = "../benches/workload.rs"]
mod workload;

/// Median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up (compiles lazily built regexes)
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

fn main() {
    let w = workload::Workload::load();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--dump") {
        let Some(path) = args.get(i + 1) else {
            eprintln!("--dump needs a file");
            std::process::exit(2);
        };
        if let Err(e) = std::fs::write(path, w.to_json().to_string()) {
            eprintln!("cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
    let groups = w.groups.len() as f64;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let vote_string = median(5, || {
        for g in &w.groups {
            std::hint::black_box(eval::vote(g, VoteMode::String));
        }
    });
    let vote_equiv = median(3, || {
        for g in &w.groups {
            std::hint::black_box(eval::vote(g, VoteMode::Equiv));
        }
    });
    // Every 8th group: the sample bench/compare.py also gives math_verify.
    let sample: Vec<&Vec<String>> = w.groups.iter().step_by(8).collect();
    // More runs than the others: a few milliseconds each, and this is the
    // figure compared with math_verify.
    let vote_equiv_sample = median(9, || {
        for g in &sample {
            std::hint::black_box(eval::vote(g, VoteMode::Equiv));
        }
    });
    let pairs = w.pairs.len() as f64;
    let rouge = median(5, || {
        for (a, b) in &w.pairs {
            std::hint::black_box(eval::rouge_l(a, b));
        }
    });
    let lists = w.lists.len() as f64;
    let parse = median(5, || {
        for l in &w.lists {
            std::hint::black_box(eval::parse_instructions(l, CaseMode::Capitalize));
        }
    });
    let mut comparisons = 0usize;
    let mut kept = 0usize;
    let filter_exact = median(3, || {
        let mut f = DiversityFilter::new(&w.seeds, 0.7);
        comparisons = 0;
        kept = 0;
        for c in &w.candidates {
            comparisons += f.pool_len();
            kept += usize::from(f.offer(c).kept);
        }
    });
    let filter_fast = median(3, || {
        let mut f = DiversityFilter::new(&w.seeds, 0.7);
        for c in &w.candidates {
            std::hint::black_box(f.offer_fast(c));
        }
    });
    let out = serde_json::json!({
        "vote_string_us_per_group": us(vote_string) / groups,
        "vote_equiv_us_per_group": us(vote_equiv) / groups,
        "vote_equiv_sample_us_per_group": us(vote_equiv_sample) / sample.len() as f64,
        "vote_equiv_sample_groups": sample.len(),
        "rouge_us_per_pair": us(rouge) / pairs,
        "parse_instructions_us_per_response": us(parse) / lists,
        "filter_exact_s": filter_exact.as_secs_f64(),
        "filter_fast_s": filter_fast.as_secs_f64(),
        "filter_candidates": w.candidates.len(),
        "filter_seeds": w.seeds.len(),
        "filter_comparisons": comparisons,
        "filter_kept": kept,
    });
    println!("{out}");
}
