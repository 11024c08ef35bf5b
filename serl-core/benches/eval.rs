//! Criterion benchmarks of the evaluator on the reference workload.
use criterion::{Criterion, criterion_group, criterion_main};
use serl_core::eval::{self, CaseMode, DiversityFilter, VoteMode};
use std::hint::black_box;

mod workload;

fn benches(c: &mut Criterion) {
    let w = workload::Workload::load();
    let mut g = c.benchmark_group("eval");
    g.sample_size(20);
    g.bench_function("vote_string_per_group_of_16", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % w.groups.len();
            black_box(eval::vote(&w.groups[i], VoteMode::String))
        })
    });
    g.bench_function("vote_equiv_per_group_of_16", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % w.groups.len();
            black_box(eval::vote(&w.groups[i], VoteMode::Equiv))
        })
    });
    g.bench_function("rouge_l_pair", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % w.pairs.len();
            black_box(eval::rouge_l(&w.pairs[i].0, &w.pairs[i].1))
        })
    });
    g.bench_function("parse_instructions", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % w.lists.len();
            black_box(eval::parse_instructions(&w.lists[i], CaseMode::Capitalize))
        })
    });
    g.bench_function("filter_2000_candidates_500_seeds_exact", |b| {
        b.iter(|| {
            let mut f = DiversityFilter::new(&w.seeds, 0.7);
            let kept = w.candidates.iter().filter(|c| f.offer(c).kept).count();
            black_box(kept)
        })
    });
    g.bench_function("filter_2000_candidates_500_seeds_fast", |b| {
        b.iter(|| {
            let mut f = DiversityFilter::new(&w.seeds, 0.7);
            let kept = w.candidates.iter().filter(|c| f.offer_fast(c).kept).count();
            black_box(kept)
        })
    });
    g.finish();
}

criterion_group!(eval_benches, benches);
criterion_main!(eval_benches);
