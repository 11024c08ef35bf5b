//! The wgpu backend against the CPU backend: every kernel at small and odd
//! shapes (forward and backward), then whole models: log-probs, every
//! parameter's gradient and an AdamW step of Llama and Qwen2 (biases, GQA,
//! tied and untied heads, padding), and greedy decoding through the KV
//! cache token for token; then the shipped demo model (an update, seeded
//! rollouts), three SeRL steps of the demo's configuration, and the
//! command line (`serl devices`, `serl generate --device wgpu`).
//!
//! Without a GPU this runs on Mesa's lavapipe (software Vulkan). A machine
//! with no adapter at all skips with a message, unless
//! `SERL_REQUIRE_WGPU=1` (set by `scripts/test.sh`, which installs
//! lavapipe) makes that a failure.
#![cfg(feature = "wgpu")]

mod common;

use common::tiny_config;
use serl_core::engine::{AttnDims, Backend, Cpu, Llama, Span, TokenBatch, Wgpu};
use serl_core::model::{Family, ModelConfig};

fn device() -> Option<Wgpu> {
    match Wgpu::new(None) {
        Ok(w) => Some(w),
        Err(e) => {
            assert!(
                std::env::var_os("SERL_REQUIRE_WGPU").is_none(),
                "SERL_REQUIRE_WGPU is set but there is no adapter: {e}"
            );
            eprintln!("skipped: {e}");
            None
        }
    }
}

/// Uniform values in [-1, 1) from a seed.
fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// `‖a − b‖ / ‖b‖` (0 when both are zero).
fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths");
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

fn close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert!(got.iter().all(|x| x.is_finite()), "{what}: not finite");
    let e = rel(got, want);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

fn all<B: Backend>(be: &B, b: &B::Buf, len: usize) -> Vec<f32> {
    be.read(b, Span { off: 0, len }).expect("read")
}

/// Runs one generic case on the CPU and the GPU and compares.
macro_rules! compare {
    ($what:expr, $tol:expr, |$be:ident| $body:block) => {{
        fn case<B: Backend>($be: &B) -> Vec<Vec<f32>> $body
        if let Some(gpu) = device() {
            let want = case(&Cpu);
            let got = case(&gpu);
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                close(&format!("{} output {i}", $what), g, w, $tol);
            }
        }
    }};
}

/// `x·wᵀ (+ b)`, then accumulated again, `dout·w` (accumulated and
/// not), and `doutᵀ·x` into the weight and bias gradients.
fn matmul_case<B: Backend>(be: &B, (n, i, o): (usize, usize, usize), bias: bool) -> Vec<Vec<f32>> {
    // params = [w (o·i) | bias (o)]
    let total = o * i + o;
    let params = be.upload(&rand(total, 2)).expect("params");
    let xb = be.upload(&rand(n * i, 1)).expect("x");
    let wspan = Span { off: 0, len: o * i };
    let bias = bias.then_some(Span { off: o * i, len: o });
    let mut out = be.upload(&rand(n * o, 5)).expect("out");
    be.matmul(&xb, &params, wspan, bias, &mut out, (n, i, o), false);
    let first = all(be, &out, n * o);
    be.matmul(&xb, &params, wspan, bias, &mut out, (n, i, o), true);
    let second = all(be, &out, n * o);
    let dout = be.upload(&rand(n * o, 6)).expect("dout");
    let mut dx = be.upload(&rand(n * i, 7)).expect("dx");
    be.matmul_dx(&dout, &params, wspan, &mut dx, (n, i, o), true);
    let dx1 = all(be, &dx, n * i);
    be.matmul_dx(&dout, &params, wspan, &mut dx, (n, i, o), false);
    let dx2 = all(be, &dx, n * i);
    let mut grads = be.upload(&rand(total, 8)).expect("grads");
    be.matmul_dw(&dout, &xb, &mut grads, wspan, bias, (n, i, o));
    vec![first, second, dx1, dx2, all(be, &grads, total)]
}

#[test]
fn matmul_and_its_backward_match_cpu_at_odd_shapes() {
    // Shapes off the 64 × 64 × 16 tile: ragged, a single row, a single
    // input column, and larger than one tile in every direction.
    compare!("matmul", 1e-5, |be| {
        let mut outs = Vec::new();
        for dims in [
            (7, 37, 65),
            (1, 16, 3),
            (3, 1, 5),
            (130, 70, 67),
            (1, 200, 1),
        ] {
            for bias in [false, true] {
                outs.extend(matmul_case(be, dims, bias));
            }
        }
        outs
    });
}

