#!/usr/bin/env python3
"""Reference-algorithm goldens for unsupervised steering ADAPTERS (method.md §3, issue 17).

Run by hand from the repository root (never by CI), after make_goldens.py has written the tiny
models:

    python3 tests/golden/make_adapter_goldens.py

This is an independent PyTorch implementation of the adapter notebook's loop (NB-adapter,
method.md §3), in fp32 on the CPU with eager attention and frozen model weights: adapters trained
one at a time, each a rank-r LoRA on the MLP output projection of decoder block s
(`model.model.layers[s].mlp.down_proj`; `mlp.c_proj` in the Qwen-1 layout), written here as a
forward hook, y = W x + (α/r)·B·(A x), instead of through PEFT.  For adapter k:

    A = normalize(A_raw[k], dim=0)  [r, d_mlp]   (every column of A, length r, has unit norm)
    B = normalize(B_raw[k], dim=0)  [d, r]       (every column of B, length d, has unit norm)
    opt = torch.optim.AdamW([A, B], lr=1e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=0,
                            amsgrad=True)                                    (fresh per adapter)
    each step: zero grads; per prompt a WHOLE-model forward with the LoRA active, F_i from
    hidden_states[t] over the target tokens, (-F_i).backward() (gradients accumulate); the
    recorded objective is Σ_i F_i (positive, before the update); G[:, n] -= (G[:, n]·P[:, n]) P[:, n]
    for P in (A, B); opt.step(); A, B = normalize(A, dim=0), normalize(B, dim=0).

F_i = (Σ_{t∈I} ‖Z_t − Z_t(0)‖^p)^{1/q}, p = q = 2 (the notebook's −‖Δ‖_F loss, sign flipped).
Differences from the notebook, all the ones DESIGN.md §4 / the shared contract prescribe: the raw
draws come from a file (melbo's `--init`), the objective is recorded positive and summed over
prompts, and α is chosen so that 25 steps move the factors and the curves clearly (see CASES).

Writes, for every case in CASES:
    tests/golden/data/adapter_<case>.init.safetensors    lora_A F32 [K, r, d_mlp], lora_B F32
                                                         [K, d, r]: the raw draws (not normalised)
    tests/golden/data/adapter_<case>.golden.safetensors  learned lora_A, lora_B (unscaled,
                                                         column-normalised), objective [K, steps],
                                                         prompt_ids.{i}
See tests/golden/README.md ("Adapter goldens").  Two runs give byte-identical files.
"""

import json
import os
import sys

import safetensors
import torch
import torch.nn.functional as Fn
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODELS_DIR = os.path.join(HERE, "models")
DATA_DIR = os.path.join(HERE, "data")

SOURCE_LAYER = 1
TARGET_LAYER = 4
STEPS = 25
P_EXP, Q_EXP = 2.0, 2.0
LOSS_AXIS = "token"
LR = 1e-3
BETAS = (0.9, 0.98)
EPS = 1e-8
INIT_SEED_BASE = 7200  # case number c draws its factors from torch.Generator().manual_seed(7200 + c)

# Tolerances of the golden's self-check against an fp64 run of the same algorithm (the melbo
# parity test then holds an fp32 port to 1e-4 on the factors and 1e-5 on the curves).
FP64_TOL = 1e-5
# A variant of the algorithm must land at least this far from the golden (factors, rel) for the
# golden to tell it apart at melbo's 1e-4 tolerance (see SENSITIVITY_CASE).
SENSITIVITY_MIN = 3e-4

