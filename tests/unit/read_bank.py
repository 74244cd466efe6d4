"""tests/unit/read_bank.py BANK N D STEPS R - a bank loads with PyPI safetensors + numpy (no torch)."""
import json
import sys

import numpy as np
from safetensors.numpy import load_file
from safetensors import safe_open

path, n, d, steps, radius = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
t = load_file(path)
with safe_open(path, "np") as f:
    meta = f.metadata()
v, obj = t["vectors"], t["objective"]
assert v.dtype == np.float32 and v.shape == (n, d), v.shape
assert obj.dtype == np.float32 and obj.shape == (n, steps), obj.shape
assert t["prompt_ids"].dtype == np.int32 and t["prompt_lengths"].dtype == np.int32
assert t["prompt_ids"].shape[0] == t["prompt_lengths"].shape[0]
norms = np.linalg.norm(v.astype(np.float64), axis=1)
assert np.allclose(norms, radius, rtol=1e-5), norms
g = v.astype(np.float64) @ v.astype(np.float64).T / radius**2
assert np.abs(g - np.eye(n)).max() < 1e-5
need = ["format", "format_version", "model_name", "model_fingerprint", "architecture", "d_model",
        "n_layers", "source_layer", "target_layer", "radius", "p", "q", "loss_axis", "target_tokens",
        "steps", "lr", "betas", "seed", "orthogonal", "wave", "chat_format", "prompts", "generation",
        "completions", "created", "job_id", "melbo_version"]
missing = [k for k in need if k not in meta]
assert not missing, missing
assert meta["format"] == "melbo-bank" and int(meta["d_model"]) == d and float(meta["radius"]) == radius
assert isinstance(json.loads(meta["prompts"]), list) and json.loads(meta["betas"]) == [0.9, 0.98]
print(f"ok   python reads the bank: vectors {v.shape}, objective {obj.shape}, {len(meta)} metadata keys")