#[test]
fn elementwise_kernels_match_cpu() {
    compare!("elementwise", 1e-6, |be| {
        let len = 1000;
        let g = be.upload(&rand(len, 1)).expect("g");
        let u = be.upload(&rand(len, 2)).expect("u");
        let dout = be.upload(&rand(len, 3)).expect("dout");
        let mut out = be.zeros(len).expect("out");
        be.swiglu(&g, &u, &mut out, len);
        let (mut dg, mut du) = (be.zeros(len).expect("dg"), be.zeros(len).expect("du"));
        be.swiglu_bwd(&g, &u, &dout, &mut dg, &mut du, len);
        let mut acc = be.upload(&rand(len, 4)).expect("acc");
        be.add(&mut acc, &g, 999);
        be.scale(&mut acc, 7, -2.5);
        let mut c = be.upload(&rand(len, 9)).expect("c");
        be.copy(&u, &mut c, 300);
        be.copy_rows(&g, 3, &mut c, 50, 4, 10);
        let mut z = be.upload(&rand(len, 5)).expect("z");
        be.zero(&mut z, 333);
        let ss = be.sq_sum(&g, 777).expect("sq");
        vec![
            all(be, &out, len),
            all(be, &dg, len),
            all(be, &du, len),
            all(be, &acc, len),
            all(be, &c, len),
            all(be, &z, len),
            vec![ss as f32],
        ]
    });
}

#[test]
fn adamw_matches_cpu_over_steps() {
    compare!("adamw", 1e-6, |be| {
        let len = 5000;
        let mut w = be.upload(&rand(len, 1)).expect("w");
        let mut m = be.zeros(len).expect("m");
        let mut v = be.zeros(len).expect("v");
        for step in 1..=3 {
            let g = be.upload(&rand(len, 10 + step as u64)).expect("g");
            be.adamw(
                &mut w,
                &g,
                &mut m,
                &mut v,
                1e-3,
                (0.9, 0.95),
                1e-8,
                0.1,
                step,
            );
        }
        vec![all(be, &w, len), all(be, &m, len), all(be, &v, len)]
    });
}

#[test]
fn embedding_and_norm_kernels_match_cpu() {
    compare!("embedding/rmsnorm", 1e-5, |be| {
        // Width 300 spans more than one 256-wide workgroup pass; ids repeat.
        let (vocab, d, n) = (11, 300, 6);
        let params = be.upload(&rand(vocab * d + d + 5, 1)).expect("params");
        let table = Span {
            off: 5,
            len: vocab * d,
        };
        let w = Span {
            off: 5 + vocab * d,
            len: d,
        };
        let ids = be.upload_ids(&[3, 0, 10, 3, 3, 7]).expect("ids");
        let mut x = be.zeros(n * d).expect("x");
        be.embedding(&params, table, &ids, n, &mut x, d);
        let mut grads = be.upload(&rand(vocab * d + d + 5, 2)).expect("grads");
        let dout = be.upload(&rand(n * d, 3)).expect("dout");
        be.embedding_bwd(&mut grads, table, &ids, n, &dout, d);
        let mut out = be.zeros(n * d).expect("out");
        let mut rstd = be.zeros(n).expect("rstd");
        be.rmsnorm(&x, &params, w, &mut out, &mut rstd, n, d, 1e-5);
        let mut again = be.zeros(n * d).expect("again");
        be.rmsnorm_apply(&x, &params, w, &rstd, &mut again, n, d);
        let mut dx = be.upload(&rand(n * d, 4)).expect("dx");
        be.rmsnorm_bwd(&x, &params, w, &rstd, &dout, &mut dx, &mut grads, n, d);
        vec![
            all(be, &x, n * d),
            all(be, &out, n * d),
            all(be, &rstd, n),
            all(be, &again, n * d),
            all(be, &dx, n * d),
            all(be, &grads, vocab * d + d + 5),
        ]
    });
}

#[test]
fn rope_and_its_inverse_match_cpu() {
    compare!("rope", 1e-6, |be| {
        let (n, heads, hd, positions) = (5, 3, 10, 20);
        let cos: Vec<f32> = (0..positions * hd / 2)
            .map(|i| (i as f32 * 0.1).cos())
            .collect();
        let sin: Vec<f32> = (0..positions * hd / 2)
            .map(|i| (i as f32 * 0.1).sin())
            .collect();
        let (c, s) = (be.upload(&cos).expect("cos"), be.upload(&sin).expect("sin"));
        let pos = be.upload_ids(&[0, 19, 4, 4, 7]).expect("pos");
        let mut x = be.upload(&rand(n * heads * hd, 1)).expect("x");
        be.rope(&mut x, &pos, n, &c, &s, heads, hd, false);
        let fwd = all(be, &x, n * heads * hd);
        be.rope(&mut x, &pos, n, &c, &s, heads, hd, true);
        vec![fwd, all(be, &x, n * heads * hd)]
    });
}

