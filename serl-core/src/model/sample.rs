//! Choosing the next token from logits: presence/frequency penalties,
//! temperature, top-k and top-p as vLLM applies them, with a seeded RNG.

use crate::eval::Rng;

/// Uniform in [0, 1).
pub fn uniform(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// log p(token) under the unprocessed logits (log-softmax, f64 accumulation).
pub fn logprob_of(logits: &[f32], token: usize) -> f32 {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s: f64 = logits.iter().map(|&x| ((x - m) as f64).exp()).sum();
    (logits[token] as f64 - m as f64 - s.ln()) as f32
}

/// Index of the largest value (first on ties, like torch.argmax).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// Sampling knobs applied to one row's logits.
pub struct Knobs {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
}

/// Picks a token. `counts` holds (token, times generated so far) for this
/// sequence's output tokens (vLLM penalises output tokens only). `logits`
/// is modified.
pub fn choose(logits: &mut [f32], counts: &[(u32, u32)], k: &Knobs, rng: &mut Rng) -> usize {
    for &(t, c) in counts {
        if let Some(x) = logits.get_mut(t as usize) {
            *x -= k.presence_penalty + k.frequency_penalty * c as f32;
        }
    }
    if k.temperature <= 1e-5 {
        return argmax(logits);
    }
    let inv_t = 1.0 / k.temperature;
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Unnormalised probabilities exp((x - max)/T).
    let p: Vec<f32> = logits.iter().map(|&x| ((x - m) * inv_t).exp()).collect();
    let full = k.top_k == 0 || k.top_k >= p.len();
    if full && k.top_p >= 1.0 {
        let total: f64 = p.iter().map(|&x| x as f64).sum();
        let mut u = uniform(rng) * total;
        for (i, &x) in p.iter().enumerate() {
            u -= x as f64;
            if u < 0.0 {
                return i;
            }
        }
        return argmax(logits);
    }
    // Candidates in descending probability: the top-k set, and for top-p the
    // shortest prefix reaching p (found by widening a partial selection).
    let total: f64 = p.iter().map(|&x| x as f64).sum();
    let limit = if full { p.len() } else { k.top_k };
    let mut idx: Vec<usize> = (0..p.len()).collect();
    let mut width = limit.min(64);
    let chosen: Vec<usize> = loop {
        if width < idx.len() {
            idx.select_nth_unstable_by(width, |&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        }
        let mut head: Vec<usize> = idx[..width.min(idx.len())].to_vec();
        head.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        // top-k renormalises before top-p (vLLM applies top-k first).
        let mass: f64 = if width >= limit {
            head.iter().map(|&i| p[i] as f64).sum()
        } else {
            total
        };
        let target = k.top_p.min(1.0) as f64 * mass;
        let mut acc = 0.0;
        let mut cut = None;
        for (j, &i) in head.iter().enumerate() {
            acc += p[i] as f64;
            if acc >= target {
                cut = Some(j + 1);
                break;
            }
        }
        match cut {
            Some(c) => break head[..c].to_vec(),
            None if width >= limit => break head,
            None => width = (width * 4).min(limit),
        }
    };
    let sum: f64 = chosen.iter().map(|&i| p[i] as f64).sum();
    let mut u = uniform(rng) * sum;
    for &i in &chosen {
        u -= p[i] as f64;
        if u < 0.0 {
            return i;
        }
    }
    chosen[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs(t: f32, p: f32, k: usize) -> Knobs {
        Knobs {
            temperature: t,
            top_p: p,
            top_k: k,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        }
    }

    #[test]
    fn greedy_takes_first_max() {
        let mut rng = Rng::new(1);
        let mut l = vec![1.0, 3.0, 3.0, 2.0];
        assert_eq!(choose(&mut l, &[], &knobs(0.0, 1.0, 0), &mut rng), 1);
    }

    #[test]
    fn presence_penalty_moves_greedy_choice() {
        let mut rng = Rng::new(1);
        let mut l = vec![1.0, 3.0, 2.5];
        let k = Knobs {
            presence_penalty: 1.0,
            ..knobs(0.0, 1.0, 0)
        };
        assert_eq!(choose(&mut l, &[(1, 1)], &k, &mut rng), 2);
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_nucleus() {
        let mut rng = Rng::new(7);
        for _ in 0..200 {
            let mut l = vec![0.0, 5.0, 4.9, -3.0];
            assert_eq!(choose(&mut l, &[], &knobs(1.0, 1.0, 1), &mut rng), 1);
            // p(1) ≈ 0.52, p(2) ≈ 0.47: top-p 0.9 keeps {1, 2} only.
            let mut l = vec![0.0, 5.0, 4.9, -3.0];
            let t = choose(&mut l, &[], &knobs(1.0, 0.9, 0), &mut rng);
            assert!(t == 1 || t == 2);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let mut rng = Rng::new(3);
        let mut hits = [0usize; 3];
        let n = 20_000;
        for _ in 0..n {
            let mut l = vec![0.0, (2.0f32).ln(), (7.0f32).ln()];
            hits[choose(&mut l, &[], &knobs(1.0, 1.0, 0), &mut rng)] += 1;
        }
        let expect = [0.1, 0.2, 0.7];
        for i in 0..3 {
            let f = hits[i] as f64 / n as f64;
            assert!((f - expect[i]).abs() < 0.015, "{i}: {f}");
        }
    }

    #[test]
    fn wide_top_p_widens_the_selection() {
        // 1000 equal logits: the nucleus at p = 0.5 needs 500 tokens (> 64).
        let mut rng = Rng::new(5);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3000 {
            let mut l = vec![0.0f32; 1000];
            seen.insert(choose(&mut l, &[], &knobs(1.0, 0.5, 0), &mut rng));
        }
        assert!(seen.len() > 300 && seen.iter().all(|&i| i < 1000));
    }
}
