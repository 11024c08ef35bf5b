//! Rollouts on the engine: a key/value cache per layer, the cached forward
//! that appends tokens and returns next-token logits, and the cache
//! operations batched sampling needs (merge prefills, drop finished rows).

use super::kernels::AttnDims;
use super::llama::{MlpOut, QkvOut, Widths};
use super::{Backend, EngineError, Llama, Span};

/// Per-step working memory of the cached forward.
struct Scratch<B: Backend> {
    rows: usize,
    x: B::Buf,
    norm: B::Buf,
    rstd: B::Buf,
    q: B::Buf,
    k: B::Buf,
    v: B::Buf,
    ctx: B::Buf,
    g: B::Buf,
    u: B::Buf,
    hsw: B::Buf,
    last: B::Buf,
    /// The head's output, kept between steps of the same shape.
    logits: Option<(usize, B::Buf)>,
}

/// The key/value cache of a batch of sequences being sampled: rows are
/// left-padded to a common length, pad slots masked. Slot `j` of row `s`
/// holds position `j - pad[s]`.
pub struct KvCache<B: Backend> {
    k: Vec<B::Buf>,
    v: Vec<B::Buf>,
    b: usize,
    cap: usize,
    len: usize,
    pad: Vec<u32>,
    scratch: Option<Scratch<B>>,
    /// Logits the last step left in the scratch buffer (elements).
    ready: usize,
    /// Greedy picks of the last step ([`Llama::step_greedy_enqueue`]):
    /// the buffer (its capacity in rows) and the elements written.
    picks: Option<(usize, B::Buf)>,
    picked: usize,
}

/// Most prompt tokens (padding included) one batched prefill runs at once:
/// bounds its working memory however many prompts a request holds.
const PREFILL_TOKENS: usize = 4096;

impl<B: Backend> KvCache<B> {
    /// Number of sequences.
    pub fn batch(&self) -> usize {
        self.b
    }

    /// Filled positions (left padding included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before anything is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the last greedy step's picks lie on the device (`[rows, 2]`:
    /// token index as `f32`, its log-probability), or `None`.
    pub fn picks(&self) -> Option<(&B::Buf, Span)> {
        match (&self.picks, self.picked) {
            (Some((_, buf)), len) if len > 0 => Some((buf, Span { off: 0, len })),
            _ => None,
        }
    }

    /// Where the last step's logits lie on the device (`[rows, V]` from
    /// the buffer's start), or `None` if there was no step since the cache
    /// was made or changed.
    pub fn logits(&self) -> Option<(&B::Buf, Span)> {
        match (&self.scratch, self.ready) {
            (
                Some(Scratch {
                    logits: Some((_, buf)),
                    ..
                }),
                len,
            ) if len > 0 => Some((buf, Span { off: 0, len })),
            _ => None,
        }
    }
}

impl<B: Backend> Llama<B> {
    fn kv_width(&self) -> usize {
        self.cfg.num_key_value_heads * self.cfg.head_dim
    }

    /// An empty cache for `b` sequences of up to `cap` positions.
    pub fn new_cache(&self, b: usize, cap: usize) -> Result<KvCache<B>, EngineError> {
        let w = self.kv_width();
        let mut k = Vec::with_capacity(self.cfg.num_hidden_layers);
        let mut v = Vec::with_capacity(self.cfg.num_hidden_layers);
        for _ in 0..self.cfg.num_hidden_layers {
            k.push(self.be.zeros(b * cap * w)?);
            v.push(self.be.zeros(b * cap * w)?);
        }
        Ok(KvCache {
            k,
            v,
            b,
            cap,
            len: 0,
            pad: vec![0; b],
            scratch: None,
            ready: 0,
            picks: None,
            picked: 0,
        })
    }

    fn scratch(&self, rows: usize) -> Result<Scratch<B>, EngineError> {
        let c = &self.cfg;
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let nq = c.num_attention_heads * c.head_dim;
        let z = |w: usize| self.be.zeros(rows * w);
        Ok(Scratch {
            rows,
            x: z(h)?,
            norm: z(h)?,
            rstd: z(1)?,
            q: z(nq)?,
            k: z(self.kv_width())?,
            v: z(self.kv_width())?,
            ctx: z(nq)?,
            g: z(i)?,
            u: z(i)?,
            hsw: z(i)?,
            last: z(h)?,
            logits: None,
        })
    }

