"""The memory model `ssp check` plans with (actors/memory.py) against the peak memory one learner rank really
reaches: a DeepSpeed ZeRO-2 TrainEngine taking two steps, in a fresh process each (the peak RSS, VmHWM, above what the
process held before the engine started), at three sizes where a different term dominates: the full-vocabulary logits,
the activations without checkpointing, and with it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = r"""
import json, socket, sys
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from actors.ds_config import init_process_group
from actors.memory import ModelShape, learner_terms, total
from actors.train_engine import TrainEngine, token_logprobs

torch.set_num_threads(1)
spec, out = json.loads(sys.argv[1]), sys.argv[2]
m = spec["model"]
torch.manual_seed(0)
Qwen2ForCausalLM(Qwen2Config(vocab_size=m["vocab"], hidden_size=m["hidden"], num_hidden_layers=m["layers"],
                             num_attention_heads=m["heads"], num_key_value_heads=m["kv"], intermediate_size=m["inter"],
                             tie_word_embeddings=True, use_sliding_window=False)).save_pretrained(out)
with socket.socket() as s:
    s.bind(("", 0))
    port = s.getsockname()[1]
init_process_group("cpu", 0, 1, "127.0.0.1", port)
def vm(key):  # kB from /proc/self/status; ru_maxrss would carry the parent's peak across exec
    return int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith(key + ":")))
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from the current size
before = vm("VmRSS")
eng = TrainEngine(out, device="cpu", zero_stage=2, dtype="float32", grad_clip=1.0, lr=1e-4, weight_decay=0.0,
                  schedule=lambda s: 1.0, seed=0, rank=0, world=1, gradient_checkpointing=spec["ckpt"])
ids = torch.randint(0, m["vocab"], (spec["tokens"] // 256, 256))
for _ in range(2):
    logp, ent = token_logprobs(eng, ids, torch.ones_like(ids), True, chunk=spec["chunk"])
    eng.backward(-logp.mean())
    eng.step()
measured = (vm("VmHWM") - before) * 1024
shape = ModelShape.from_hf(json.load(open(f"{out}/config.json")))
terms = learner_terms(shape, dtype="float32", zero_stage=2, ranks=1, tokens=spec["tokens"], chunk=spec["chunk"],
                      checkpointing=spec["ckpt"], reference=False)
print(json.dumps({"measured": measured, "predicted": total(terms), "largest": max(terms, key=lambda t: t.bytes).name}))
"""

MID = {"vocab": 4000, "hidden": 512, "layers": 4, "inter": 1408, "heads": 8, "kv": 2}


@pytest.mark.parametrize("spec, dominant", [
    ({"model": {"vocab": 32000, "hidden": 128, "layers": 2, "inter": 352, "heads": 4, "kv": 2}, "tokens": 2048,
      "chunk": 0, "ckpt": False}, "logits"),
    ({"model": MID, "tokens": 3072, "chunk": 512, "ckpt": False}, "activations"),
    ({"model": MID, "tokens": 3072, "chunk": 512, "ckpt": True}, "activations"),
], ids=["logits", "activations", "checkpointed"])
def test_the_memory_model_matches_the_measured_peak(tmp_path, spec, dominant):
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(spec), str(tmp_path / "m")], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    ratio = got["measured"] / got["predicted"]
    assert got["largest"] == dominant, got
    print(f"{dominant}{' (checkpointed)' if spec['ckpt'] else ''}: measured {got['measured'] / 2**20:.0f} MiB, model {got['predicted'] / 2**20:.0f} MiB, ratio {ratio:.3f}")
    assert 0.8 <= ratio <= 1.25, f"measured {got['measured'] / 2**20:.0f} MiB vs model {got['predicted'] / 2**20:.0f} MiB"