#[test]
fn attention_forward_and_backward_match_cpu_with_padding_and_gqa() {
    compare!("attention", 1e-5, |be| {
        // Three sequences: unpadded, padded by 2, all padding; 4 query
        // heads over 2 key/value heads; head width not a power of two.
        let d = AttnDims {
            b: 3,
            t: 7,
            nh: 4,
            nkv: 2,
            hd: 6,
        };
        let (qw, kw, n) = (d.nh * d.hd, d.nkv * d.hd, d.b * d.t);
        let q = be.upload(&rand(n * qw, 1)).expect("q");
        let k = be.upload(&rand(n * kw, 2)).expect("k");
        let v = be.upload(&rand(n * kw, 3)).expect("v");
        let pad = be.upload_ids(&[0, 2, 7]).expect("pad");
        let mut out = be.upload(&rand(n * qw, 4)).expect("out");
        let mut lse = be.upload(&rand(d.b * d.nh * d.t, 5)).expect("lse");
        be.attention(&q, &k, &v, &mut out, &mut lse, &pad, d);
        let dout = be.upload(&rand(n * qw, 6)).expect("dout");
        let mut dq = be.upload(&rand(n * qw, 7)).expect("dq");
        let mut dk = be.upload(&rand(n * kw, 8)).expect("dk");
        let mut dv = be.upload(&rand(n * kw, 9)).expect("dv");
        be.attention_bwd(
            &q, &k, &v, &out, &lse, &dout, &mut dq, &mut dk, &mut dv, &pad, d,
        );
        vec![
            all(be, &out, n * qw),
            all(be, &lse, d.b * d.nh * d.t),
            all(be, &dq, n * qw),
            all(be, &dk, n * kw),
            all(be, &dv, n * kw),
        ]
    });
}

#[test]
fn cached_attention_matches_cpu() {
    compare!("kv cache", 1e-5, |be| {
        let (b, cap, len, t) = (2, 9, 4, 3);
        let d = AttnDims {
            b,
            t,
            nh: 2,
            nkv: 1,
            hd: 8,
        };
        let (qw, kw) = (d.nh * d.hd, d.nkv * d.hd);
        let mut kc = be.upload(&rand(b * cap * kw, 1)).expect("kc");
        let mut vc = be.upload(&rand(b * cap * kw, 2)).expect("vc");
        let knew = be.upload(&rand(b * t * kw, 3)).expect("k");
        let vnew = be.upload(&rand(b * t * kw, 4)).expect("v");
        be.kv_write(&mut kc, &knew, b, t, cap, len, kw);
        be.kv_write(&mut vc, &vnew, b, t, cap, len, kw);
        let q = be.upload(&rand(b * t * qw, 5)).expect("q");
        let pad = be.upload_ids(&[0, 2]).expect("pad");
        let mut out = be.upload(&rand(b * t * qw, 6)).expect("out");
        be.attention_cached(&q, &kc, &vc, &mut out, &pad, len, cap, d);
        vec![all(be, &kc, b * cap * kw), all(be, &out, b * t * qw)]
    });
}

#[test]
fn fused_tail_matches_cpu_across_chunks() {
    compare!("tail", 1e-5, |be| {
        // More positions than one chunk (256), rows in scrambled order.
        let (v, d, rows_n, n) = (70, 12, 300, 310);
        let params = be.upload(&rand(v * d + 3, 1)).expect("params");
        let head = Span { off: 3, len: v * d };
        let h = be.upload(&rand(rows_n * d, 2)).expect("h");
        let rows: Vec<u32> = (0..n).map(|p| ((p * 37) % rows_n) as u32).collect();
        let targets: Vec<u32> = (0..n).map(|p| ((p * 13 + 5) % v) as u32).collect();
        let (ri, ti) = (
            be.upload_ids(&rows).expect("rows"),
            be.upload_ids(&targets).expect("t"),
        );
        let mut sc = be.tail_scratch(v, d).expect("scratch");
        let lp0 = be
            .logprob_tail(&h, &params, head, &ri, &ti, n, None, &mut sc, (v, d))
            .expect("tail");
        let mut dh = be.upload(&rand(rows_n * d, 3)).expect("dh");
        let mut grads = be.upload(&rand(v * d + 3, 4)).expect("grads");
        let mut hook = |start: usize, lp: &[f32], g: &mut [f32]| {
            for (j, (gj, l)) in g.iter_mut().zip(lp).enumerate() {
                *gj = (0.5 - ((start + j) % 3) as f32) * (1.0 + l.exp());
            }
        };
        let lp1 = be
            .logprob_tail(
                &h,
                &params,
                head,
                &ri,
                &ti,
                n,
                Some((&mut hook, &mut dh, &mut grads)),
                &mut sc,
                (v, d),
            )
            .expect("tail");
        vec![
            lp0,
            lp1,
            all(be, &dh, rows_n * d),
            all(be, &grads, v * d + 3),
        ]
    });
}

