//! The diversity filter of self-instruction: a new instruction is kept only
//! if its ROUGE-L F-measure against every seed and every instruction kept
//! before it is at most the threshold (0.7 in SeRL).
//!
//! Each instruction is tokenised and interned once; LCS lengths come from the
//! bit-parallel [`Pattern`]; a length bound (LCS ≤ min(|a|, |b|)) skips pool
//! entries that cannot change the answer; large pools are scored in parallel
//! with the `parallel` feature.

use super::rouge::{Interner, Pattern, RougeScore, tokenize};

/// SeRL's default ROUGE-L threshold.
pub const DEFAULT_THRESHOLD: f64 = 0.7;

/// Pool size from which scoring is split across threads.
#[cfg(feature = "parallel")]
const PARALLEL_MIN_POOL: usize = 4096;

/// The verdict on one offered instruction.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FilterVerdict {
    /// Whether the instruction joined the pool.
    pub kept: bool,
    /// The highest ROUGE-L F against the pool (0 for an empty pool). With
    /// [`DiversityFilter::offer_fast`] and a rejected instruction, the first
    /// score found above the threshold instead.
    pub max_rouge_l: f64,
    /// Index of that pool entry (seeds first, then kept instructions in the
    /// order they were kept); `None` for an empty pool.
    pub argmax: Option<usize>,
}

/// The pool of seeds plus kept instructions, and the filter over it.
#[derive(Debug, Clone)]
pub struct DiversityFilter {
    threshold: f64,
    interner: Interner,
    /// Token ids of each pool entry.
    pool: Vec<Vec<u32>>,
    /// The pool's texts, in pool order.
    texts: Vec<String>,
    seeds: usize,
}

impl DiversityFilter {
    /// A filter whose pool starts with `seeds`; instructions scoring above
    /// `threshold` against any pool entry are rejected.
    pub fn new<S: AsRef<str>>(seeds: &[S], threshold: f64) -> Self {
        let mut f = Self {
            threshold,
            interner: Interner::default(),
            pool: Vec::with_capacity(seeds.len()),
            texts: Vec::with_capacity(seeds.len()),
            seeds: seeds.len(),
        };
        for s in seeds {
            f.push(s.as_ref());
        }
        f
    }

    fn push(&mut self, text: &str) {
        let ids = self.interner.intern_all(&tokenize(text));
        self.pool.push(ids);
        self.texts.push(text.to_string());
    }

    /// The threshold.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Number of seeds at the start of the pool.
    pub fn seed_count(&self) -> usize {
        self.seeds
    }

    /// Number of entries in the pool (seeds plus kept instructions).
    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    /// The pool entry at `index` (seeds first), if any.
    pub fn pool_text(&self, index: usize) -> Option<&str> {
        self.texts.get(index).map(String::as_str)
    }

    /// The instructions kept so far (the pool after the seeds).
    pub fn kept(&self) -> &[String] {
        &self.texts[self.seeds..]
    }

    /// Scores `instruction` against the whole pool, exactly: the maximum and
    /// its first index, as the reference reports them. Kept instructions join
    /// the pool.
    pub fn offer(&mut self, instruction: &str) -> FilterVerdict {
        self.offer_with(instruction, false)
    }

    /// Like [`offer`](Self::offer), but stops at the first pool entry above
    /// the threshold: the same keep decision for less work, with the score
    /// that decided it.
    pub fn offer_fast(&mut self, instruction: &str) -> FilterVerdict {
        self.offer_with(instruction, true)
    }

    /// Scores without changing the pool.
    pub fn score(&self, instruction: &str, stop_early: bool) -> FilterVerdict {
        let mut interner = self.interner.clone();
        let ids = interner.intern_all(&tokenize(instruction));
        self.score_ids(&ids, interner.len(), stop_early)
    }

    fn offer_with(&mut self, instruction: &str, stop_early: bool) -> FilterVerdict {
        let ids = self.interner.intern_all(&tokenize(instruction));
        let verdict = self.score_ids(&ids, self.interner.len(), stop_early);
        if verdict.kept {
            self.pool.push(ids);
            self.texts.push(instruction.to_string());
        }
        verdict
    }

    fn score_ids(&self, ids: &[u32], vocab: usize, stop_early: bool) -> FilterVerdict {
        // The candidate is the target of rouge_score (R = LCS/|candidate|),
        // each pool entry the prediction (P = LCS/|entry|).
        let pattern = Pattern::new(ids, vocab);
        #[cfg(feature = "parallel")]
        let best = if self.pool.len() >= PARALLEL_MIN_POOL {
            self.best_parallel(&pattern, stop_early)
        } else {
            best_in(&pattern, &self.pool, 0, self.threshold, stop_early)
        };
        #[cfg(not(feature = "parallel"))]
        let best = best_in(&pattern, &self.pool, 0, self.threshold, stop_early);
        let (max_rouge_l, argmax) = match best {
            Some((f, i)) => (f, Some(i)),
            None => (0.0, None),
        };
        FilterVerdict {
            kept: max_rouge_l <= self.threshold,
            max_rouge_l,
            argmax,
        }
    }

    #[cfg(feature = "parallel")]
    fn best_parallel(&self, pattern: &Pattern, stop_early: bool) -> Option<(f64, usize)> {
        use rayon::prelude::*;
        let chunk = self
            .pool
            .len()
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(256);
        let threshold = self.threshold;
        let parts: Vec<Option<(f64, usize)>> = self
            .pool
            .par_chunks(chunk)
            .enumerate()
            .map(|(c, entries)| best_in(pattern, entries, c * chunk, threshold, stop_early))
            .collect();
        let mut best: Option<(f64, usize)> = None;
        for (f, i) in parts.into_iter().flatten() {
            if stop_early && f > threshold {
                return Some((f, i));
            }
            if best.is_none_or(|(bf, _)| f > bf) {
                best = Some((f, i));
            }
        }
        best
    }
}

/// The highest F (first index on ties) of `pattern` against `entries`,
/// whose first element has pool index `offset`.
fn best_in(
    pattern: &Pattern,
    entries: &[Vec<u32>],
    offset: usize,
    threshold: f64,
    stop_early: bool,
) -> Option<(f64, usize)> {
    let la = pattern.len();
    let mut best: Option<(f64, usize)> = None;
    for (k, entry) in entries.iter().enumerate() {
        let lb = entry.len();
        if let Some((bf, _)) = best {
            // Upper bound: LCS ≤ min(la, lb). An entry that cannot beat the
            // current best (ties keep the earlier index) is skipped.
            if RougeScore::from_lcs(la.min(lb), la, lb).f <= bf {
                continue;
            }
        }
        let f = RougeScore::from_lcs(pattern.lcs(entry), la, lb).f;
        if best.is_none_or(|(bf, _)| f > bf) {
            best = Some((f, offset + k));
            if stop_early && f > threshold {
                break;
            }
        }
    }
    best
}
