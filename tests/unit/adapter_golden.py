"""tests/unit/adapter_golden.py - the adapter parity tests' Python side (safetensors + numpy only).

  adapter_golden.py args GOLDEN_DIR CASE [MODEL]
      prints the `melbo-rank train` arguments of golden case CASE (one per line, without
      --wave/--out), read from data/adapter_CASE.golden.safetensors; MODEL overrides the model
      directory (e.g. qwen2 for the qwen1 case: same numbers, tests/golden/README.md)
  adapter_golden.py compare BANK GOLDEN_FILE LABEL [MODULE]
      compares the bank's lora_A, lora_B and objective with the golden: relative Frobenius error
      per adapter <= 1e-4 on each factor, max_t |x - g| / max_t |g| per curve <= 1e-5; checks the
      bank is an adapter bank (kind, adapter_rank, adapter_alpha, adapter_module = MODULE or the
      golden's, d_mlp, orthogonal=false, no radius, no `vectors` tensor)
  adapter_golden.py completions BANK K N_RANDOM N_PROMPTS
      the completions JSON of an adapter bank has "adapters" (K x N_PROMPTS), "unsteered"
      (N_PROMPTS) and "random" (N_RANDOM x N_PROMPTS), and random_lora_A/B have the factors' shapes
  adapter_golden.py badinit GOLDEN_INIT OUT WHICH
      writes a copy of an adapter init file with a broken shape (WHICH = A or B: one more row)
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

TOL_FACTORS = 1e-4
TOL_CURVES = 1e-5


def meta_of(path):
    with safe_open(path, "np") as f:
        return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}


def cmd_args(golden_dir, case, model=None):
    meta, t = meta_of(f"{golden_dir}/data/adapter_{case}.golden.safetensors")
    out = ["--model", f"{golden_dir}/models/{model or meta['model']}"]
    for i in range(int(meta["n_prompts"])):
        out += ["--prompt-ids", ",".join(str(int(x)) for x in t[f"prompt_ids.{i}"])]
    out += ["--source-layer", meta["source_layer"], "--target-layer", meta["target_layer"],
            "--adapter-rank", meta["adapter_rank"], "--adapter-alpha", meta["adapter_alpha"],
            "--p", meta["p"], "--q", meta["q"], "--loss-axis", meta["loss_axis"],
            "--target-tokens", meta["target_tokens"], "--steps", meta["steps"],
            "--vectors", meta["adapters"], "--init", f"{golden_dir}/data/{meta['init_file']}"]
    print("\n".join(out))
    return 0


def cmd_compare(bank, golden, label, module=None):
    bm, bt = meta_of(bank)
    gm, gt = meta_of(golden)
    K, r, dm, d = (int(gm["adapters"]), int(gm["adapter_rank"]), int(gm["d_mlp"]), int(gm["d_model"]))
    steps = int(gm["steps"])
    problems = []
    for name, shape in (("lora_A", (K, r, dm)), ("lora_B", (K, d, r)), ("objective", (K, steps))):
        x = bt.get(name)
        if x is None:
            problems.append(f"no tensor {name}")
        elif x.dtype != np.float32 or x.shape != shape:
            problems.append(f"{name} is {x.dtype} {list(x.shape)}, not float32 {list(shape)}")
    if problems:
        print(f"FAIL {label}: " + "; ".join(problems))
        return 1
    ok = True
    worst = {}
    for name in ("lora_A", "lora_B"):
        x, g = bt[name].astype(np.float64), gt[name].astype(np.float64)
        e = [float(np.linalg.norm(x[k] - g[k]) / np.linalg.norm(g[k])) for k in range(K)]
        k = int(np.argmax(e))
        worst[name] = (e[k], k)
        ok &= e[k] <= TOL_FACTORS
    x, g = bt["objective"].astype(np.float64), gt["objective"].astype(np.float64)
    e = [float(np.abs(x[k] - g[k]).max() / np.abs(g[k]).max()) for k in range(K)]
    k = int(np.argmax(e))
    worst["objective"] = (e[k], k)
    ok &= e[k] <= TOL_CURVES
    desc = ", ".join(f"{n} rel {v:.2e} (adapter {k})" for n, (v, k) in worst.items())
    if not ok:  # say where: the first adapter and step that is off
        xo, go = bt["objective"], gt["objective"]
        k = worst["objective"][1]
        s = int(np.argmax(np.abs(xo[k].astype(np.float64) - go[k]) / np.abs(go[k]).max()))
        desc += (f"; objective[{k}] step 0: {xo[k, 0]:.9g} vs {go[k, 0]:.9g}, step {s}: "
                 f"{xo[k, s]:.9g} vs {go[k, s]:.9g}, last: {xo[k, -1]:.9g} vs {go[k, -1]:.9g}")
    print(f"{'ok  ' if ok else 'FAIL'} {label}: {desc} (tol {TOL_FACTORS:g} / {TOL_CURVES:g})")

    # the bank is an adapter bank (the shared contract)
    want = {"kind": "adapter", "adapter_rank": str(r), "adapter_module": module or gm["adapter_module"],
            "d_mlp": str(dm), "orthogonal": "false"}
    bad = [f"{k}={bm.get(k)!r} (want {v!r})" for k, v in want.items() if bm.get(k) != v]
    try:
        if float(bm.get("adapter_alpha", "nan")) != float(gm["adapter_alpha"]):
            bad.append(f"adapter_alpha={bm.get('adapter_alpha')!r} (want {gm['adapter_alpha']})")
    except ValueError:
        bad.append(f"adapter_alpha={bm.get('adapter_alpha')!r}")
    if "radius" in bm:
        bad.append(f"radius={bm['radius']!r} present")
    if "vectors" in bt:
        bad.append("a 'vectors' tensor present")
    if bad:
        print(f"FAIL {label}: bank metadata: " + "; ".join(bad))
        ok = False
    return 0 if ok else 1


def cmd_completions(bank, K, n_random, n_prompts):
    bm, bt = meta_of(bank)
    problems = []
    try:
        c = json.loads(bm["completions"])
    except (KeyError, ValueError) as e:
        print(f"FAIL completions: metadata 'completions' unreadable: {e!r}")
        return 1
    if "vectors" in c:
        problems.append("completions has 'vectors'")

    def shape_ok(x, n, m):
        return isinstance(x, list) and len(x) == n and all(isinstance(y, list) and len(y) == m and
                                                           all(isinstance(s, str) for s in y) for y in x)
    if not shape_ok(c.get("adapters"), K, n_prompts):
        problems.append(f"'adapters' is not {K} x {n_prompts} texts")
    u = c.get("unsteered")
    if not (isinstance(u, list) and len(u) == n_prompts and all(isinstance(s, str) for s in u)):
        problems.append(f"'unsteered' is not {n_prompts} texts")
    if not shape_ok(c.get("random"), n_random, n_prompts):
        problems.append(f"'random' is not {n_random} x {n_prompts} texts")
    A, B = bt.get("lora_A"), bt.get("lora_B")
    RA, RB = bt.get("random_lora_A"), bt.get("random_lora_B")
    if A is None or B is None or RA is None or RB is None:
        problems.append("missing lora_A/lora_B/random_lora_A/random_lora_B")
    else:
        if RA.shape != (n_random,) + A.shape[1:] or RB.shape != (n_random,) + B.shape[1:]:
            problems.append(f"random factors {list(RA.shape)}, {list(RB.shape)}")
        else:
            na = np.linalg.norm(RA.astype(np.float64), axis=1)
            nb = np.linalg.norm(RB.astype(np.float64), axis=1)
            if max(np.abs(na - 1).max(), np.abs(nb - 1).max()) > 1e-5:
                problems.append("random adapters' columns are not unit")
    if problems:
        print("FAIL completions: " + "; ".join(problems))
        return 1
    steered = sum(x != y for row in c["adapters"] for x, y in zip(row, c["unsteered"]))
    print(f"ok   completions: {K} adapters x {n_prompts} prompts, unsteered, {n_random} random adapters "
          f"(unit columns); {steered} of {K * n_prompts} adapter completions differ from the unsteered")
    return 0


def cmd_badinit(src, out, which):
    _, t = meta_of(src)
    a, b = t["lora_A"], t["lora_B"]
    if which == "A":
        a = np.concatenate([a, a[:, :1]], axis=1)
    else:
        b = np.concatenate([b, b[:, :1]], axis=1)
    save_file({"lora_A": np.ascontiguousarray(a), "lora_B": np.ascontiguousarray(b)}, out)
    return 0


def main(argv):
    cmd = argv[1]
    if cmd == "args":
        return cmd_args(*argv[2:])
    if cmd == "compare":
        return cmd_compare(*argv[2:])
    if cmd == "completions":
        return cmd_completions(argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    if cmd == "badinit":
        return cmd_badinit(*argv[2:])
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
