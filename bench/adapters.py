#!/usr/bin/env python3
"""CPU adapter benchmark (issue 17): the PyTorch notebook loop against melbo-rank train's waves.

usage: python3 bench/adapters.py [--melbo build/rank/melbo-rank] [--model-dir DIR]
           [--waves 16] [--adapters 16] [--steps 10] [--ref-adapters 2] [--ref-steps 4]
           [--warmup 1] [--threads 2] [--attn sdpa|eager] [--rank 64] [--alpha 0.35]
           [--skip-melbo]

Workload: SmolLM2-135M's shape with random weights (bench/smollm_shape.py: hidden 576, 30 layers,
9 heads / 3 KV heads, MLP width 1536, vocab 49152, tied embeddings), fp32, source layer s = 7,
target layer t = 22, one prompt of 32 random tokens, rank-64 adapters on block 7's
`mlp.down_proj` with α = 0.35 (the notebook's), p = q = 2 over the last 3 tokens (the notebook's
objective), torch.set_num_threads(2) and set_num_interop_threads(1).

  notebook  the adapter notebook's loop as tests/golden/make_adapter_goldens.py implements it
            (train_adapters: one adapter at a time, a fresh AdamW(amsgrad) per adapter, the WHOLE
            model run every step with output_hidden_states=True, LM head included, per-column
            tangent projection, column renormalisation): --ref-adapters x --ref-steps after
            --warmup untimed steps; each step timed on its own (a callback of train_adapters), so
            the once-per-call unsteered forward is not counted; mean over the steps.
  melbo     `melbo-rank train --adapter-rank 64 --vectors N --wave W --no-generate` for every W in
            --waves, with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = --threads, on the same model
            (saved once with save_pretrained) and the same prompt. Its seconds per adapter-step
            are read from its closing line `train: N adapter-steps in X s (Y s per adapter-step)`
            (setup and loading excluded). melbo gets raw draws (--init) whose first --ref-adapters
            are the notebook's, and the script prints how far its first objective steps are from
            the notebook's (a check that both time the same computation).

The table gives seconds per adapter-step (one adapter, one step, one prompt: forward, backward
and update) and the ratio notebook / melbo. Issue 17's gate: >= 3x at a wave of 16 (target 10x).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--melbo", default=os.path.join(ROOT, "build", "rank", "melbo-rank"),
                    help="melbo-rank binary (default build/rank/melbo-rank)")
    ap.add_argument("--model-dir", default=None,
                    help="save the random model here (reused across runs if it already holds it)")
    ap.add_argument("--waves", default="16", help="comma-separated melbo wave sizes (default 16)")
    ap.add_argument("--adapters", type=int, default=16, help="adapters per melbo run (default 16)")
    ap.add_argument("--steps", type=int, default=10, help="steps per melbo run (default 10)")
    ap.add_argument("--ref-adapters", type=int, default=2)
    ap.add_argument("--ref-steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1, help="untimed notebook warm-up steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--alpha", type=float, default=0.35)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-melbo", action="store_true")
    return ap.parse_args()


args = parse_args()
os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

import torch  # noqa: E402
import transformers  # noqa: E402

from smollm_shape import build_model, log, save_once, setup_torch  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
from make_adapter_goldens import parse_slice, train_adapters  # noqa: E402

S, T_LAYER, P, Q, TARGET_TOKENS = 7, 22, 2.0, 2.0, "-3:"


def draws(n, r, dm, d):
    """Raw draws (standard normal, not normalised) for n adapters, as the init file holds them."""
    g = torch.Generator().manual_seed(args.seed + 1)
    A = torch.zeros(n, r, dm)
    B = torch.zeros(n, d, r)
    for k in range(n):
        A[k] = torch.randn(r, dm, generator=g)
        B[k] = torch.randn(d, r, generator=g)
    return A, B


# --------------------------------------------------------------------------- notebook loop

def bench_notebook(model, ids, raw_A, raw_B):
    """Seconds per adapter-step of the notebook loop: every step timed on its own (from its start
    to the next one's), so the once-per-call unsteered forward is not counted."""
    idx = parse_slice(TARGET_TOKENS)
    K = args.ref_adapters
    marks = []

    def run(k, steps, mark=None):
        return train_adapters(model, [ids], S, T_LAYER, args.rank, args.alpha, P, Q, idx,
                              raw_A[:k], raw_B[:k], steps, on_step=mark)[2]

    if args.warmup > 0:
        run(1, args.warmup)
    t0 = time.perf_counter()
    curves = run(K, args.ref_steps, lambda k, step: marks.append((k, step, time.perf_counter())))
    t_all = time.perf_counter() - t0
    dts = sorted(b[2] - a[2] for a, b in zip(marks, marks[1:]) if a[0] == b[0])
    assert len(dts) == K * args.ref_steps, len(dts)
    per = sum(dts) / len(dts)
    log(f"notebook: {K} adapters x {args.ref_steps} steps in {t_all:.2f} s, of which steps {sum(dts):.2f} s "
        f"= {per:.4f} s per adapter-step (fastest step {dts[0]:.4f} s, median {dts[len(dts) // 2]:.4f} s, "
        f"slowest {dts[-1]:.4f} s); F {float(curves[0, 0]):.6g} -> {float(curves[0, -1]):.6g}")
    return per, curves


# --------------------------------------------------------------------------- melbo

def melbo_supports_adapters(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return False
    try:
        r = subprocess.run([path, "train", "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "--adapter-rank" in (r.stdout + r.stderr)


def bench_melbo(model, ids, raw_A, raw_B, ref_curves, wave, model_dir, tmp):
    from safetensors.torch import load_file, save_file
    init = os.path.join(tmp, "init.safetensors")
    if not os.path.exists(init):
        save_file({"lora_A": raw_A.contiguous(), "lora_B": raw_B.contiguous()}, init)
    out = os.path.join(tmp, f"w{wave}.bank.safetensors")
    cmd = [args.melbo, "train", "--model", model_dir, "--prompt-ids", ",".join(str(int(x)) for x in ids),
           "--source-layer", str(S), "--target-layer", str(T_LAYER), "--adapter-rank", str(args.rank),
           "--adapter-alpha", "%g" % args.alpha, "--p", "%g" % P, "--q", "%g" % Q,
           "--target-tokens", TARGET_TOKENS, "--steps", str(args.steps), "--vectors", str(args.adapters),
           "--wave", str(wave), "--init", init, "--no-generate", "--out", out]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    log("melbo: " + " ".join(cmd))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        log(f"melbo: wave {wave} failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
        return None
    text = r.stderr + r.stdout
    m = re.search(r"train:\s*(\d+)\s+adapter-steps\s+in\s+([0-9.eE+-]+)\s*s\s*\(([0-9.eE+-]+)\s*s per "
                  r"adapter-step\)", text)
    if m is None:
        log(f"melbo: wave {wave}: no 'train: ... per adapter-step' line; output tail:\n{text[-1000:]}")
        return None
    per = float(m.group(3))
    log(f"melbo: wave {wave}: {m.group(0)} (wall {wall:.2f} s incl. loading)")
    bank = load_file(out)
    obj = bank["objective"].double()
    k, n = min(ref_curves.shape[0], obj.shape[0]), min(ref_curves.shape[1], obj.shape[1])
    ref_curves = ref_curves[:k]
    e = float(((obj[:k, :n] - ref_curves[:, :n].double()).abs().max(dim=1).values /
               ref_curves[:, :n].double().abs().max(dim=1).values).max())
    log(f"melbo: wave {wave}: objective of adapters 0..{k - 1}, steps 0..{n - 1} vs the notebook loop: "
        f"rel {e:.1e}")
    return per


# --------------------------------------------------------------------------- main

def main():
    setup_torch(args.threads)
    t_start = time.perf_counter()
    model = build_model(args.seed, args.attn)
    cfg = model.config
    g = torch.Generator().manual_seed(args.seed + 4)
    ids = torch.randint(0, cfg.vocab_size, (args.tokens,), generator=g)
    waves = [int(w) for w in args.waves.split(",") if w]
    n = max(args.adapters, args.ref_adapters)
    raw_A, raw_B = draws(n, args.rank, cfg.intermediate_size, cfg.hidden_size)
    log(f"workload: SmolLM2-135M shape, random weights (seed {args.seed}), {args.attn} attention, fp32, "
        f"s={S} t={T_LAYER}, adapters r={args.rank} alpha={args.alpha:g} on mlp.down_proj, p={P:g} "
        f"q={Q:g} target tokens {TARGET_TOKENS}, 1 prompt of {args.tokens} tokens, {args.threads} threads")

    ref, ref_curves = bench_notebook(model, ids, raw_A, raw_B)
    res = {}
    if args.skip_melbo:
        log("melbo: skipped (--skip-melbo)")
    elif not melbo_supports_adapters(args.melbo):
        log(f"melbo: skipped ({args.melbo} missing or without --adapter-rank)")
    else:
        tmp = tempfile.mkdtemp(prefix="melbo_adapter_bench_")
        try:
            d = args.model_dir or os.path.join(tmp, "model")
            save_once(model, d, "adapters_bench.seed", f"seed={args.seed} transformers={transformers.__version__}\n")
            for w in waves:
                per = bench_melbo(model, ids, raw_A[:args.adapters], raw_B[:args.adapters], ref_curves, w, d, tmp)
                if per is not None:
                    res[w] = per
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    log(f"\ntorch {torch.__version__}, {args.threads} threads; r = {args.rank}, s = {S}, t = {T_LAYER}, "
        f"{args.tokens}-token prompt")
    log(f"{'implementation':28s} {'s/adapter-step':>15s} {'notebook / this':>16s}")
    log(f"{'PyTorch notebook loop':28s} {ref:15.5f} {'1.0x':>16s}")
    for w, per in res.items():
        log(f"{'melbo --wave ' + str(w):28s} {per:15.5f} {ref / per:15.1f}x")
    if 16 in res:
        ratio = ref / res[16]
        verdict = "meets the target (10x)" if ratio >= 10 else ("passes the gate (3x)" if ratio >= 3 else
                                                               "FAILS the gate (3x)")
        log(f"wave 16: {ratio:.1f}x the notebook loop per adapter-step: {verdict}")
    log(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