/// Forward + backward + one AdamW step of a whole model on `be`.
fn train_step<B: Backend>(
    be: B,
    cfg: &ModelConfig,
    weights: &[f32],
    tb: &TokenBatch,
) -> Vec<Vec<f32>> {
    let mut llama = Llama::new(be, cfg.clone()).expect("llama");
    let total = llama.layout().total;
    let be = llama.backend();
    let mut params = be.upload(weights).expect("params");
    let mut grads = be.zeros(total).expect("grads");
    let mut acts = llama.activations(tb.n()).expect("acts");
    let coef: Vec<f32> = (0..tb.rows.len())
        .map(|i| 0.3 - 0.2 * (i % 3) as f32)
        .collect();
    let mut hook = |start: usize, _: &[f32], d: &mut [f32]| {
        d.copy_from_slice(&coef[start..start + d.len()]);
    };
    let lp = llama
        .forward(&params, tb, &mut acts, Some((&mut hook, &mut grads)))
        .expect("forward");
    let be = llama.backend();
    let g = all(be, &grads, total);
    let (mut m, mut v) = (be.zeros(total).expect("m"), be.zeros(total).expect("v"));
    be.adamw(
        &mut params,
        &grads,
        &mut m,
        &mut v,
        1e-3,
        (0.9, 0.95),
        1e-8,
        0.01,
        1,
    );
    let norm = be.sq_sum(&grads, total).expect("norm");
    vec![lp, g, all(be, &params, total), vec![norm as f32]]
}

#[test]
fn whole_model_training_step_matches_cpu() {
    let Some(gpu) = device() else { return };
    let seqs: Vec<Vec<u32>> = vec![
        vec![5, 9, 200, 13, 7, 40, 41, 42, 266],
        vec![100, 101, 102, 103],
        vec![1, 2, 3, 4, 5, 6, 7],
    ];
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let tb = TokenBatch::right_padded(&refs, &[3, 1, 5]).expect("batch");
    for (family, tie, kv) in [
        (Family::Llama, true, 2),
        (Family::Qwen2, false, 1),
        (Family::Llama, false, 4),
    ] {
        let cfg = ModelConfig {
            num_key_value_heads: kv,
            ..tiny_config(family, tie)
        };
        let total = Llama::new(Cpu, cfg.clone()).expect("llama").layout().total;
        let weights: Vec<f32> = rand(total, 3).iter().map(|x| x * 0.2).collect();
        let want = train_step(Cpu, &cfg, &weights, &tb);
        // Also with bindings capped at 64 KiB, below the weights (90–140 KB):
        // parameters bound as ranges, the optimizer and norms in pieces
        // (what SmolLM2 on lavapipe and billion-parameter models need).
        assert!(total * 4 > 64 * 1024, "{total} weights");
        let capped = Wgpu::with_max_binding(None, Some(64 * 1024)).expect("capped device");
        for (dev, label) in [(gpu.clone(), ""), (capped, " (64 KiB bindings)")] {
            let got = train_step(dev, &cfg, &weights, &tb);
            let what = format!("{family:?} tie={tie} kv={kv}{label}");
            close(&format!("{what}: log-probs"), &got[0], &want[0], 1e-5);
            close(&format!("{what}: gradients"), &got[1], &want[1], 1e-4);
            close(&format!("{what}: updated weights"), &got[2], &want[2], 1e-6);
            close(&format!("{what}: gradient norm²"), &got[3], &want[3], 1e-5);
            let layout = Llama::new(Cpu, cfg.clone())
                .expect("llama")
                .layout()
                .clone();
            for p in &layout.params {
                let span = p.span.off..p.span.off + p.span.len;
                close(
                    &format!("{what}: {}", p.name),
                    &got[1][span.clone()],
                    &want[1][span],
                    1e-4,
                );
            }
        }
    }
}

/// Greedy decoding through the KV cache: prefill of two prompts (the
/// shorter left-padded), then `steps` single-token steps.
fn greedy<B: Backend>(be: B, cfg: &ModelConfig, weights: &[f32], steps: usize) -> Vec<Vec<u32>> {
    let llama = Llama::new(be, cfg.clone()).expect("llama");
    let params = llama.backend().upload(weights).expect("params");
    let v = cfg.vocab_size;
    let prompts: [&[u32]; 2] = [&[5, 9, 200, 13, 7], &[100, 101, 102]];
    let mut out = vec![Vec::new(); 2];
    let mut caches = Vec::new();
    let mut next = Vec::new();
    for p in prompts {
        let mut c = llama.new_cache(1, 64).expect("cache");
        let logits = llama
            .step(&params, &mut c, p, p.len(), false)
            .expect("prefill");
        next.push(argmax(&logits[..v]));
        caches.push(c);
    }
    let parts: Vec<_> = caches.iter().map(|c| (c, 1usize)).collect();
    let mut cache = llama.merge(&parts, 64).expect("merge");
    for step in 0..steps {
        if step == steps / 2 {
            // Reorder the sequences midway (what beam-free rollouts do when
            // finished rows leave): the cache follows.
            llama.select(&mut cache, &[1, 0]).expect("select");
            out.swap(0, 1);
            next.swap(0, 1);
        }
        for (o, &t) in out.iter_mut().zip(&next) {
            o.push(t);
        }
        let logits = llama
            .step(&params, &mut cache, &next, 1, false)
            .expect("step");
        next = logits.chunks(v).map(argmax).collect();
    }
    out
}

