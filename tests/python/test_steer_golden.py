"""tests/python/test_steer_golden.py MELBO_RANK REPO GOLDEN - the Python package's bank.steer and
melbo-rank gen apply the same steering: for llama3 and qwen3, `melbo-rank gen --vector EXPR
--scale X` (and `--adapter K` on an adapter bank) with `--json --logits` gives the 32 greedy tokens
and the first generated position's logits (rel <= 1e-4) that `with bank.steer(model, ...)` gave
transformers' generate in tests/golden/make_steer_goldens.py, on the committed banks
tests/golden/data/steer_<model>[_adapter].bank.safetensors. No torch here: the goldens hold what
torch computed. Also: the committed banks are the ones the goldens were made from (sha256), and
melbo.Bank.vector(EXPR) * scale is, bit for bit, the vector steer added (vector.<run>).
"""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
from safetensors import safe_open

rank, repo, golden = sys.argv[1:4]
sys.path.insert(0, os.path.join(repo, "python"))
sys.dont_write_bytecode = True
import melbo  # noqa: E402

data = os.path.join(golden, "data")
fail = checks = 0


def check(cond, what):
    global fail, checks
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    fail += not cond
    checks += 1


help_text = subprocess.run([rank, "gen", "--help"], capture_output=True, text=True).stdout
has_logits = "--[no-]logits" in help_text or "--logits" in help_text
check(has_logits, "melbo-rank gen has --logits")
for name in ("llama3", "qwen3"):
    with safe_open(os.path.join(data, f"steer_{name}.golden.safetensors"), "np") as f:
        meta = f.metadata()
        g = {k: f.get_tensor(k) for k in f.keys()}
    runs = json.loads(meta["runs"])
    n_prompts = len([k for k in g if k.startswith("prompt.")])
    for bank_file, digest in json.loads(meta["banks"]).items():
        with open(os.path.join(data, bank_file), "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        check(got == digest, f"{name}: {bank_file} is the bank the goldens were made from")
    base = [rank, "gen", "--model", os.path.join(golden, "models", name), "--max-new-tokens",
            meta["max_new_tokens"], "--json"] + (["--logits"] if has_logits else [])
    for i in range(n_prompts):
        base += ["--prompt-ids", ",".join(str(int(x)) for x in g[f"prompt.{i}"])]
    calls = [("unsteered", ["--bank", os.path.join(data, runs[0]["bank"]), "--vector", "none"])]
    for r in runs:
        bank_path = os.path.join(data, r["bank"])
        if "vector" in r:
            v = melbo.Bank(bank_path).vector(r["vector"]) * np.float32(r["scale"])
            check(np.array_equal(v, g[f"vector.{r['run']}"]),
                  f"{name} {r['run']}: Bank.vector({r['vector']!r}) * {r['scale']:g} = the vector "
                  "steer added, bitwise")
            calls.append((r["run"], ["--bank", bank_path, "--vector", r["vector"], "--scale",
                                     repr(r["scale"])]))
        else:
            calls.append((r["run"], ["--bank", bank_path, "--adapter", r["adapter"]]))
    for run_name, extra in calls:
        p = subprocess.run(base + extra, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            check(False, f"{name} {run_name}: melbo-rank gen failed: {p.stderr.strip()[-400:]}")
            continue
        lines = [json.loads(x) for x in p.stdout.splitlines()]
        for j in lines:
            i = j["prompt"]
            want = g[f"tokens.{run_name}.{i}"].tolist()
            ok = j["token_ids"] == want
            what = f"{name} {run_name:15s} prompt {i}: {len(want)} tokens equal"
            if has_logits:
                ref = g[f"logits.{run_name}.{i}"].astype(np.float64)
                e = float(np.abs(np.array(j["logits"], np.float64) - ref).max() / np.abs(ref).max())
                ok = ok and e <= 1e-4
                what += f", first-step logits rel {e:.2g} (tol 1e-4)"
            check(ok, what if ok else what + f"; got {j['token_ids']}, want {want}")
        check(len(lines) == n_prompts, f"{name} {run_name}: {len(lines)} results")
print(f"{checks - fail} of {checks} checks passed")
sys.exit(1 if fail else 0)
