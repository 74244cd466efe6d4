#!/usr/bin/env python3
"""Reference-algorithm training goldens for melbo (method.md §2.1, DESIGN.md §4).

Run by hand from the repository root (never by CI), after make_goldens.py has written the tiny
models:

    python3 tests/golden/make_train_goldens.py

This is an independent PyTorch implementation of the MELBO reference algorithm
(`SteeredModel.train` of amack315/unsupervised-steering-vectors), in fp32 on the CPU: vectors
trained one at a time (melbo's `--wave 1`), orthogonal on, the WHOLE model run every step, the
objective read from transformers' `hidden_states[t]`, θ added to the output of decoder block s at
every position by a forward hook.  Differences from the published code, all deliberate and the
ones DESIGN.md §4 prescribes: the raw draws g_k come from a file (`--init`), the objective is
recorded positive and summed over prompts, and the loss axis is selectable (`token` = the post's
formula, `dim` = the code's `.norm(dim=1)`).

Writes, for every case in CASES:
    tests/golden/data/train_<case>.init.safetensors    `vectors` F32 [K, d]: raw draws g_k
    tests/golden/data/train_<case>.golden.safetensors  learned vectors, objective curves, prompts
and tests/golden/data/train_wave_nonortho.init.safetensors (16 raw draws for qwen3).
The cases are p2q1, p4q4_dim, p4q4_last2, 2prompts (R = 4, as asked) and p2q1_r1 (R = 1:
the only one where AMSGrad vs plain Adam is clearly visible in 25 steps).
See tests/golden/README.md ("Training goldens").  Two runs give byte-identical files.
"""

import json
import os
import sys

import safetensors
import torch
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
RADIUS = 4.0  # default R; a case may override it
STEPS = 25
N_VECTORS = 4
LR = 1e-3
BETAS = (0.9, 0.98)
EPS = 1e-8
INIT_SEED_BASE = 7000  # case k draws its g_k from torch.Generator().manual_seed(INIT_SEED_BASE + k)
WAVE_INIT_SEED = 7100
WAVE_INIT_N = 16
WAVE_INIT_MODEL = "qwen3"

# name -> (model dir, p, q, loss axis, target tokens, prompt indices into the model's golden file, R)
CASES = {
    "p2q1": ("llama3", 2.0, 1.0, "token", ":", (0,), RADIUS),
    "p4q4_dim": ("qwen3", 4.0, 4.0, "dim", ":", (0,), RADIUS),
    "p4q4_last2": ("llama3", 4.0, 4.0, "token", "-2:", (0,), RADIUS),
    "2prompts": ("qwen3", 2.0, 1.0, "token", ":", (0, 1), RADIUS),
    # At R = 4 the 25 AdamW steps are almost sign steps (|θ−θ0| ≈ 25·lr·sqrt(d)) and plain Adam
    # lands only ~1.4e-4 (rel) away from AMSGrad.  At R = 1 the direction turns 4x further, the
    # gradient changes more along the way and AMSGrad vs Adam differs by ~5e-4 (checked below).
    "p2q1_r1": ("llama3", 2.0, 1.0, "token", ":", (0,), 1.0),
}
AMSGRAD_CHECK_CASE = "p2q1_r1"
AMSGRAD_CHECK_MIN = 3e-4  # plain Adam must land at least this far (rel) from the golden


def log(*a):
    print(*a, flush=True)


def fmt(x):
    return "%.9g" % x


def parse_slice(spec):
    """melbo's --target-tokens: python slice syntax 'a:b' (either end optional)."""
    a, sep, b = spec.partition(":")
    assert sep == ":", spec
    return slice(int(a) if a else None, int(b) if b else None)


# --------------------------------------------------------------------------- the reference algorithm

class AddTheta:
    """Forward hook on decoder block s: output + θ at every position (θ broadcast over [B, T, d])."""

    def __init__(self, theta):
        self.theta = theta

    def __call__(self, module, args, output):
        if isinstance(output, tuple):
            return (output[0] + self.theta,) + tuple(output[1:])
        return output + self.theta