/// The largest logit's token.
fn argmax(x: &[f32]) -> u32 {
    serl_core::model::argmax(x) as u32
}

#[test]
fn greedy_decoding_is_token_identical_to_cpu() {
    let Some(gpu) = device() else { return };
    let cfg = tiny_config(Family::Qwen2, false);
    let total = Llama::new(Cpu, cfg.clone()).expect("llama").layout().total;
    let weights: Vec<f32> = rand(total, 11).iter().map(|x| x * 0.5).collect();
    let want = greedy(Cpu, &cfg, &weights, 12);
    let got = greedy(gpu, &cfg, &weights, 12);
    assert_eq!(got, want);
}

#[test]
fn bad_adapter_index_is_a_clear_error() {
    let e = Wgpu::new(Some(1000)).expect_err("no adapter 1000");
    assert!(e.to_string().contains("wgpu:1000"), "{e}");
}

/// Every weight of a trainer's current model.
fn trained_weights(t: &serl_core::train::Trainer) -> Vec<f32> {
    let m = t.model().expect("model");
    m.named_parameters()
        .iter()
        .flat_map(|(_, v)| {
            v.as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("weights")
        })
        .collect()
}

#[test]
fn serl_steps_on_wgpu_follow_the_cpu_run() {
    // Three SeRL steps (rollouts with sampling, majority-vote rewards,
    // reference KL, Reinforce++ update, evaluation) of the tiny model on
    // both backends from one seed: the same rollouts and rewards, weights
    // within float noise.
    use serl_core::train::Trainer;
    if device().is_none() {
        return;
    }
    let (dir, cfg) = common::train_setup("wgpu");
    let mut runs = Vec::new();
    for dev in ["cpu", "wgpu"] {
        let mut t = Trainer::new(serl_core::train::Config {
            out: dir.join(dev),
            device: dev.into(),
            steps: 3,
            ..cfg.clone()
        })
        .expect("trainer");
        t.train(3, |_| {}).expect("train");
        let metrics =
            std::fs::read_to_string(dir.join(dev).join("metrics.jsonl")).expect("metrics");
        runs.push((trained_weights(&t), metrics));
    }
    let field = |m: &str, key: &str| -> Vec<f64> {
        m.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                v[key].as_f64().unwrap_or(f64::NAN)
            })
            .collect()
    };
    let (cpu, gpu) = (&runs[0], &runs[1]);
    for key in ["reward_mean", "response_len_mean", "agreement_mean"] {
        let c = field(&cpu.1, key);
        assert!(
            c.len() == 3 && c.iter().all(|x| x.is_finite()),
            "{key}: {c:?}"
        );
        assert_eq!(field(&gpu.1, key), c, "{key}");
    }
    for key in ["loss", "kl", "grad_norm"] {
        let (g, c) = (field(&gpu.1, key), field(&cpu.1, key));
        for (a, b) in g.iter().zip(&c) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{key}: wgpu {g:?} vs cpu {c:?}"
            );
        }
    }
    close("weights after 3 steps", &gpu.0, &cpu.0, 1e-5);
    assert_ne!(
        cpu.0,
        trained_weights(&Trainer::new(cfg.clone()).expect("fresh")),
        "the run trained"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn demo_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo")
}