# name -> settings.  `model` is the directory melbo runs; `run_on` the transformers model this
# script runs (qwen1 has no transformers class: tests/golden/README.md, "qwen1 (Qwen-1 layout)",
# shows its numbers are qwen2's).  α: with the notebook's 0.35 the perturbation of these tiny
# models is small against hidden states of norm ~10 and F suffers cancellation (fp32 vs fp64 at
# rel 1.6e-5 on B for llama3 r = 8); α = 4 (scale α/r = 0.5 at r = 8) gives fp64 agreement ~1e-6
# and F grows by 30-85 % in 25 steps.  r = 64 (= min(d, d_mlp), the largest rank allowed) uses
# α = 16 to keep α/r = 0.25.
CASES = {
    "llama3": dict(model="llama3", run_on="llama3", rank=8, alpha=4.0, adapters=4, prompts=(0,),
                   target_tokens="-3:", waves=(1,)),
    "qwen1": dict(model="qwen1", run_on="qwen2", rank=8, alpha=4.0, adapters=4, prompts=(0,),
                  target_tokens="-3:", waves=(1,)),
    "qwen3_2prompts": dict(model="qwen3", run_on="qwen3", rank=4, alpha=4.0, adapters=4, prompts=(0, 1),
                           target_tokens="-3:", waves=(1,)),
    "wave16": dict(model="llama3", run_on="llama3", rank=4, alpha=4.0, adapters=16, prompts=(0, 1),
                   target_tokens="-3:", waves=(1, 4, 16)),
    "r64": dict(model="llama3", run_on="llama3", rank=64, alpha=16.0, adapters=1, prompts=(0,),
                target_tokens="-3:", waves=(1,)),
}
SENSITIVITY_CASE = "llama3"


def log(*a):
    print(*a, flush=True)


def fmt(x):
    return "%.9g" % x


def parse_slice(spec):
    """melbo's --target-tokens: python slice syntax 'a:b' (either end optional)."""
    a, sep, b = spec.partition(":")
    assert sep == ":", spec
    return slice(int(a) if a else None, int(b) if b else None)


def module_name(model_dir):
    return "mlp.c_proj" if model_dir == "qwen1" else "mlp.down_proj"


# --------------------------------------------------------------------------- the reference algorithm

class LoRAHook:
    """Forward hook on the MLP output projection (an nn.Linear without bias): returns
    W x + scale · B (A x) for every position; x = the SwiGLU output (length d_mlp)."""

    def __init__(self, A, B, scale):
        self.A, self.B, self.scale = A, B, scale

    def __call__(self, module, args, output):
        return output + self.scale * Fn.linear(Fn.linear(args[0], self.A), self.B)


def hidden_states(model, ids):
    out = model(input_ids=ids[None, :], output_hidden_states=True, use_cache=False)
    return out.hidden_states


def objective(delta, p, q):
    """F = (Σ_t ‖Δ_t‖^p)^{1/q} over the target tokens (loss axis token)."""
    return delta.norm(dim=-1).pow(p).sum().pow(1.0 / q)


def normalize_cols(x):
    """torch's F.normalize(x, dim=0): every column divided by max(‖column‖, 1e-12)."""
    return Fn.normalize(x, dim=0)


def tangent(g, x):
    """Per-column projection onto the tangent space of the column-sphere at x."""
    return g - (g * x).sum(dim=0, keepdim=True) * x


def train_adapters(model, prompts, s, t, rank, alpha, p, q, idx, raw_A, raw_B, steps, variant=None,
                   on_step=None):
    """The notebook's loop, one adapter at a time, whole model every step.

    raw_A: [K, r, d_mlp], raw_B: [K, d, r] raw draws.  variant (for the sensitivity table only):
    None, "adam" (plain Adam), "no_tangent", "no_renorm", "rows" (normalise rows, dim=1),
    "scale_alpha" (ΔW = α·B·A instead of (α/r)·B·A).  on_step(k, step), if given, is called at the
    start of every step and once more after the last (step = steps): bench/adapters.py times steps.
    Returns (A [K, r, d_mlp], B [K, d, r], objective [K, steps], A0, B0)."""
    K = raw_A.shape[0]
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        targets0 = [hidden_states(model, ids)[t][0, idx].clone() for ids in prompts]
    norm = (lambda x: Fn.normalize(x, dim=1)) if variant == "rows" else normalize_cols
    scale = alpha if variant == "scale_alpha" else alpha / rank
    out_A = torch.zeros(raw_A.shape, dtype=dtype)
    out_B = torch.zeros(raw_B.shape, dtype=dtype)
    init_A, init_B = torch.zeros_like(out_A), torch.zeros_like(out_B)
    curves = torch.zeros(K, steps, dtype=dtype)
    proj = model.model.layers[s].mlp.down_proj
    for k in range(K):
        with torch.no_grad():
            A0, B0 = norm(raw_A[k].to(dtype)), norm(raw_B[k].to(dtype))
        init_A[k], init_B[k] = A0, B0
        A, B = torch.nn.Parameter(A0.clone()), torch.nn.Parameter(B0.clone())
        opt = torch.optim.AdamW([A, B], lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0,
                                amsgrad=(variant != "adam"))
        handle = proj.register_forward_hook(LoRAHook(A, B, scale))
        try:
            for step in range(steps):
                if on_step is not None:
                    on_step(k, step)
                opt.zero_grad()
                total = 0.0
                for ids, y0 in zip(prompts, targets0):
                    hs = hidden_states(model, ids)
                    F = objective(hs[t][0, idx] - y0, p, q)
                    (-F).backward()  # gradients accumulate over prompts
                    total += float(F.detach())
                curves[k, step] = total
                with torch.no_grad():
                    if variant != "no_tangent":
                        for P in (A, B):
                            P.grad.copy_(tangent(P.grad, P) if variant != "rows"
                                         else tangent(P.grad.T, P.T).T)
                opt.step()
                with torch.no_grad():
                    if variant != "no_renorm":
                        A.copy_(norm(A))
                        B.copy_(norm(B))
            if on_step is not None:
                on_step(k, steps)
        finally:
            handle.remove()
        out_A[k], out_B[k] = A.detach(), B.detach()
    return out_A, out_B, curves, init_A, init_B