    /// Appends `t` tokens to every sequence of the cache (`tokens` is
    /// `b × t`, row-major) and returns next-token logits (f32, read back):
    /// `[b, V]` for each sequence's last new position, or `[b, t, V]` with
    /// `all`.
    pub fn step(
        &self,
        params: &B::Buf,
        cache: &mut KvCache<B>,
        tokens: &[u32],
        t: usize,
        all: bool,
    ) -> Result<Vec<f32>, EngineError> {
        let mut out = Vec::new();
        self.step_into(params, cache, tokens, t, all, &mut out)?;
        Ok(out)
    }

    /// [`Llama::step`] writing the logits into `out` (its allocation
    /// reused: a decoding loop allocates nothing per step).
    pub fn step_into(
        &self,
        params: &B::Buf,
        cache: &mut KvCache<B>,
        tokens: &[u32],
        t: usize,
        all: bool,
        out: &mut Vec<f32>,
    ) -> Result<(), EngineError> {
        self.step_enqueue(params, cache, tokens, t, all)?;
        match cache.logits() {
            Some((buf, span)) => self.be.read_into(buf, span, out),
            None => Err(EngineError::Invalid("step left no logits".into())),
        }
    }

    /// [`Llama::step`] without the read-back: the kernels are launched and
    /// the logits stay on the device, in [`KvCache::logits`], until the
    /// next step. For drivers that read results back asynchronously
    /// ([`Backend::read_async`]).
    pub fn step_enqueue(
        &self,
        params: &B::Buf,
        cache: &mut KvCache<B>,
        tokens: &[u32],
        t: usize,
        all: bool,
    ) -> Result<(), EngineError> {
        cache.ready = 0;
        cache.picked = 0;
        let b = cache.b;
        if t == 0 || tokens.len() != b * t {
            return Err(EngineError::Invalid(format!(
                "{} tokens for {b} sequences of {t} new positions",
                tokens.len()
            )));
        }
        if cache.len + t > cache.cap {
            return Err(EngineError::Invalid(format!(
                "cache full: {} + {t} tokens exceed its capacity {}",
                cache.len, cache.cap
            )));
        }
        let cfg = &self.cfg;
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(EngineError::Invalid(format!(
                "token id {bad} is outside the vocabulary ({} tokens)",
                cfg.vocab_size
            )));
        }
        let mut pos = Vec::with_capacity(b * t);
        for s in 0..b {
            for i in 0..t {
                // Pad slots (masked from every query) take position 0.
                let p = (cache.len + i).saturating_sub(cache.pad[s] as usize);
                if p >= self.rope_len {
                    return Err(EngineError::Invalid(format!(
                        "position {p} exceeds the position table ({})",
                        self.rope_len
                    )));
                }
                pos.push(p as u32);
            }
        }
        let n = b * t;
        let mut sc = match cache.scratch.take() {
            Some(s) if s.rows >= n => s,
            _ => self.scratch(n)?,
        };
        let be = &self.be;
        let lay = &self.layout;
        let Widths {
            h,
            im,
            nh,
            nkv,
            hd,
            nq,
            nk,
            eps,
        } = self.widths();
        let dims = AttnDims { b, t, nh, nkv, hd };
        let ids = be.upload_ids(tokens)?;
        let pos = be.upload_ids(&pos)?;
        let pad = be.upload_ids(&cache.pad)?;
        be.embedding(params, lay.embed, &ids, n, &mut sc.x, h);
        for (l, ls) in lay.layers.iter().enumerate() {
            let io = QkvOut {
                norm: &mut sc.norm,
                rstd: &mut sc.rstd,
                q: &mut sc.q,
                k: &mut sc.k,
                v: &mut sc.v,
            };
            self.attn_in(params, ls, &sc.x, io, &pos, n, &mut None);
            be.kv_write(&mut cache.k[l], &sc.k, b, t, cache.cap, cache.len, nk);
            be.kv_write(&mut cache.v[l], &sc.v, b, t, cache.cap, cache.len, nk);
            be.attention_cached(
                &sc.q,
                &cache.k[l],
                &cache.v[l],
                &mut sc.ctx,
                &pad,
                cache.len,
                cache.cap,
                dims,
            );
            be.matmul(&sc.ctx, params, ls.o, None, &mut sc.x, (n, nq, h), true);
            let io = MlpOut {
                norm: &mut sc.norm,
                rstd: &mut sc.rstd,
                g: &mut sc.g,
                u: &mut sc.u,
            };
            self.mlp_in(params, ls, &sc.x, io, n, &mut None);
            be.swiglu(&sc.g, &sc.u, &mut sc.hsw, n * im);
            be.matmul(&sc.hsw, params, ls.down, None, &mut sc.x, (n, im, h), true);
        }
        cache.len += t;
        // The head runs on the positions whose logits are asked for only.
        let rows = if all { n } else { b };
        let src = if all {
            &sc.x
        } else {
            for s in 0..b {
                be.copy_rows(&sc.x, s * t + t - 1, &mut sc.last, s, 1, h);
            }
            &sc.last
        };
        be.rmsnorm(
            src,
            params,
            lay.norm,
            &mut sc.norm,
            &mut sc.rstd,
            rows,
            h,
            eps,
        );
        let v = cfg.vocab_size;
        let mut logits = match sc.logits.take() {
            Some((r, buf)) if r >= rows => (r, buf),
            _ => (rows, be.zeros(rows * v)?),
        };
        be.matmul(
            &sc.norm,
            params,
            lay.head,
            None,
            &mut logits.1,
            (rows, h, v),
            false,
        );
        sc.logits = Some(logits);
        cache.scratch = Some(sc);
        cache.ready = rows * v;
        Ok(())
    }

    /// A cache for the prompts left-padded to the longest, with room for
    /// `extra` more tokens, and the padded tokens (`[prompts, longest]`).
    fn prefill_cache(
        &self,
        prompts: &[&[u32]],
        extra: usize,
    ) -> Result<(KvCache<B>, Vec<u32>, usize), EngineError> {
        if prompts.is_empty() {
            return Err(EngineError::Invalid("prefill: no prompts".into()));
        }
        if prompts.iter().any(|p| p.is_empty()) {
            return Err(EngineError::Invalid("prefill: an empty prompt".into()));
        }
        let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut cache = self.new_cache(prompts.len(), longest + extra)?;
        let mut tokens = Vec::with_capacity(prompts.len() * longest);
        for (s, p) in prompts.iter().enumerate() {
            let pad = longest - p.len();
            cache.pad[s] = pad as u32;
            tokens.extend(std::iter::repeat_n(0, pad));
            tokens.extend_from_slice(p);
        }
        Ok((cache, tokens, longest))
    }

    /// Prefills several prompts as one batch (left-padded to the longest,
    /// pad slots masked) into a cache with room for `extra` more tokens;
    /// returns each prompt's next-token logits, `[prompts, V]`.
    pub fn prefill_batch(
        &self,
        params: &B::Buf,
        prompts: &[&[u32]],
        extra: usize,
    ) -> Result<(KvCache<B>, Vec<f32>), EngineError> {
        let (mut cache, tokens, longest) = self.prefill_cache(prompts, extra)?;
        let logits = self.step(params, &mut cache, &tokens, longest, false)?;
        Ok((cache, logits))
    }

    /// One decoding step (one token per sequence) whose logits are reduced
    /// on the device to each sequence's greedy pick and its log-probability
    /// ([`Backend::greedy_rows`]), left in [`KvCache::picks`]: greedy
    /// decoding then reads back 2 floats a sequence instead of a
    /// vocabulary's worth.
    pub fn step_greedy_enqueue(
        &self,
        params: &B::Buf,
        cache: &mut KvCache<B>,
        tokens: &[u32],
    ) -> Result<(), EngineError> {
        self.step_enqueue(params, cache, tokens, 1, false)?;
        let rows = cache.b;
        let mut out = match cache.picks.take() {
            Some((r, buf)) if r >= rows => (r, buf),
            _ => (rows, self.be.zeros(2 * rows)?),
        };
        let v = self.cfg.vocab_size;
        let done = match cache.logits() {
            Some((logits, _)) => self.be.greedy_rows(logits, rows, v, &mut out.1),
            None => Err(EngineError::Invalid("step left no logits".into())),
        };
        cache.picks = Some(out);
        done?;
        cache.picked = 2 * rows;
        Ok(())
    }

    /// [`Llama::prefill_batch`] without the read-back: the prompts' logits
    /// (`[prompts, V]`) stay in [`KvCache::logits`].
    pub fn prefill_enqueue(
        &self,
        params: &B::Buf,
        prompts: &[&[u32]],
        extra: usize,
    ) -> Result<KvCache<B>, EngineError> {
        let (mut cache, tokens, longest) = self.prefill_cache(prompts, extra)?;
        self.step_enqueue(params, &mut cache, &tokens, longest, false)?;
        Ok(cache)
    }

    /// The batches [`Llama::prefill_many`] runs: consecutive prompts
    /// totalling at most 4,096 padded tokens, as index ranges.
    pub fn prefill_batches(prompts: &[&[u32]]) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < prompts.len() {
            // Prompts of similar length share a batch (little padding)
            // only as they come: the order is the caller's.
            let mut end = start + 1;
            let mut longest = prompts[start].len();
            while end < prompts.len() {
                let l = longest.max(prompts[end].len());
                if l * (end + 1 - start) > PREFILL_TOKENS {
                    break;
                }
                longest = l;
                end += 1;
            }
            out.push(start..end);
            start = end;
        }
        out
    }

    /// [`Llama::prefill_batch`] of any number of prompts, in batches of at
    /// most 4,096 padded tokens, merged into one cache in which
    /// each prompt's row is repeated `n` times (the samples of a prompt
    /// share its prefill); returns each prompt's logits, `[prompts, V]`.
    pub fn prefill_many(
        &self,
        params: &B::Buf,
        prompts: &[&[u32]],
        n: usize,
        extra: usize,
    ) -> Result<(KvCache<B>, Vec<f32>), EngineError> {
        let mut parts = Vec::new();
        let mut logits = Vec::new();
        for r in Self::prefill_batches(prompts) {
            let (c, l) = self.prefill_batch(params, &prompts[r], extra)?;
            logits.extend(l);
            parts.push(c);
        }
        let refs: Vec<(&KvCache<B>, usize)> = parts.iter().map(|c| (c, n)).collect();
        Ok((self.merge(&refs, extra)?, logits))
    }

    /// One cache holding every row of the given caches, each row repeated
    /// `n` times (the samples of one prompt share its prefill), left-padded
    /// to the longest, with room for `extra` more tokens.
    pub fn merge(
        &self,
        parts: &[(&KvCache<B>, usize)],
        extra: usize,
    ) -> Result<KvCache<B>, EngineError> {
        if parts.is_empty() {
            return Err(EngineError::Invalid("merge: no caches".into()));
        }
        let longest = parts.iter().map(|(c, _)| c.len).max().unwrap_or(0);
        let rows: usize = parts.iter().map(|(c, n)| c.b * n).sum();
        let mut out = self.new_cache(rows, longest + extra)?;
        let w = self.kv_width();
        let mut r = 0;
        for (c, n) in parts {
            let shift = longest - c.len;
            for row in 0..c.b {
                for _ in 0..*n {
                    for l in 0..self.cfg.num_hidden_layers {
                        let (from, to) = (row * c.cap, r * out.cap + shift);
                        self.be
                            .copy_rows(&c.k[l], from, &mut out.k[l], to, c.len, w);
                        self.be
                            .copy_rows(&c.v[l], from, &mut out.v[l], to, c.len, w);
                    }
                    out.pad[r] = (shift + c.pad[row] as usize) as u32;
                    r += 1;
                }
            }
        }
        out.len = longest;
        Ok(out)
    }

    /// Keeps only the listed sequences, in that order.
    pub fn select(&self, cache: &mut KvCache<B>, rows: &[usize]) -> Result<(), EngineError> {
        if rows.is_empty() || rows.iter().any(|&r| r >= cache.b) {
            return Err(EngineError::Invalid(format!(
                "select: rows {rows:?} of a cache of {}",
                cache.b
            )));
        }
        let w = self.kv_width();
        for l in 0..self.cfg.num_hidden_layers {
            let mut k = self.be.zeros(rows.len() * cache.cap * w)?;
            let mut v = self.be.zeros(rows.len() * cache.cap * w)?;
            for (to, &from) in rows.iter().enumerate() {
                let n = cache.len;
                self.be
                    .copy_rows(&cache.k[l], from * cache.cap, &mut k, to * cache.cap, n, w);
                self.be
                    .copy_rows(&cache.v[l], from * cache.cap, &mut v, to * cache.cap, n, w);
            }
            cache.k[l] = k;
            cache.v[l] = v;
        }
        cache.pad = rows.iter().map(|&r| cache.pad[r]).collect();
        cache.b = rows.len();
        cache.ready = 0;
        cache.picked = 0;
        Ok(())
    }
}
