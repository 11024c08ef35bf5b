#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/) from the
test fixtures: responses, answer pairs, vote groups, generated instruction
lists, ROUGE pairs, filter pools, seed files, configurations, the tiny
model's files (and a GGUF of it), trainer_state.json. Run from the
repository root; the seeds are committed."""
import hashlib
import json
import pathlib
import shutil
import struct

root = pathlib.Path(__file__).resolve().parent.parent
fx = root / "serl-core/tests/fixtures"
out = root / "fuzz/seeds"


def jsonl(name):
    return [json.loads(l) for l in (fx / name).read_text().split("\n") if l.strip()]


def put(target, data, limit=None):
    if isinstance(data, str):
        data = data.encode()
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


shutil.rmtree(out, ignore_errors=True)
Z = "\0"
for r in jsonl("extract.jsonl")[:200]:
    put("extract", r["input"])
for r in jsonl("mv_suite.jsonl")[::3] + jsonl("equal.jsonl")[::12]:
    put("equiv", r["pred"] + Z + r["ref"])
for r in jsonl("vote.jsonl")[::6]:
    put("vote", Z.join(r["responses"]))
for r in jsonl("postprocess.jsonl")[:60]:
    put("instructions", r["response"])
for r in jsonl("rouge.jsonl")[:60]:
    put("rouge", r["a"] + Z + r["b"])
for r in jsonl("filter.jsonl")[:20]:
    seeds = "\n".join(s.replace("\n", " ") for s in r["seed"][:20])
    put("diversity", bytes([int(r["threshold"] * 255)]) + (Z.join([seeds] + r["candidates"][:30])).encode())
for f in [root / "data/math_seed_500.jsonl", root / "demo/seeds.jsonl", root / "demo/eval.jsonl"]:
    put("jsonl", "\n".join(f.read_text().splitlines()[:20]) + "\n")
put("jsonl", '{"problem": "x", "answer": 3}\n\n{"question": "y", "answer": null}\n')
for f in list((root / "examples").glob("*.toml")) + list((root / "demo").glob("*.toml")):
    put("config", f.read_text())
put("config", json.dumps({"model": "m", "seeds": "s.jsonl", "steps": 3, "estimator": "rloo",
                          "n_samples_per_prompt": 4, "reward": "majority_vote"}))
tiny = fx / "tiny-llama"
put("safetensors", b"\0" + (tiny / "model.safetensors").read_bytes())
put("safetensors", b"\1" + (tiny / "config.json").read_bytes())
for mode, f in enumerate(["tokenizer.json", "chat_template.jinja", "tokenizer_config.json"]):
    put("tokenizer", bytes([mode]) + (tiny / f).read_bytes())
put("trainer_state", json.dumps({"step": 1, "rng_state": 7, "pool": ["a"], "fixed_cursor": 2,
                                 "order": [1, 0], "optimizer_step": 1, "history": [{"step": 1}]}))
put("trainer_state", json.dumps({"step": 0, "rng_state": 1, "pool": [], "fixed_cursor": 0,
                                 "order": [], "optimizer_step": 0, "history": []}))

# A GGUF of the tiny model (f32 tensors, llama metadata, byte-level tokenizer).
def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, payload):
    return gguf_string(key) + struct.pack("<I", typ) + payload


cfg = json.loads((tiny / "config.json").read_text())
tok = json.loads((tiny / "tokenizer.json").read_text())
vocab = sorted(tok["model"]["vocab"].items(), key=lambda x: x[1])
tokens = [t for t, _ in vocab]
for a in tok.get("added_tokens", []):
    if a["id"] == len(tokens):
        tokens.append(a["content"])
meta = [
    kv("general.architecture", 8, gguf_string("llama")),
    kv("llama.embedding_length", 4, struct.pack("<I", cfg["hidden_size"])),
    kv("llama.feed_forward_length", 4, struct.pack("<I", cfg["intermediate_size"])),
    kv("llama.block_count", 4, struct.pack("<I", cfg["num_hidden_layers"])),
    kv("llama.attention.head_count", 4, struct.pack("<I", cfg["num_attention_heads"])),
    kv("llama.attention.head_count_kv", 4, struct.pack("<I", cfg["num_key_value_heads"])),
    kv("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", cfg["rms_norm_eps"])),
    kv("tokenizer.ggml.model", 8, gguf_string("gpt2")),
    kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(tokens)) + b"".join(gguf_string(t) for t in tokens)),
    kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2)),
    kv("tokenizer.chat_template", 8, gguf_string((tiny / "chat_template.jinja").read_text())),
]
# Tensors: the safetensors file's, renamed to llama.cpp's names.
st = (tiny / "model.safetensors").read_bytes()
n = struct.unpack("<Q", st[:8])[0]
header = json.loads(st[8:8 + n])
data = st[8 + n:]
names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
per_layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
tensors = []
for name, info in header.items():
    if name == "__metadata__":
        continue
    g = names.get(name)
    if g is None:
        parts = name.split(".")
        layer, key = parts[2], ".".join(parts[3:-1])
        g = f"blk.{layer}.{per_layer[key]}.weight"
    b, e = info["data_offsets"]
    tensors.append((g, info["shape"], data[b:e]))
blob = b""
infos = b""
for g, shape, raw in tensors:
    infos += gguf_string(g) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in reversed(shape))
    infos += struct.pack("<IQ", 0, len(blob))
    blob += raw + b"\0" * ((-len(raw)) % 32)
head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + b"".join(meta) + infos
head += b"\0" * ((-len(head)) % 32)
put("gguf", head + blob)
print({d.name: len(list(d.iterdir())) for d in sorted(out.iterdir())})