# --------------------------------------------------------------------------- metrics

def rel_factors(x, g):
    """max over adapters of ‖x_k − g_k‖_F / ‖g_k‖_F (the parity test's measure)."""
    x, g = x.double(), g.double()
    return max(float((x[k] - g[k]).norm() / g[k].norm()) for k in range(g.shape[0]))


def rel_curves(x, g):
    """max over curves of max_t |x − g| / max_t |g| (the parity test's measure)."""
    x, g = x.double(), g.double()
    return max(float((x[k] - g[k]).abs().max() / g[k].abs().max()) for k in range(g.shape[0]))


# --------------------------------------------------------------------------- checks of the hook

def check_hook(model, ids, s, rank, alpha, A, B):
    """The hook is the LoRA of the contract: (1) the steered run equals the model with
    W + (α/r)·B·A written into the weight; (2) the perturbation of hidden_states[s+1] is
    Δ_t = (α/r)·B·(A·u_t), u_t the (unsteered) input of the down projection of block s."""
    proj = model.model.layers[s].mlp.down_proj
    scale = alpha / rank
    us = []
    pre = proj.register_forward_pre_hook(lambda m, a: us.append(a[0].detach().clone()))
    with torch.no_grad():
        h0 = hidden_states(model, ids)
    pre.remove()
    handle = proj.register_forward_hook(LoRAHook(A, B, scale))
    with torch.no_grad():
        h1 = hidden_states(model, ids)
    handle.remove()
    W = proj.weight.data.clone()
    try:
        with torch.no_grad():
            proj.weight.data += scale * (B @ A)
            h2 = hidden_states(model, ids)
    finally:
        proj.weight.data.copy_(W)
    e_merge = max(float((a - b).norm() / b.norm()) for a, b in zip(h1, h2))
    u = us[0][0]  # [T, d_mlp]
    delta = scale * (u @ A.T) @ B.T
    got = h1[s + 1][0] - h0[s + 1][0]
    e_delta = float((got - delta).norm() / delta.norm())
    assert e_merge <= 1e-5, ("LoRA hook != merged weight", e_merge)
    assert e_delta <= 1e-4, ("Δ at hidden_states[s+1] != (α/r)·B·(A·u)", e_delta)
    assert torch.equal(h0[s][0], h1[s][0]), "the adapter acts before block s's MLP"
    return e_merge, e_delta


def check_qwen1_layout(s):
    """models/qwen1 holds qwen2's MLP weights under the Qwen-1 names (w1 = up, w2 = gate, c_proj =
    down), so the qwen2 run is the qwen1 run and `mlp.c_proj` is the adapted module."""
    q1 = load_file(os.path.join(MODELS_DIR, "qwen1", "model.safetensors"))
    q2 = load_file(os.path.join(MODELS_DIR, "qwen2", "model.safetensors"))
    pairs = {"mlp.c_proj": "mlp.down_proj", "mlp.w1": "mlp.up_proj", "mlp.w2": "mlp.gate_proj"}
    for n1, n2 in pairs.items():
        a, b = q1[f"transformer.h.{s}.{n1}.weight"], q2[f"model.layers.{s}.{n2}.weight"]
        assert torch.equal(a, b), (n1, n2)
    g1 = load_file(os.path.join(DATA_DIR, "qwen1.golden.safetensors"))
    g2 = load_file(os.path.join(DATA_DIR, "qwen2.golden.safetensors"))
    assert set(g1) == set(g2) and all(torch.equal(g1[k], g2[k]) for k in g1)
    with safe_open(os.path.join(DATA_DIR, "qwen1.golden.safetensors"), "pt") as f:
        assert f.metadata().get("same_numbers_as") == "qwen2"