def hidden_states(model, ids):
    out = model(input_ids=ids[None, :], output_hidden_states=True, use_cache=False)
    return out.hidden_states


def objective(delta, p, q, axis):
    """F = (Σ_t ‖Δ_t‖^p)^{1/q} (token) or (Σ_j n_j^p)^{1/q}, n_j = ‖Δ_{:,j}‖ (dim)."""
    if axis == "token":
        n = delta.norm(dim=-1)  # [T']
    elif axis == "dim":
        n = delta.norm(dim=0)  # [d]: the reference code's .norm(dim=1) on [1, T', d]
    else:
        raise ValueError(axis)
    return n.pow(p).sum().pow(1.0 / q)


def train_reference(model, prompts, s, t, radius, p, q, axis, idx, raw, steps, orthogonal=True,
                    amsgrad=True):
    """MELBO reference algorithm (method.md §2.1), one vector at a time, whole model every step.

    raw: [K, d] raw draws g_k.  Returns (vectors [K, d], objective [K, steps], inits [K, d])."""
    K, d = raw.shape
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        targets0 = [hidden_states(model, ids)[t][0, idx].clone() for ids in prompts]
    learned = torch.zeros(K, d, dtype=dtype)
    curves = torch.zeros(K, steps, dtype=dtype)
    inits = torch.zeros(K, d, dtype=dtype)

    def perp(x):
        if not orthogonal:
            return x
        U = learned.T / radius  # [d, K]; rows not trained yet are zero
        return x - U @ (U.T @ x)

    layer = model.model.layers[s]
    for k in range(K):
        with torch.no_grad():
            g = perp(raw[k].to(dtype))
            theta0 = radius * g / g.norm().clamp_min(1e-12)
        inits[k] = theta0
        theta = torch.nn.Parameter(theta0.clone())
        opt = torch.optim.AdamW([theta], lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0,
                                amsgrad=amsgrad)
        handle = layer.register_forward_hook(AddTheta(theta), prepend=True)
        try:
            for step in range(steps):
                opt.zero_grad()
                total = 0.0
                for ids, y0 in zip(prompts, targets0):
                    hs = hidden_states(model, ids)
                    F = objective(hs[t][0, idx] - y0, p, q, axis)
                    (-F).backward()  # gradients accumulate over prompts
                    total += float(F.detach())
                curves[k, step] = total
                with torch.no_grad():
                    gr = perp(theta.grad)
                    gr = gr - (gr @ theta) * theta / radius ** 2
                    theta.grad.copy_(gr)
                opt.step()
                with torch.no_grad():
                    theta.copy_(perp(theta))
                    theta.copy_(radius * theta / theta.norm().clamp_min(1e-12))
        finally:
            handle.remove()
        learned[k] = theta.detach()
    return learned, curves, inits


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


def melbo_command(name, case, prompts, radius, p, q, axis, tt, init_rel):
    ids = " ".join("--prompt-ids " + ",".join(str(int(x)) for x in pr) for pr in prompts)
    return (f"melbo-rank train --model tests/golden/models/{name} {ids} "
            f"--source-layer {SOURCE_LAYER} --target-layer {TARGET_LAYER} --radius {fmt(radius)} "
            f"--p {fmt(p)} --q {fmt(q)} --loss-axis {axis} --target-tokens {tt} --steps {STEPS} "
            f"--vectors {N_VECTORS} --wave 1 --orthogonal --init {init_rel} "
            f"--out /tmp/train_{case}.bank.safetensors")


# --------------------------------------------------------------------------- main

