//! Where each parameter of a Llama-family model lives in one flat buffer,
//! with its Hugging Face name and shape: the one description of an
//! architecture that loading, saving, the optimizer and the kernels share.

use crate::model::ModelConfig;

/// One parameter's place in the flat buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First element.
    pub off: usize,
    /// Number of elements.
    pub len: usize,
}

/// The spans of one decoder block.
#[derive(Debug, Clone)]
pub struct LayerSpans {
    /// Pre-attention RMSNorm weight `[H]`.
    pub input_norm: Span,
    /// Query projection `[nh·d, H]`.
    pub q: Span,
    /// Query bias `[nh·d]` (Qwen2).
    pub q_bias: Option<Span>,
    /// Key projection `[nkv·d, H]`.
    pub k: Span,
    /// Key bias `[nkv·d]` (Qwen2).
    pub k_bias: Option<Span>,
    /// Value projection `[nkv·d, H]`.
    pub v: Span,
    /// Value bias `[nkv·d]` (Qwen2).
    pub v_bias: Option<Span>,
    /// Attention output projection `[H, nh·d]`.
    pub o: Span,
    /// Pre-MLP RMSNorm weight `[H]`.
    pub post_norm: Span,
    /// SwiGLU gate `[I, H]`.
    pub gate: Span,
    /// SwiGLU up `[I, H]`.
    pub up: Span,
    /// SwiGLU down `[H, I]`.
    pub down: Span,
}

/// A parameter's name, shape and span, in checkpoint order.
#[derive(Debug, Clone)]
pub struct ParamInfo {
    /// Hugging Face name (`model.layers.3.mlp.up_proj.weight`).
    pub name: String,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Place in the flat buffer.
    pub span: Span,
}

/// Every parameter of a configuration, laid out back to back.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The parameters in checkpoint order.
    pub params: Vec<ParamInfo>,
    /// Token embedding `[V, H]`.
    pub embed: Span,
    /// The decoder blocks.
    pub layers: Vec<LayerSpans>,
    /// Final RMSNorm weight `[H]`.
    pub norm: Span,
    /// Output head `[V, H]`: the embedding's span when tied.
    pub head: Span,
    /// Total number of elements.
    pub total: usize,
}

struct Builder {
    params: Vec<ParamInfo>,
    next: usize,
}

impl Builder {
    fn add(&mut self, name: String, shape: Vec<usize>) -> Span {
        let len = shape.iter().product();
        let span = Span {
            off: self.next,
            len,
        };
        self.next += len;
        self.params.push(ParamInfo { name, shape, span });
        span
    }
}

impl Layout {
    /// The layout of `cfg`'s parameters (names as in Hugging Face checkpoints).
    pub fn new(cfg: &ModelConfig) -> Layout {
        let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (nq, nkv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        let mut b = Builder {
            params: Vec::new(),
            next: 0,
        };
        let embed = b.add("model.embed_tokens.weight".into(), vec![cfg.vocab_size, h]);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let input_norm = b.add(format!("{p}.input_layernorm.weight"), vec![h]);
            let proj = |b: &mut Builder, name: &str, rows: usize| {
                let w = b.add(format!("{p}.self_attn.{name}_proj.weight"), vec![rows, h]);
                let bias = cfg
                    .attention_bias
                    .then(|| b.add(format!("{p}.self_attn.{name}_proj.bias"), vec![rows]));
                (w, bias)
            };
            let (q, q_bias) = proj(&mut b, "q", nq);
            let (k, k_bias) = proj(&mut b, "k", nkv);
            let (v, v_bias) = proj(&mut b, "v", nkv);
            layers.push(LayerSpans {
                input_norm,
                q,
                q_bias,
                k,
                k_bias,
                v,
                v_bias,
                o: b.add(format!("{p}.self_attn.o_proj.weight"), vec![h, nq]),
                post_norm: b.add(format!("{p}.post_attention_layernorm.weight"), vec![h]),
                gate: b.add(format!("{p}.mlp.gate_proj.weight"), vec![i, h]),
                up: b.add(format!("{p}.mlp.up_proj.weight"), vec![i, h]),
                down: b.add(format!("{p}.mlp.down_proj.weight"), vec![h, i]),
            });
        }
        let norm = b.add("model.norm.weight".into(), vec![h]);
        let head = if cfg.tie_word_embeddings {
            embed
        } else {
            b.add("lm_head.weight".into(), vec![cfg.vocab_size, h])
        };
        Layout {
            params: b.params,
            embed,
            layers,
            norm,
            head,
            total: b.next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_tile_the_buffer_in_checkpoint_order() {
        let mut cfg = crate::model::tiny_llama_config();
        cfg.attention_bias = true;
        cfg.tie_word_embeddings = false;
        let l = Layout::new(&cfg);
        let mut next = 0;
        for p in &l.params {
            assert_eq!(p.span.off, next, "{}", p.name);
            assert_eq!(p.span.len, p.shape.iter().product::<usize>());
            next += p.span.len;
        }
        assert_eq!(next, l.total);
        assert_eq!(l.params.len(), 1 + 2 * 12 + 2);
        assert_eq!(
            l.params.last().map(|p| p.name.as_str()),
            Some("lm_head.weight")
        );
        cfg.tie_word_embeddings = true;
        let tied = Layout::new(&cfg);
        assert_eq!(tied.head, tied.embed);
    }
}
