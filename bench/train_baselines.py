#!/usr/bin/env python3
"""CPU training benchmark: the two PyTorch baselines against melbo-rank train, same workload.

usage: python3 bench/train_baselines.py [--melbo build/rank/melbo-rank] [--model-dir DIR]
           [--vectors 64] [--steps 20] [--ref-vectors 2] [--ref-steps 5] [--warmup 2]
           [--threads 2] [--attn sdpa|eager] [--skip-reference] [--skip-batched] [--skip-melbo]

Workload: SmolLM2-135M's shape (hidden 576, 30 layers, 9 heads / 3 KV heads, MLP 1536, vocab
49152, rope theta 1e5, tied embeddings) with random weights (seeded), fp32, source layer s = 7,
target layer t = 22, one prompt of 32 random tokens, p = 2, q = 1, loss axis token, all tokens,
R = 4, torch.set_num_threads(2) and set_num_interop_threads(1).

  reference  the MELBO reference algorithm (tests/golden/make_train_goldens.py: one vector at a
             time, orthogonal, the WHOLE model run every step with output_hidden_states=True,
             LM head included, as published); --ref-vectors x --ref-steps after --warmup steps.
  batched    batched PyTorch (as batched-melbo HEAD's SlicedModel): blocks 0..s run once, then
             each step only decoder layers s+1..t-1 on B stacked copies of X + θ_b (B = --vectors
             as one batch), loss summed, backward, AdamW(amsgrad) over the [B, d] parameter with
             the tangent projection and renormalisation, no orthogonality.
  melbo      `melbo-rank train ... --vectors B --wave B --no-orthogonal` with OMP_NUM_THREADS =
             OPENBLAS_NUM_THREADS = --threads on the same model (saved once with save_pretrained).
             When batched ran, melbo gets its raw draws (--init) and the script prints how far the
             bank (vectors, objective) is from batched PyTorch's θ after the same number of steps.

Every number is seconds per vector-step (one vector, one step, one prompt: forward + backward +
update).
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
    ap.add_argument("--vectors", type=int, default=64, help="batch of vectors for batched/melbo")
    ap.add_argument("--steps", type=int, default=20, help="timed steps for batched/melbo")
    ap.add_argument("--ref-vectors", type=int, default=2)
    ap.add_argument("--ref-steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    ap.add_argument("--max-step-s", type=float, default=10.0,
                    help="if a batched warm-up step takes longer, time 5 steps instead of --steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--skip-batched", action="store_true")
    ap.add_argument("--skip-melbo", action="store_true")
    return ap.parse_args()


args = parse_args()
os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

import torch  # noqa: E402
import transformers  # noqa: E402

from smollm_shape import build_model, log, save_once, setup_torch  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
from make_train_goldens import train_reference  # noqa: E402

S, T_LAYER, RADIUS, P, Q = 7, 22, 4.0, 2.0, 1.0
LR, BETAS, EPS = 1e-3, (0.9, 0.98), 1e-8


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


# --------------------------------------------------------------------------- (a) reference

def bench_reference(model, ids):
    idx = slice(None)
    d = model.config.hidden_size
    g = torch.Generator().manual_seed(args.seed + 1)
    raw = torch.randn(max(args.ref_vectors, 1), d, generator=g)

    def run(k, steps):
        t0 = time.perf_counter()
        v, c, _ = train_reference(model, [ids], S, T_LAYER, RADIUS, P, Q, "token", idx, raw[:k], steps)
        return time.perf_counter() - t0, c

    run(1, args.warmup)  # warm-up
    t_setup, _ = run(args.ref_vectors, 0)  # the once-per-call unsteered forward, not a step
    t_all, curves = run(args.ref_vectors, args.ref_steps)
    n = args.ref_vectors * args.ref_steps
    per = (t_all - t_setup) / n
    log(f"reference: {args.ref_vectors} vectors x {args.ref_steps} steps in {t_all:.2f} s "
        f"(minus {t_setup:.2f} s for the unsteered forward) = {per:.4f} s per vector-step; "
        f"F {float(curves[0, 0]):.6g} -> {float(curves[0, -1]):.6g}")
    return per


# --------------------------------------------------------------------------- (b) batched

class Span:
    """Decoder layers s+1..t-1 of an HF Llama, called directly."""

    def __init__(self, model, T):
        self.layers = model.model.layers[S + 1:T_LAYER]
        pos = torch.arange(T)[None]
        x = torch.zeros(1, T, model.config.hidden_size)
        self.pos = pos
        self.pe = model.model.rotary_emb(x, position_ids=pos)
        if model.config._attn_implementation == "eager":  # eager adds the mask; None = no mask at all
            self.mask = torch.full((T, T), float("-inf")).triu(1)[None, None]
        else:  # sdpa: None means is_causal=True
            self.mask = None

    def __call__(self, h):
        for layer in self.layers:
            h = layer(h, attention_mask=self.mask, position_ids=self.pos, position_embeddings=self.pe)
            if isinstance(h, tuple):
                h = h[0]
        return h


def bench_batched(model, ids):
    T = ids.shape[0]
    d = model.config.hidden_size
    with torch.no_grad():
        hs = model(input_ids=ids[None], output_hidden_states=True, use_cache=False).hidden_states
        X, Y = hs[S + 1].clone(), hs[T_LAYER].clone()
    span = Span(model, T)
    # the span must reproduce the full model: unsteered, and steered by a hook on block s
    with torch.no_grad():
        e0 = rel(span(X), Y)
        th = torch.randn(d, generator=torch.Generator().manual_seed(args.seed + 2))
        th = RADIUS * th / th.norm()
        hook = model.model.layers[S].register_forward_hook(
            lambda m, a, o: (o[0] + th,) + tuple(o[1:]) if isinstance(o, tuple) else o + th)
        try:
            ys = model(input_ids=ids[None], output_hidden_states=True, use_cache=False).hidden_states[T_LAYER]
        finally:
            hook.remove()
        e1 = rel(span(X + th), ys)
    log(f"batched: span layers {S + 1}..{T_LAYER - 1} vs full model hidden_states[{T_LAYER}]: "
        f"rel {e0:.1e} unsteered, {e1:.1e} steered")
    assert e0 <= 1e-5 and e1 <= 1e-5, (e0, e1)

    B = args.vectors
    g = torch.Generator().manual_seed(args.seed + 3)
    init = torch.randn(B, d, generator=g)
    theta = torch.nn.Parameter(RADIUS * init / init.norm(dim=1, keepdim=True))
    opt = torch.optim.AdamW([theta], lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0, amsgrad=True)
    Xb = X.expand(B, T, d)

    def step():
        opt.zero_grad()
        out = span(Xb + theta[:, None, :])
        F = (out - Y).norm(dim=-1).pow(P).sum(dim=-1).pow(1.0 / Q)  # [B]
        (-F.sum()).backward()
        with torch.no_grad():
            gr = theta.grad
            gr -= (gr * theta).sum(dim=1, keepdim=True) * theta / RADIUS ** 2
        opt.step()
        with torch.no_grad():
            theta.copy_(RADIUS * theta / theta.norm(dim=1, keepdim=True).clamp_min(1e-12))
        thetas.append(theta.detach().clone())
        return F.detach()

    curves, thetas = [], []  # F before, θ after every step (warm-up included)
    slowest = 0.0
    for _ in range(args.warmup):
        t0 = time.perf_counter()
        curves.append(step())
        slowest = max(slowest, time.perf_counter() - t0)
    steps = args.steps
    if slowest > args.max_step_s and steps > 5:
        log(f"batched: a warm-up step took {slowest:.1f} s > {args.max_step_s:g} s: timing 5 steps "
            f"instead of {steps}")
        steps = 5
    t0 = time.perf_counter()
    for _ in range(steps):
        curves.append(step())
    dt = time.perf_counter() - t0
    per = dt / (B * steps)
    curves = torch.stack(curves, 1)  # [B, warmup + steps], F before each update
    log(f"batched: {B} vectors x {steps} steps in {dt:.2f} s = {per:.5f} s per vector-step "
        f"({dt / steps:.2f} s per step); mean F {float(curves[:, 0].mean()):.6g} -> "
        f"{float(curves[:, -1].mean()):.6g}")
    # melbo runs `steps` steps from the same draws: compare with θ after `steps` steps in all
    return per, steps, dict(init=init, vectors=thetas[steps - 1], objective=curves[:, :steps])


# --------------------------------------------------------------------------- (c) melbo

def melbo_supports_train(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return False
    try:
        r = subprocess.run([path, "train", "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    text = r.stdout + r.stderr
    return r.returncode == 0 and "unknown command" not in text


def ensure_model_dir(model, d):
    save_once(model, d, "train_baselines.seed", f"seed={args.seed} transformers={transformers.__version__}\n")
    return d


def bench_melbo(model, ids, steps, check=None):
    if args.skip_melbo:
        log("melbo: skipped (--skip-melbo)")
        return None
    if not melbo_supports_train(args.melbo):
        log("melbo: skipped (binary missing or train unsupported)")
        return None
    tmp = tempfile.mkdtemp(prefix="melbo_train_bench_")
    try:
        d = ensure_model_dir(model, args.model_dir or os.path.join(tmp, "model"))
        out = os.path.join(tmp, "x.bank.safetensors")
        B = args.vectors
        extra = []
        if check is not None:  # same raw draws as the batched run: compare after `steps` steps
            from safetensors.torch import save_file
            init = os.path.join(tmp, "init.safetensors")
            save_file({"vectors": check["init"].float().contiguous()}, init)
            extra = ["--init", init]
        cmd = [args.melbo, "train", "--model", d, "--prompt-ids", ",".join(str(int(x)) for x in ids),
               "--source-layer", str(S), "--target-layer", str(T_LAYER), "--radius", "%g" % RADIUS,
               "--p", "%g" % P, "--q", "%g" % Q, "--steps", str(steps), "--vectors", str(B),
               "--wave", str(B), "--no-orthogonal", "--no-generate", "--out", out] + extra
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
        log("melbo: " + " ".join(cmd))
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            log(f"melbo: skipped (melbo-rank train failed, exit {r.returncode}):\n{r.stderr[-2000:]}")
            return None
        text = r.stderr + r.stdout
        m = re.search(r"train:\s*(\d+)\s+vector-steps\s+in\s+([0-9.eE+-]+)\s*s\s*\(([0-9.eE+-]+)\s*s per vector-step\)",
                      text)
        if m:
            per = float(m.group(3))
            log(f"melbo: {m.group(0)} (wall {wall:.2f} s incl. loading)")
        else:
            lm = re.search(r"load\w*\W.*?([0-9.]+)\s*s\b", text)
            load = float(lm.group(1)) if lm else 0.0
            per = (wall - load) / (B * steps)
            log(f"melbo: no 'train: ... per vector-step' line; wall {wall:.2f} s - load {load:.2f} s "
                f"over {B}x{steps} = {per:.5f} s per vector-step")
        try:
            from safetensors.torch import load_file
            bank = load_file(out)
            obj = bank["objective"]
            log(f"melbo: bank {tuple(bank['vectors'].shape)} vectors, mean F {float(obj[:, 0].mean()):.6g} -> "
                f"{float(obj[:, -1].mean()):.6g}")
            if check is not None:
                ev = rel(bank["vectors"], check["vectors"])
                eo = rel(obj, check["objective"])
                log(f"melbo vs batched PyTorch (same init, {steps} steps): vectors rel {ev:.1e}, "
                    f"objective rel {eo:.1e}")
        except Exception as e:  # the comparison is informative only
            log(f"melbo: could not read the bank: {e}")
        return per
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- main

def main():
    setup_torch(args.threads)
    t_start = time.perf_counter()
    model = build_model(args.seed, args.attn)
    g = torch.Generator().manual_seed(args.seed + 4)
    ids = torch.randint(0, model.config.vocab_size, (args.tokens,), generator=g)
    log(f"workload: SmolLM2-135M shape, random weights (seed {args.seed}), {args.attn} attention, fp32, "
        f"s={S} t={T_LAYER} R={RADIUS:g} p={P:g} q={Q:g} axis token, 1 prompt of {args.tokens} tokens, "
        f"{args.threads} threads")

    res = {}
    if not args.skip_reference:
        res["reference"] = bench_reference(model, ids)
    steps, check = args.steps, None
    if not args.skip_batched:
        res["batched"], steps, check = bench_batched(model, ids)
    m = bench_melbo(model, ids, steps, check)
    if m is not None:
        res["melbo"] = m

    log(f"\n{'implementation':15s} {'s/vector-step':>14s} {'vs melbo':>10s}")
    for k in ("reference", "batched", "melbo"):
        if k not in res:
            continue
        ratio = f"{res[k] / res['melbo']:9.1f}x" if "melbo" in res else f"{'-':>10s}"
        log(f"{k:15s} {res[k]:14.5f} {ratio}")
    if "reference" in res and "batched" in res:
        log(f"(reference / batched = {res['reference'] / res['batched']:.1f}x)")
    log(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