# --------------------------------------------------------------------------- files

def canonicalise_header(path):
    """safetensors writes __metadata__ in hash-map order: rewrite the header with its keys sorted
    (same approach as make_goldens.py) so reruns are byte-identical."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for k, v in hdr.items():
        out[k] = dict(sorted(v.items())) if k == "__metadata__" else v
    text = json.dumps(out, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        f.write(raw[8 + n:])


def write(path, tensors, meta):
    save_file(tensors, path, metadata=meta)
    canonicalise_header(path)
    back = load_file(path)
    assert set(back) == set(tensors)
    for k in tensors:
        assert back[k].dtype == tensors[k].dtype and torch.equal(back[k], tensors[k]), k
    with safe_open(path, "pt") as f:
        assert f.metadata() == meta
    return path


def load_model(name, dtype=torch.float32):
    m = AutoModelForCausalLM.from_pretrained(os.path.join(MODELS_DIR, name), dtype=dtype,
                                             attn_implementation="eager").eval()
    m.requires_grad_(False)
    return m


def melbo_command(case, c, prompts, wave, init_rel):
    ids = " ".join("--prompt-ids " + ",".join(str(int(x)) for x in pr) for pr in prompts)
    return (f"melbo-rank train --model tests/golden/models/{c['model']} {ids} "
            f"--source-layer {SOURCE_LAYER} --target-layer {TARGET_LAYER} "
            f"--adapter-rank {c['rank']} --adapter-alpha {fmt(c['alpha'])} "
            f"--p {fmt(P_EXP)} --q {fmt(Q_EXP)} --loss-axis {LOSS_AXIS} --target-tokens {c['target_tokens']} "
            f"--steps {STEPS} --vectors {c['adapters']} --wave {wave} --init {init_rel} "
            f"--out /tmp/adapter_{case}.bank.safetensors")


# --------------------------------------------------------------------------- main

def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    log(f"torch {torch.__version__}  transformers {transformers.__version__}  "
        f"safetensors {safetensors.__version__}  python {sys.version.split()[0]}")
    s, t, p, q = SOURCE_LAYER, TARGET_LAYER, P_EXP, Q_EXP
    check_qwen1_layout(s)
    models = {}
    rows, cmds, written, sens = [], [], [], []
    for ci, (case, c) in enumerate(CASES.items()):
        name, run_on, r, alpha, K = c["model"], c["run_on"], c["rank"], c["alpha"], c["adapters"]
        if run_on not in models:
            models[run_on] = load_model(run_on)
        model = models[run_on]
        cfg = model.config
        d, dm, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
        assert 0 <= s and s + 2 <= t <= L - 1
        assert 1 <= r <= min(d, dm), r
        assert tuple(model.model.layers[s].mlp.down_proj.weight.shape) == (d, dm)
        assert model.model.layers[s].mlp.down_proj.bias is None
        gold = load_file(os.path.join(DATA_DIR, f"{name}.golden.safetensors"))
        prompts = [gold[f"input_ids.{i}"].long() for i in c["prompts"]]
        idx = parse_slice(c["target_tokens"])

        # raw draws, per adapter A_k [r, d_mlp] then B_k [d, r], standard normal, not normalised
        gen = torch.Generator().manual_seed(INIT_SEED_BASE + ci)
        raw_A = torch.zeros(K, r, dm)
        raw_B = torch.zeros(K, d, r)
        for k in range(K):
            raw_A[k] = torch.randn(r, dm, generator=gen, dtype=torch.float32)
            raw_B[k] = torch.randn(d, r, generator=gen, dtype=torch.float32)

        e_merge, e_delta = check_hook(model, prompts[0], s, r, alpha, normalize_cols(raw_A[0]),
                                      normalize_cols(raw_B[0]))
        A, B, curves, A0, B0 = train_adapters(model, prompts, s, t, r, alpha, p, q, idx, raw_A, raw_B, STEPS)

        # --- sanity checks
        assert torch.isfinite(A).all() and torch.isfinite(B).all() and torch.isfinite(curves).all()
        nA = A.double().norm(dim=1)  # [K, d_mlp]: norms of the columns of A
        nB = B.double().norm(dim=1)  # [K, r]: norms of the columns of B
        e_norm = max(float((nA - 1).abs().max()), float((nB - 1).abs().max()))
        assert e_norm <= 1e-5, ("columns not unit", case, e_norm)
        assert (curves[:, 0] > 0).all(), curves[:, 0]
        change = (curves[:, -1] - curves[:, 0]) / curves[:, 0]
        assert (change.abs() > 1e-2).all(), ("objective barely moves", case, change)
        assert ((curves[:, 1:] - curves[:, :-1]).abs() > 0).all(), ("a flat step", case)
        moved_A = torch.tensor([float((A[k] - A0[k]).norm() / A0[k].norm()) for k in range(K)])
        moved_B = torch.tensor([float((B[k] - B0[k]).norm() / B0[k].norm()) for k in range(K)])
        assert (moved_A > 1e-2).all() and (moved_B > 1e-2).all(), ("factors barely move", case)

        # --- fp64 cross-check: the same algorithm on an fp64 copy of the model
        m64 = load_model(run_on, torch.float64)
        A64, B64, c64, _, _ = train_adapters(m64, prompts, s, t, r, alpha, p, q, idx, raw_A.double(),
                                             raw_B.double(), STEPS)
        del m64
        e_A, e_B, e_obj = rel_factors(A, A64), rel_factors(B, B64), rel_curves(curves, c64)
        assert max(e_A, e_B, e_obj) <= FP64_TOL, (case, e_A, e_B, e_obj)

        # --- what the golden can tell apart (one case): each variant must land well outside 1e-4
        if case == SENSITIVITY_CASE:
            for variant in ("adam", "no_tangent", "no_renorm", "rows", "scale_alpha", "one_step_fewer"):
                if variant == "one_step_fewer":
                    va, vb, vc, _, _ = train_adapters(model, prompts, s, t, r, alpha, p, q, idx,
                                                      raw_A, raw_B, STEPS - 1)
                    eo = rel_curves(vc, curves[:, :STEPS - 1])
                else:
                    va, vb, vc, _, _ = train_adapters(model, prompts, s, t, r, alpha, p, q, idx,
                                                      raw_A, raw_B, STEPS, variant=variant)
                    eo = rel_curves(vc, curves)
                ea, eb = rel_factors(va, A), rel_factors(vb, B)
                sens.append((variant, ea, eb, eo))
                assert max(ea, eb) >= SENSITIVITY_MIN, ("golden does not tell apart", variant, ea, eb)

        module = module_name(name)
        tensors = {"lora_A": A.float().contiguous(), "lora_B": B.float().contiguous(),
                   "objective": curves.float().contiguous()}
        for i, pr in enumerate(prompts):
            tensors[f"prompt_ids.{i}"] = pr.to(torch.int32).contiguous()
        init_name = f"adapter_{case}.init.safetensors"
        meta = {
            "format": "melbo-adapter-golden",
            "version": "1",
            "kind": "adapter",
            "model": name,
            "computed_on": run_on,
            "architecture": "QWenLMHeadModel" if name == "qwen1" else cfg.architectures[0],
            "d_model": str(d),
            "d_mlp": str(dm),
            "n_layers": str(L),
            "source_layer": str(s),
            "target_layer": str(t),
            "adapter_rank": str(r),
            "adapter_alpha": fmt(alpha),
            "adapter_scale": fmt(alpha / r),
            "adapter_module": module,
            "p": fmt(p),
            "q": fmt(q),
            "loss_axis": LOSS_AXIS,
            "target_tokens": c["target_tokens"],
            "steps": str(STEPS),
            "adapters": str(K),
            "waves": ",".join(str(w) for w in c["waves"]),
            "orthogonal": "false",
            "normalisation": "F.normalize(dim=0) of lora_A [r, d_mlp] and lora_B [d, r] (unit columns)",
            "lr": fmt(LR),
            "betas": ",".join(fmt(b) for b in BETAS),
            "eps": fmt(EPS),
            "weight_decay": "0",
            "amsgrad": "true",
            "n_prompts": str(len(prompts)),
            "prompts_from": f"{name}.golden.safetensors input_ids." + ",".join(str(i) for i in c["prompts"]),
            "init_file": init_name,
            "init_seed": str(INIT_SEED_BASE + ci),
            "objective_recorded": "F (positive), summed over prompts, before the update of that step",
            "dtype": "float32",
            "attn_implementation": "eager",
            "fp64_rel_lora_A": "%.3g" % e_A,
            "fp64_rel_lora_B": "%.3g" % e_B,
            "fp64_rel_objective": "%.3g" % e_obj,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "safetensors_version": safetensors.__version__,
        }
        if name != run_on:
            meta["same_numbers_as"] = run_on
        init_path = os.path.join(DATA_DIR, init_name)
        write(init_path, {"lora_A": raw_A.contiguous(), "lora_B": raw_B.contiguous()},
              {"format": "melbo-init", "kind": "adapter", "model": name, "d_model": str(d),
               "d_mlp": str(dm), "adapter_rank": str(r), "seed": str(INIT_SEED_BASE + ci),
               "distribution": "standard normal, torch.Generator().manual_seed(seed); per adapter k: "
                               "torch.randn(r, d_mlp) for lora_A[k], then torch.randn(d, r) for lora_B[k]",
               "torch_version": torch.__version__})
        gold_path = os.path.join(DATA_DIR, f"adapter_{case}.golden.safetensors")
        write(gold_path, tensors, meta)
        written += [init_path, gold_path]
        rows.append((case, c, len(prompts), curves, moved_A, moved_B, e_norm, e_A, e_B, e_obj, e_merge, e_delta))
        for w in c["waves"]:
            cmds.append(melbo_command(case, c, prompts, w, os.path.relpath(init_path, ROOT)))

    log(f"\ns = {s}, t = {t}, p = q = 2, loss axis token, {STEPS} steps, adapters one at a time")
    log(f"{'case':15s} {'model':7s} {'r':>3s} {'alpha':>5s} {'tok':4s} {'P':>1s}  {'k':>3s} {'F[0]':>10s} "
        f"{'F[last]':>10s} {'rel chg':>8s} {'|dA|/|A|':>9s} {'|dB|/|B|':>9s}")
    for case, c, P, curves, mA, mB, e_norm, e_A, e_B, e_obj, e_merge, e_delta in rows:
        for k in range(c["adapters"]):
            f0, f1 = float(curves[k, 0]), float(curves[k, -1])
            log(f"{case:15s} {c['model']:7s} {c['rank']:3d} {c['alpha']:5g} {c['target_tokens']:4s} {P:1d}  "
                f"{k:3d} {f0:10.6g} {f1:10.6g} {(f1 - f0) / f0:+8.3f} {float(mA[k]):9.4f} {float(mB[k]):9.4f}")
        log(f"{'':15s} vs fp64 run: lora_A rel {e_A:.1e}, lora_B rel {e_B:.1e}, objective rel {e_obj:.1e}; "
            f"column norms |n-1| <= {e_norm:.1e}; hook vs merged weight {e_merge:.1e}, "
            f"Δ[s+1] vs (α/r)·B·(A·u) {e_delta:.1e}")
    log(f"\nsensitivity ({SENSITIVITY_CASE}): rel to the golden (factors: per-adapter Frobenius; curves: per curve)")
    for variant, ea, eb, eo in sens:
        log(f"  {variant:15s} lora_A {ea:.1e}  lora_B {eb:.1e}  objective {eo:.1e}")
    log("\nmelbo commands that should reproduce each case (compare lora_A, lora_B and objective):")
    for cmd in cmds:
        log("  " + cmd)
    log("\nfiles written:")
    total = 0
    for pth in written:
        total += os.path.getsize(pth)
        log(f"  {os.path.getsize(pth):8d}  {os.path.relpath(pth, ROOT)}")
    log(f"  {total:8d}  in all\n\nok")


if __name__ == "__main__":
    main()