#[test]
fn demo_model_update_and_rollouts_match_cpu() {
    // The shipped demo model (0.86M parameters, its own tokenizer): one
    // update of real problem text (every gradient, the clipped norm, the
    // AdamW step) and seeded sampling of 16 problems × 4 answers, as the
    // trainer's rollouts run, token for token.
    use serl_core::engine::EngineDevice;
    use serl_core::model::{GenerateRequest, LoadOptions, SamplingParams, generate};
    use serl_core::train::{Learner, read_examples};
    if device().is_none() {
        return;
    }
    let (model, tok) =
        serl_core::model::load_model(&demo_dir().join("model"), &LoadOptions::default())
            .expect("demo model");
    let eval = read_examples(&demo_dir().join("eval.jsonl"), true).expect("eval set");
    let prompts: Vec<Vec<u32>> = eval[..16]
        .iter()
        .map(|e| tok.encode(&e.problem).expect("encode"))
        .collect();
    let rows: Vec<Vec<u32>> = eval[16..24]
        .iter()
        .map(|e| {
            tok.encode(&format!(
                "{} {}",
                e.problem,
                e.answer.as_deref().unwrap_or("")
            ))
            .expect("encode")
        })
        .collect();
    let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    let starts: Vec<usize> = rows.iter().map(|r| r.len() / 2).collect();
    let tb = TokenBatch::right_padded(&refs, &starts).expect("batch");
    let run = |dev: EngineDevice| {
        let mut l = Learner::on(dev, &model, (0.9, 0.95), 1e-8, 0.0).expect("learner");
        let req = GenerateRequest {
            prompts: prompts.clone(),
            params: SamplingParams {
                n: 4,
                temperature: 1.0,
                max_new_tokens: 48,
                seed: 7,
                ..Default::default()
            },
        };
        let samples: Vec<Vec<u32>> = generate::generate(&l.decoder(), &tok, &req, |_| {})
            .expect("generate")
            .into_iter()
            .map(|g| g.token_ids)
            .collect();
        let lp = l.logprobs(&tb).expect("logprobs");
        l.accumulate(&tb, &mut |start, _, d: &mut [f32]| {
            for (i, x) in d.iter_mut().enumerate() {
                *x = 0.01 * ((start + i) % 5) as f32 - 0.02;
            }
        })
        .expect("accumulate");
        let names: Vec<String> = l.layout().params.iter().map(|p| p.name.clone()).collect();
        let grads: Vec<Vec<f32>> = names.iter().map(|n| l.grad(n).expect("grad")).collect();
        let norm = l.clip_grad_norm(1.0).expect("clip");
        l.optimizer_step(1e-3);
        let after: Vec<Vec<f32>> = names.iter().map(|n| l.param(n).expect("param")).collect();
        (samples, lp, names, grads, norm, after)
    };
    let cpu = run(EngineDevice::Cpu);
    let gpu = run(EngineDevice::Wgpu(None));
    assert_eq!(gpu.0, cpu.0, "sampled rollouts");
    assert!(cpu.0.iter().any(|s| s.len() > 8), "the model wrote answers");
    close("log-probs", &gpu.1, &cpu.1, 1e-5);
    for (i, name) in cpu.2.iter().enumerate() {
        close(&format!("gradient of {name}"), &gpu.3[i], &cpu.3[i], 1e-4);
        // Adam's first step moves each weight by about ±lr whatever the
        // gradient's size, so a gradient near zero whose sign differs in
        // the last bits moves its weight the other way: 1e-4, as the
        // whole-model tests.
        close(&format!("{name} after AdamW"), &gpu.5[i], &cpu.5[i], 1e-4);
    }
    assert!(
        (gpu.4 - cpu.4).abs() <= 1e-5 * cpu.4,
        "gradient norm: wgpu {} vs cpu {}",
        gpu.4,
        cpu.4
    );
}