def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    log(f"torch {torch.__version__}  transformers {transformers.__version__}  "
        f"safetensors {safetensors.__version__}  python {sys.version.split()[0]}")
    s, t = SOURCE_LAYER, TARGET_LAYER
    models = {}
    rows, cmds, written = [], [], []
    for ci, (case, (name, p, q, axis, tt, pidx, R)) in enumerate(CASES.items()):
        if name not in models:
            models[name] = load_model(name)
        model = models[name]
        cfg = model.config
        d, L = cfg.hidden_size, cfg.num_hidden_layers
        assert 0 <= s and s + 2 <= t <= L - 1
        gold = load_file(os.path.join(DATA_DIR, f"{name}.golden.safetensors"))
        prompts = [gold[f"input_ids.{i}"].long() for i in pidx]
        idx = parse_slice(tt)

        gen = torch.Generator().manual_seed(INIT_SEED_BASE + ci)
        raw = torch.randn(N_VECTORS, d, generator=gen, dtype=torch.float32)
        vecs, curves, inits = train_reference(model, prompts, s, t, R, p, q, axis, idx, raw, STEPS)

        # --- sanity checks
        v64 = vecs.double()
        norms = v64.norm(dim=1)
        assert ((norms - R).abs() / R).max() <= 1e-5, norms
        cos = (v64 @ v64.T) / (norms[:, None] * norms[None, :])
        off = (cos - torch.eye(N_VECTORS, dtype=torch.float64)).abs().max()
        assert off < 1e-5, off
        assert (curves[:, 0] > 0).all(), curves[:, 0]
        assert torch.isfinite(curves).all() and torch.isfinite(vecs).all()
        change = ((curves[:, -1] - curves[:, 0]) / curves[:, 0]).abs()
        assert (change > 1e-2).all(), ("objective barely moves", case, change)
        moved = (vecs - inits).norm(dim=1) / R
        assert (moved > 1e-2).all(), ("vectors barely move", case, moved)
        # the curve must not be flat step to step either (every step changes F)
        assert ((curves[:, 1:] - curves[:, :-1]).abs() > 0).all(), case

        # --- fp64 cross-check: the same algorithm on an fp64 copy of the model; the goldens
        # must be well-conditioned (no Adam sign flips on near-zero gradient entries, etc.)
        m64 = load_model(name, torch.float64)
        vecs64, curves64, _ = train_reference(m64, prompts, s, t, R, p, q, axis, idx,
                                              raw.double(), STEPS)
        del m64
        e_vec = float((vecs.double() - vecs64).abs().max() / vecs64.abs().max())
        e_obj = float(((curves.double() - curves64).abs() / curves64.abs()).max())
        assert e_vec <= 1e-5 and e_obj <= 1e-5, (case, e_vec, e_obj)
        e_adam = None
        if case == AMSGRAD_CHECK_CASE:
            va, _, _ = train_reference(model, prompts, s, t, R, p, q, axis, idx, raw, STEPS, amsgrad=False)
            e_adam = float((va - vecs).abs().max() / vecs.abs().max())
            assert e_adam >= AMSGRAD_CHECK_MIN, ("golden does not tell AMSGrad from Adam", e_adam)

        tensors = {"vectors": vecs.float().contiguous(), "objective": curves.float().contiguous()}
        for i, pr in enumerate(prompts):
            tensors[f"prompt_ids.{i}"] = pr.to(torch.int32).contiguous()
        meta = {
            "format": "melbo-train-golden",
            "version": "1",
            "model": name,
            "architecture": cfg.architectures[0] if cfg.architectures else type(model).__name__,
            "d_model": str(d),
            "n_layers": str(L),
            "source_layer": str(s),
            "target_layer": str(t),
            "radius": fmt(R),
            "p": fmt(p),
            "q": fmt(q),
            "loss_axis": axis,
            "target_tokens": tt,
            "steps": str(STEPS),
            "vectors": str(N_VECTORS),
            "wave": "1",
            "orthogonal": "true",
            "lr": fmt(LR),
            "betas": ",".join(fmt(b) for b in BETAS),
            "eps": fmt(EPS),
            "weight_decay": "0",
            "amsgrad": "true",
            "n_prompts": str(len(prompts)),
            "prompts_from": f"{name}.golden.safetensors input_ids." + ",".join(str(i) for i in pidx),
            "init_file": f"train_{case}.init.safetensors",
            "init_seed": str(INIT_SEED_BASE + ci),
            "objective_recorded": "F (positive), summed over prompts, before the update of that step",
            "dtype": "float32",
            "attn_implementation": "eager",
            "fp64_rel_vectors": "%.3g" % e_vec,
            "fp64_rel_objective": "%.3g" % e_obj,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "safetensors_version": safetensors.__version__,
        }
        init_path = os.path.join(DATA_DIR, f"train_{case}.init.safetensors")
        write(init_path, {"vectors": raw.contiguous()},
              {"format": "melbo-init", "model": name, "d_model": str(d), "seed": str(INIT_SEED_BASE + ci),
               "distribution": "standard normal, torch.Generator().manual_seed(seed), torch.randn(N, d)",
               "torch_version": torch.__version__})
        gold_path = os.path.join(DATA_DIR, f"train_{case}.golden.safetensors")
        write(gold_path, tensors, meta)
        written += [init_path, gold_path]
        rows.append((case, name, R, p, q, axis, tt, len(prompts), curves, moved, off, e_vec, e_obj, e_adam))
        cmds.append(melbo_command(name, case, prompts, R, p, q, axis, tt,
                                  os.path.relpath(init_path, ROOT)))

    # --- raw draws for the wave-invariance tests (no golden)
    gen = torch.Generator().manual_seed(WAVE_INIT_SEED)
    d = models[WAVE_INIT_MODEL].config.hidden_size
    raw = torch.randn(WAVE_INIT_N, d, generator=gen, dtype=torch.float32)
    wpath = os.path.join(DATA_DIR, "train_wave_nonortho.init.safetensors")
    write(wpath, {"vectors": raw.contiguous()},
          {"format": "melbo-init", "model": WAVE_INIT_MODEL, "d_model": str(d), "seed": str(WAVE_INIT_SEED),
           "distribution": "standard normal, torch.Generator().manual_seed(seed), torch.randn(N, d)",
           "torch_version": torch.__version__})
    written.append(wpath)

    log(f"\ns = {s}, t = {t}, {N_VECTORS} vectors x {STEPS} steps, wave 1, orthogonal")
    log(f"{'case':12s} {'model':7s} {'R':>3s} {'p':>2s} {'q':>2s} {'axis':5s} {'tok':4s} {'P':>1s}  "
        f"{'vec':>3s} {'F[0]':>12s} {'F[last]':>12s} {'rel chg':>8s} {'|θ-θ0|/R':>9s}")
    for case, name, R, p, q, axis, tt, P, curves, moved, off, e_vec, e_obj, e_adam in rows:
        for k in range(N_VECTORS):
            f0, f1 = float(curves[k, 0]), float(curves[k, -1])
            log(f"{case:12s} {name:7s} {R:3g} {p:2.0f} {q:2.0f} {axis:5s} {tt:4s} {P:1d}  {k:3d} "
                f"{f0:12.6g} {f1:12.6g} {(f1 - f0) / f0:+8.3f} {float(moved[k]):9.4f}")
        log(f"{'':12s} max |cos| off-diagonal {float(off):.1e}; vs fp64 run: vectors rel {e_vec:.1e}, "
            f"objective rel {e_obj:.1e}"
            + (f"; plain Adam instead of AMSGrad: vectors rel {e_adam:.1e}" if e_adam is not None else ""))
    log("\nmelbo commands that should reproduce each case (compare `vectors` and `objective`):")
    for c in cmds:
        log("  " + c)
    log("\nfiles written:")
    for pth in written:
        log(f"  {os.path.getsize(pth):8d}  {os.path.relpath(pth, ROOT)}")
    log("\nok")


if __name__ == "__main__":
    main()
