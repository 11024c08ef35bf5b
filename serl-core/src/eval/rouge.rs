//! ROUGE-L with `rouge_score` semantics (no stemming) and a bit-parallel LCS.
//!
//! Tokens: Python `lower()`, every run of characters outside `[a-z0-9]`
//! becomes a space, split. LCS is computed with Hyyrö's bit-vector
//! algorithm over interned token ids, 64 tokens of the first sequence per
//! machine word.

use std::collections::HashMap;

/// ROUGE-L precision, recall and F-measure of a prediction against a target.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct RougeScore {
    /// LCS / number of prediction tokens.
    pub p: f64,
    /// LCS / number of target tokens.
    pub r: f64,
    /// 2·P·R / (P + R), 0 when both are 0.
    pub f: f64,
}

impl RougeScore {
    /// The score for an LCS length and the two token counts, computed in the
    /// reference's order of operations so that borderline values such as
    /// 0.7000000000000001 come out bit for bit the same.
    pub fn from_lcs(lcs: usize, target_len: usize, prediction_len: usize) -> Self {
        if target_len == 0 || prediction_len == 0 {
            return Self::default();
        }
        let p = lcs as f64 / prediction_len as f64;
        let r = lcs as f64 / target_len as f64;
        let f = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        Self { p, r, f }
    }
}

/// `rouge_score`'s default tokenizer without stemming.
pub fn tokenize(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut tokens = Vec::new();
    let mut cur = String::new();
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            cur.push(c);
        } else if !cur.is_empty() {
            tokens.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
}

/// ROUGE-L of `prediction` against `target` (`rouge_scorer.score(target, prediction)`).
pub fn rouge_l(target: &str, prediction: &str) -> RougeScore {
    let mut interner = Interner::default();
    let a = interner.intern_all(&tokenize(target));
    let b = interner.intern_all(&tokenize(prediction));
    let lcs = Pattern::new(&a, interner.len()).lcs(&b);
    RougeScore::from_lcs(lcs, a.len(), b.len())
}

/// Maps token strings to dense ids.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    /// The id of `token`, assigning the next free one for a new token.
    pub fn intern(&mut self, token: &str) -> u32 {
        if let Some(&id) = self.ids.get(token) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(token.to_string(), id);
        id
    }

    /// Ids of a token sequence.
    pub fn intern_all(&mut self, tokens: &[String]) -> Vec<u32> {
        tokens.iter().map(|t| self.intern(t)).collect()
    }

    /// Number of distinct tokens seen.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no token was interned yet.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A token sequence prepared for bit-parallel LCS against many others: for
/// each distinct token, the bit mask of its positions.
#[derive(Debug, Clone)]
pub struct Pattern {
    len: usize,
    words: usize,
    /// (token id, masks of `words` u64) sorted by id.
    masks: Vec<(u32, Vec<u64>)>,
    /// Dense lookup id → index into `masks` (u32::MAX = absent), covering
    /// the ids known when the pattern was built.
    index: Vec<u32>,
}

impl Pattern {
    /// Prepares `tokens`; `vocab` is the number of ids known so far.
    pub fn new(tokens: &[u32], vocab: usize) -> Self {
        let len = tokens.len();
        let words = len.div_ceil(64).max(1);
        let mut index = vec![u32::MAX; vocab.max(1)];
        let mut masks: Vec<(u32, Vec<u64>)> = Vec::new();
        for (i, &t) in tokens.iter().enumerate() {
            let t_us = t as usize;
            if t_us >= index.len() {
                index.resize(t_us + 1, u32::MAX);
            }
            let slot = if index[t_us] == u32::MAX {
                index[t_us] = masks.len() as u32;
                masks.push((t, vec![0; words]));
                masks.len() - 1
            } else {
                index[t_us] as usize
            };
            masks[slot].1[i / 64] |= 1u64 << (i % 64);
        }
        Self {
            len,
            words,
            masks,
            index,
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the pattern has no token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn mask(&self, t: u32) -> Option<&[u64]> {
        match self.index.get(t as usize) {
            Some(&i) if i != u32::MAX => Some(&self.masks[i as usize].1),
            _ => None,
        }
    }

    /// Length of the longest common subsequence with `other`.
    pub fn lcs(&self, other: &[u32]) -> usize {
        if self.len == 0 || other.is_empty() {
            return 0;
        }
        if self.words == 1 {
            // V holds a 1 for every pattern position not yet in the LCS.
            let mut v: u64 = !0;
            for &t in other {
                if let Some(m) = self.mask(t) {
                    let u = v & m[0];
                    v = v.wrapping_add(u) | (v & !m[0]);
                }
            }
            let used = if self.len == 64 {
                v
            } else {
                v | (!0u64 << self.len)
            };
            return (!used).count_ones() as usize;
        }
        let mut v = vec![!0u64; self.words];
        for &t in other {
            let Some(m) = self.mask(t) else { continue };
            let mut carry = 0u64;
            for (vw, &mw) in v.iter_mut().zip(m) {
                let u = *vw & mw;
                let (s1, c1) = vw.overflowing_add(u);
                let (s2, c2) = s1.overflowing_add(carry);
                carry = u64::from(c1 || c2);
                *vw = s2 | (*vw & !mw);
            }
        }
        let mut zeros = 0;
        for (w, vw) in v.iter().enumerate() {
            let bits = (self.len - w * 64).min(64);
            let valid = if bits == 64 { !0 } else { (1u64 << bits) - 1 };
            zeros += (!vw & valid).count_ones() as usize;
        }
        zeros
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dp_lcs(a: &[u32], b: &[u32]) -> usize {
        let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                t[i][j] = if a[i - 1] == b[j - 1] {
                    t[i - 1][j - 1] + 1
                } else {
                    t[i - 1][j].max(t[i][j - 1])
                };
            }
        }
        t[a.len()][b.len()]
    }

    #[test]
    fn bit_parallel_lcs_matches_dynamic_programming() {
        // Deterministic pseudo-random sequences over a small alphabet, with
        // lengths on both sides of the 64-token word boundary.
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300 {
            let la = (next() % 200) as usize;
            let lb = (next() % 200) as usize;
            let k = 1 + next() % 6;
            let a: Vec<u32> = (0..la).map(|_| (next() % k) as u32).collect();
            let b: Vec<u32> = (0..lb).map(|_| (next() % k) as u32).collect();
            let p = Pattern::new(&a, 8);
            assert_eq!(p.lcs(&b), dp_lcs(&a, &b), "a={a:?} b={b:?}");
        }
    }

    #[test]
    fn tokenizer_is_rouge_scores() {
        assert_eq!(
            tokenize("Find $x^2$, it's 3.5!"),
            ["find", "x", "2", "it", "s", "3", "5"]
        );
        assert!(tokenize("ÉÈ —").is_empty());
    }
}