#[test]
fn demo_config_runs_three_serl_steps_on_wgpu_like_cpu() {
    // The embedded demo's configuration (self-instruction, 16 problems × 8
    // answers, equivalence vote, Reinforce++), three steps on each backend
    // from one seed, without the 200-problem evaluations.
    use serl_core::train::{Config, Trainer};
    if device().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("serl-wgpu-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = Config::from_file(&demo_dir().join("serl-demo.toml")).expect("demo config");
    let mut metrics = Vec::new();
    for dev in ["cpu", "wgpu"] {
        let cfg = Config {
            out: dir.join(dev),
            device: dev.into(),
            steps: 3,
            eval_steps: 0,
            eval_data: None,
            ..base.clone()
        };
        let mut t = Trainer::new(cfg).expect("trainer");
        let clock = std::time::Instant::now();
        t.train(3, |_| {}).expect("train");
        eprintln!("{dev}: 3 steps in {:.1} s", clock.elapsed().as_secs_f64());
        let text = std::fs::read_to_string(dir.join(dev).join("metrics.jsonl")).expect("metrics");
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(rows.len(), 3, "{dev}: {text}");
        metrics.push(rows);
    }
    let (cpu, gpu) = (&metrics[0], &metrics[1]);
    for (step, (c, g)) in cpu.iter().zip(gpu).enumerate() {
        // Step 1 samples from the same weights: the same problems, answers
        // and votes. Later steps sample from weights that differ in the
        // last bits, so a sampled token may differ: close, not equal.
        for key in ["reward_mean", "agreement_mean", "response_len_mean"] {
            let (a, b) = (g[key].as_f64(), c[key].as_f64());
            assert!(a.is_some() && b.is_some(), "step {step} {key}: {g} / {c}");
            if step == 0 {
                assert_eq!(a, b, "step 1 {key}");
            } else {
                let (a, b) = (a.unwrap_or(0.0), b.unwrap_or(0.0));
                assert!(
                    (a - b).abs() <= 0.25 * (1.0 + b.abs()),
                    "step {} {key}: wgpu {a} cpu {b}",
                    step + 1
                );
            }
        }
        for key in ["loss", "grad_norm"] {
            let (a, b) = (
                g[key].as_f64().unwrap_or(f64::NAN),
                c[key].as_f64().unwrap_or(f64::NAN),
            );
            assert!(
                a.is_finite() && b.is_finite(),
                "step {} {key}: {a} {b}",
                step + 1
            );
            if step == 0 {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "step 1 {key}: wgpu {a} cpu {b}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn command_line_lists_adapters_and_generates_on_wgpu_as_on_cpu() {
    // `serl devices` names the adapter; `serl generate --device wgpu` on the
    // demo model prints what `--device cpu` prints (seeded sampling, JSON).
    use std::process::Command;
    if device().is_none() {
        return;
    }
    let serl = env!("CARGO_BIN_EXE_serl");
    let out = Command::new(serl)
        .arg("devices")
        .output()
        .expect("serl devices");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parse = |text: String| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = parse(text.clone());
    assert_eq!(lines[0]["device"], "cpu", "{text}");
    assert!(
        lines[1..]
            .iter()
            .any(|l| l["device"] == "wgpu:0" && l["max_storage_binding"].as_u64() > Some(0)),
        "{text}"
    );
    let run = |dev: &str| {
        let out = Command::new(serl)
            .args(["generate", "--model"])
            .arg(demo_dir().join("model"))
            .args(["--prompt", "Ann has 12 apples. She gets 5 more and then gives away 3. How many apples does Ann have now?"])
            .args(["--n", "3", "--seed", "5", "--max-new-tokens", "40", "--json", "--device", dev])
            .output()
            .expect("serl generate");
        assert!(
            out.status.success(),
            "{dev}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cpu = parse(run("cpu"));
    let gpu = parse(run("wgpu"));
    assert_eq!(cpu.len(), 3, "{cpu:?}");
    assert_eq!(gpu.len(), 3, "{gpu:?}");
    for (g, c) in gpu.iter().zip(&cpu) {
        for key in ["text", "token_ids", "finish_reason"] {
            assert_eq!(g[key], c[key], "{key}");
        }
        let lp = |v: &serde_json::Value| -> Vec<f32> {
            v["logprobs"]
                .as_array()
                .expect("logprobs")
                .iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                .collect()
        };
        close("sampled tokens' log-probs", &lp(g), &lp(c), 1e-4);
    }
    let bad = Command::new(serl)
        .args(["generate", "--model"])
        .arg(demo_dir().join("model"))
        .args(["--prompt", "x", "--device", "wgpu:99"])
        .output()
        .expect("serl generate");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("wgpu:99"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn async_generation_on_wgpu_matches_blocking_generation_and_cpu() {
    // What the browser build runs: the model loaded from files in memory,
    // the device opened without blocking, every step's logits read back
    // through `read_async`, prompts in more than one prefill batch. Its
    // tokens equal the blocking path's on wgpu and on the CPU.
    use serl_core::model::{
        GenerateRequest, HfFiles, LoadOptions, SamplingParams, generate, load_model_from_memory,
    };
    use serl_core::train::{Scorer, read_examples};
    if device().is_none() {
        return;
    }
    let dir = demo_dir().join("model");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("demo file");
    let weights = std::fs::read(dir.join("model.safetensors")).expect("weights");
    let (cfg_json, tok_json, tok_cfg, template) = (
        read("config.json"),
        read("tokenizer.json"),
        read("tokenizer_config.json"),
        read("chat_template.jinja"),
    );
    let files = HfFiles {
        config_json: &cfg_json,
        safetensors: &weights,
        tokenizer_json: &tok_json,
        tokenizer_config_json: Some(&tok_cfg),
        chat_template: Some(&template),
        origin: "demo/model",
    };
    let (model, tok) = load_model_from_memory(&files, &LoadOptions::default()).expect("load");
    let (disk, disk_tok) =
        serl_core::model::load_model(&dir, &LoadOptions::default()).expect("disk");
    assert_eq!(tok.chat_template(), disk_tok.chat_template());
    let eval = read_examples(&demo_dir().join("eval.jsonl"), true).expect("eval set");
    // Long enough prompts (repeated problems) that 4,096 padded tokens split
    // the prefill into batches.
    let prompts: Vec<Vec<u32>> = eval[..12]
        .iter()
        .map(|e| tok.encode(&e.problem.repeat(6)).expect("encode"))
        .collect();
    let req = GenerateRequest {
        prompts,
        params: SamplingParams {
            n: 3,
            temperature: 1.0,
            max_new_tokens: 24,
            seed: 11,
            ..Default::default()
        },
    };
    let ids = |g: Vec<serl_core::model::Generation>| -> Vec<Vec<u32>> {
        g.into_iter().map(|g| g.token_ids).collect()
    };
    let wgpu = pollster::block_on(Wgpu::new_async(None)).expect("device");
    let on_gpu = Scorer::on_wgpu(wgpu, &model).expect("scorer");
    let mut streamed = 0usize;
    let async_gpu = pollster::block_on(
        on_gpu
            .decoder()
            .generate_async(&tok, &req, |_| streamed += 1),
    )
    .expect("generate_async");
    let total: usize = async_gpu.iter().map(|g| g.token_ids.len()).sum();
    assert_eq!(streamed, total, "one event per token");
    let blocking_gpu = generate::generate(&on_gpu.decoder(), &tok, &req, |_| {}).expect("generate");
    let on_cpu = Scorer::new(&disk).expect("cpu scorer");
    let cpu = generate::generate(&on_cpu.decoder(), &tok, &req, |_| {}).expect("cpu");
    let async_cpu =
        pollster::block_on(on_cpu.decoder().generate_async(&tok, &req, |_| {})).expect("cpu async");
    let texts: Vec<String> = async_gpu.iter().map(|g| g.text.clone()).collect();
    assert_eq!(
        ids(async_gpu),
        ids(blocking_gpu.clone()),
        "async vs blocking on wgpu"
    );
    assert_eq!(ids(blocking_gpu), ids(cpu.clone()), "wgpu vs cpu");
    assert_eq!(
        ids(async_cpu),
        ids(cpu.clone()),
        "async vs blocking on the cpu"
    );
    assert_eq!(
        texts,
        cpu.iter().map(|g| g.text.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn greedy_rows_match_the_host_reduction_with_ties_and_odd_widths() {
    let Some(gpu) = device() else { return };
    for (rows, v) in [(1, 1), (3, 567), (5, 300), (2, 49_153)] {
        let mut x = rand(rows * v, (rows * 31 + v) as u64);
        // A tie in row 0 (the first index wins), a row of -inf (index 0).
        if v > 10 {
            x[7] = 5.0;
            x[v - 2] = 5.0;
        }
        if rows > 2 {
            for t in &mut x[2 * v..3 * v] {
                *t = f32::NEG_INFINITY;
            }
            x[2 * v + v / 2] = f32::NEG_INFINITY;
        }
        let run = |be: &dyn Fn(&[f32]) -> Vec<f32>| be(&x);
        let cpu = run(&|x| {
            let l = Cpu.upload(x).unwrap();
            let mut out = Cpu.zeros(2 * rows).unwrap();
            Cpu.greedy_rows(&l, rows, v, &mut out).unwrap();
            all(&Cpu, &out, 2 * rows)
        });
        let got = run(&|x| {
            let l = gpu.upload(x).unwrap();
            let mut out = gpu.zeros(2 * rows).unwrap();
            gpu.greedy_rows(&l, rows, v, &mut out).unwrap();
            all(&gpu, &out, 2 * rows)
        });
        for r in 0..rows {
            assert_eq!(got[2 * r], cpu[2 * r], "row {r} of {rows}×{v}: index");
            let (a, b) = (got[2 * r + 1], cpu[2 * r + 1]);
            // (A row of -inf has no probabilities: NaN on both.)
            assert!(
                a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "row {r} of {rows}×{v}: log-prob {a} vs {b}"
            );
        }
        if v > 10 {
            assert_eq!(cpu[0], 7.0, "first of a tie");
        }
    }
}

#[test]
fn greedy_decoding_on_the_device_reads_back_picks_and_matches_cpu() {
    // Temperature 0, no penalties: each step reads back 2 floats a row
    // (the pick and its log-prob) instead of the whole vocabulary, blocking
    // and async; the tokens equal the CPU's, the log-probs within 1e-4 (the
    // logits themselves differ in the last bits between backends).
    use serl_core::model::{GenerateRequest, LoadOptions, SamplingParams, generate};
    use serl_core::train::{Scorer, read_examples};
    let Some(gpu) = device() else { return };
    let (model, tok) =
        serl_core::model::load_model(&demo_dir().join("model"), &LoadOptions::default())
            .expect("demo model");
    let eval = read_examples(&demo_dir().join("eval.jsonl"), true).expect("eval set");
    let req = GenerateRequest {
        prompts: eval[..24]
            .iter()
            .map(|e| tok.encode(&e.problem).expect("encode"))
            .collect(),
        params: SamplingParams {
            temperature: 0.0,
            max_new_tokens: 40,
            ..Default::default()
        },
    };
    let cpu = generate::generate(&Scorer::new(&model).unwrap().decoder(), &tok, &req, |_| {})
        .expect("cpu");
    let on_gpu = Scorer::on_wgpu(gpu, &model).expect("scorer");
    let blocking = generate::generate(&on_gpu.decoder(), &tok, &req, |_| {}).expect("wgpu");
    let asynced =
        pollster::block_on(on_gpu.decoder().generate_async(&tok, &req, |_| {})).expect("async");
    assert!(
        cpu.iter()
            .any(|g| g.finish_reason == serl_core::model::generate::FinishReason::Stop)
    );
    for got in [&blocking, &asynced] {
        for (g, c) in got.iter().zip(&cpu) {
            assert_eq!(g.token_ids, c.token_ids);
            assert_eq!(g.text, c.text);
            for (a, b) in g.logprobs.iter().zip(&c.logprobs) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "log-prob {a} vs {b}"
                );
            }
        }
    }
}
