#!/usr/bin/env python3
"""GPU benchmark (issue 8): the PyTorch baselines on a Qwen2.5-14B-shaped model with random weights.

usage: python3 bench/gpu/torch_baselines.py [--device cuda|cpu] [--small]
           [--only reference,batched,generate] [--batches 1,32,128] [--gen-batches 64,1]
           [--steps N] [--warmup 2] [--tokens 32] [--new-tokens 64] [--seed 0] [--threads N]
           [--dtype bf16|fp32] [--init fast|hf]

Workload: Qwen2Config(hidden 5120, 48 layers, 40 heads / 8 KV heads, MLP 13824, vocab 152064,
rope theta 1e6, rms eps 1e-6, untied embeddings), Qwen2ForCausalLM with random weights built
directly on the device in bf16, sdpa attention; one prompt of --tokens random tokens (seeded);
source layer s = 7 (θ added to the output of model.model.layers[7], i.e. hidden_states[8]),
target hidden_states[40], p = 2, q = 1, loss axis token (the post's formula; at p = 2 the same as
the reference code's), all tokens, R = 8, AdamW(lr 1e-3, betas (0.9, 0.98), eps 1e-8,
weight_decay 0, amsgrad=True), tangent projection before the step and renormalisation to R after
it (docs/method.md §1-§2).

--small (CPU tests): hidden 256, 12 layers, 4 / 2 heads, MLP 512, vocab 1024, s = 2, t = 8, and
smaller defaults --batches 1,4,16, --gen-batches 4,1, --new-tokens 16.  On --device cpu the model
defaults to fp32 (--dtype; bf16 matmuls on CPUs without native bf16 run ~50x slower than fp32);
"bf16" below means the model dtype.

  reference  the MELBO reference algorithm as published: one vector (bf16 parameter, the model's
             dtype) added by a forward hook on layers[s]; every step runs the WHOLE model with
             output_hidden_states=True (LM head included), loss.backward(), loss.item(), tangent
             projection, AMSGrad, renormalisation.  The unsteered targets are computed once
             (untimed).  For the first vector the orthogonal projector is the identity, so it is
             left out.  Seconds per vector-step.
  generate   HF model.generate, greedy, --tokens-long random prompts, --new-tokens (64) new
             tokens (min_new_tokens = max_new_tokens, no EOS), a fixed θ (|θ| = R) added to the
             output of layers[s] at every position by a forward hook; one short (4-token)
             warm-up generate per batch size.  Tokens/s = batch * new tokens / seconds.
  batched    batched span (batched-melbo HEAD's SlicedModel): X = hidden_states[s+1] and
             Y = hidden_states[t] computed once, then every step runs only the decoder layers
             s+1..t-1 (Qwen2DecoderLayer called directly, rotary embeddings from
             model.model.rotary_emb, sdpa is_causal) on B stacked copies of X + θ_b (θ: [B, d]
             fp32 parameter cast to bf16 when added), loss -Σ_b F_b, backward (weights frozen),
             AdamW(amsgrad) on θ, tangent projection, renormalisation.  Before it runs, every
             weight outside the span (embeddings, layers < s+1 and >= t, final norm, LM head) is
             freed.  Per B: seconds per vector-step (step time / B), TFLOP/s and peak memory.
             FLOP convention: matrix products only (q/k/v/o projections and the 3 MLP GEMMs),
             forward = 2 * B*T * Σ_span (d*(nq+2nkv)*hd + nq*hd*d + 3*d*ff); a step counts
             forward + input-gradient backward = 2 x forward (no weight gradients; attention
             score/value products, norms and elementwise work not counted).

Measurements run in the order reference, generate, batched (the first two need the whole model;
batched then frees what it does not need).  Every measurement prints one `RESULT {json}` line.
"""
import argparse
import gc
import json
import os
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--small", action="store_true", help="tiny model shape for CPU tests")
    ap.add_argument("--only", default="reference,batched,generate",
                    help="comma list of reference, batched, generate")
    ap.add_argument("--batches", default=None, help="B values for batched (default 1,32,128; "
                    "--small: 1,4,16)")
    ap.add_argument("--gen-batches", default=None, help="batch sizes for generate (default 64,1; "
                    "--small: 4,1)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps (default: 5 for reference, 3 for batched)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    ap.add_argument("--tokens", type=int, default=32, help="prompt length")
    ap.add_argument("--new-tokens", type=int, default=None,
                    help="generated tokens per sequence (default 64; --small: 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--dtype", default=None, choices=["bf16", "fp32"],
                    help="model dtype (default bf16 on cuda, fp32 on cpu: bf16 matmuls on a CPU "
                         "without AVX512-BF16/AMX run ~50x slower than fp32)")
    ap.add_argument("--init", default="fast", choices=["fast", "hf"],
                    help="fast: build on meta, then normal(0, 0.02) weights / zero biases / ones "
                         "for norms on the device; hf: transformers' own init under "
                         "torch.device(dev) (default fast; falls back to hf if fast fails)")
    a = ap.parse_args()
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    for x in a.only:
        if x not in ("reference", "batched", "generate"):
            ap.error(f"--only: unknown measurement {x!r}")
    if a.dtype is None:
        a.dtype = "bf16" if a.device == "cuda" else "fp32"
    if a.batches is None:
        a.batches = "1,4,16" if a.small else "1,32,128"
    if a.gen_batches is None:
        a.gen_batches = "4,1" if a.small else "64,1"
    if a.new_tokens is None:
        a.new_tokens = 16 if a.small else 64
    a.batches = [int(x) for x in a.batches.split(",") if x.strip()]
    a.gen_batches = [int(x) for x in a.gen_batches.split(",") if x.strip()]
    return a


args = parse_args()
if args.threads:
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402

RADIUS, P, Q = 8.0, 2.0, 1.0
LR, BETAS, EPS = 1e-3, (0.9, 0.98), 1e-8
DTYPE = torch.bfloat16 if args.dtype == "bf16" else torch.float32


def log(*a):
    print(*a, flush=True)


def result(**kw):
    print("RESULT " + json.dumps(kw), flush=True)


def cuda():
    return args.device == "cuda"


def sync():
    if cuda():
        torch.cuda.synchronize()


def is_oom(e):
    if hasattr(torch.cuda, "OutOfMemoryError") and isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def free():
    gc.collect()
    if cuda():
        torch.cuda.empty_cache()


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


# --------------------------------------------------------------------------- model

def make_config():
    if args.small:
        shape = dict(hidden_size=256, num_hidden_layers=12, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=512, vocab_size=1024)
        s, t = 2, 8
    else:
        shape = dict(hidden_size=5120, num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8,
                     intermediate_size=13824, vocab_size=152064)
        s, t = 7, 40
    cfg = Qwen2Config(rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=32768,
                      tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
                      **shape)
    cfg._attn_implementation = "sdpa"
    return cfg, s, t


def _construct(cfg, device):
    prev = torch.get_default_dtype()
    torch.set_default_dtype(DTYPE)
    try:
        with torch.device(device):
            return Qwen2ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(prev)


def build_model(cfg, dev):
    """Qwen2ForCausalLM in bf16 directly on dev; eval, weights frozen."""
    torch.manual_seed(args.seed)
    if cuda():
        torch.cuda.manual_seed_all(args.seed)
    how = args.init
    model = None
    if how == "fast":
        try:
            model = _construct(cfg, "meta")
            model = model.to_empty(device=dev)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if p.dim() >= 2:
                        p.normal_(0.0, 0.02)
                    elif "norm" in name:
                        p.fill_(1.0)
                    else:  # q/k/v biases
                        p.zero_()
            # to_empty leaves the rotary buffers (inv_freq) uninitialised: rebuild the module on dev
            prev = torch.get_default_dtype()
            try:
                with torch.device(dev):
                    model.model.rotary_emb = type(model.model.rotary_emb)(config=cfg)
            finally:
                torch.set_default_dtype(prev)
            for n, b in model.named_buffers():
                if b.is_floating_point() and not torch.isfinite(b).all():
                    raise RuntimeError(f"buffer {n} not finite after the fast init")
        except Exception as e:  # pragma: no cover - version-dependent
            log(f"fast init failed ({type(e).__name__}: {e}); falling back to transformers' init")
            model = None
            free()
            how = "hf"
    if model is None:
        model = _construct(cfg, dev)
    model.eval()
    model.requires_grad_(False)
    # no BOS/EOS/pad anywhere: every generated sequence runs to max_new_tokens
    gc_ = model.generation_config
    gc_.eos_token_id = None
    gc_.bos_token_id = None
    gc_.pad_token_id = None
    dts = {p.dtype for p in model.parameters()}
    devs = {p.device.type for p in model.parameters()}
    assert dts == {DTYPE} and devs == {torch.device(dev).type}, (dts, devs)
    # rope sanity: inv_freq[1] = theta^(-2/hd)
    hd = cfg.hidden_size // cfg.num_attention_heads
    inv = model.model.rotary_emb.inv_freq
    want = 1e6 ** (-2.0 / hd)
    assert abs(float(inv[1]) / want - 1) < 1e-4, (float(inv[1]), want)
    return model, how


def n_params(model):
    return sum(p.numel() for p in model.parameters())


class AddTheta:
    """Forward hook on decoder block s: output + θ at every position (θ broadcast over [B, T, d])."""

    def __init__(self, theta):
        self.theta = theta
        self.calls = 0

    def __call__(self, module, a, output):
        self.calls += 1
        if isinstance(output, tuple):
            return (output[0] + self.theta,) + tuple(output[1:])
        return output + self.theta


def register_hook(layer, hook):
    try:
        return layer.register_forward_hook(hook, prepend=True)
    except TypeError:  # very old torch
        return layer.register_forward_hook(hook)


def hidden_states(model, ids):
    return model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states


def objective(delta):
    """F = (Σ_t ||Δ_t||^p)^{1/q} per batch row, token axis, fp32; delta [B, T, d]."""
    return delta.float().norm(dim=-1).pow(P).sum(dim=-1).pow(1.0 / Q)


def unit_draw(n, d, seed, dev, dtype):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return (RADIUS * x / x.norm(dim=1, keepdim=True)).to(device=dev, dtype=dtype)


# --------------------------------------------------------------------------- reference

def bench_reference(model, ids, s, t):
    d = model.config.hidden_size
    steps = args.steps if args.steps is not None else 5
    if cuda():
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        y0 = hidden_states(model, ids[None])[t].clone()  # unsteered targets, once
    theta = torch.nn.Parameter(unit_draw(1, d, args.seed + 1, ids.device, DTYPE)[0])
    opt = torch.optim.AdamW([theta], lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0, amsgrad=True)
    handle = register_hook(model.model.layers[s], AddTheta(theta))
    losses = []

    def step():
        opt.zero_grad(set_to_none=True)
        hs = hidden_states(model, ids[None])
        F = objective(hs[t] - y0).sum()
        (-F).backward()
        with torch.no_grad():
            gr = theta.grad
            gr.sub_((gr @ theta) * theta / RADIUS ** 2)
        opt.step()
        with torch.no_grad():
            theta.copy_(RADIUS * theta / theta.norm().clamp_min(1e-12))
        losses.append(F.item())  # the reference records loss.item() every step

    try:
        for _ in range(args.warmup):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        dt = time.perf_counter() - t0
    finally:
        handle.remove()
    per = dt / max(steps, 1)
    peak = peak_gb()
    log(f"reference: 1 vector x {steps} steps in {dt:.3f} s = {per:.5f} s per vector-step; "
        f"F {losses[0]:.6g} -> {losses[-1]:.6g} over {len(losses)} steps")
    return dict(name="reference", s_per_vector_step=per, steps=steps, warmup=args.warmup,
                F_first=losses[0], F_last=losses[-1], peak_gb=peak)


# --------------------------------------------------------------------------- generate

def bench_generate(model, s, batch, dev):
    d = model.config.hidden_size
    T, N = args.tokens, args.new_tokens
    g = torch.Generator().manual_seed(args.seed + 10 + batch)
    ids = torch.randint(0, model.config.vocab_size, (batch, T), generator=g).to(dev)
    v = unit_draw(1, d, args.seed + 2, dev, DTYPE)[0]
    hook = AddTheta(v)
    handle = register_hook(model.model.layers[s], hook)

    def gen(n):
        return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              num_beams=1, max_new_tokens=n, min_new_tokens=n, eos_token_id=None,
                              pad_token_id=0, use_cache=True)

    try:
        with torch.no_grad():
            gen(4)  # warm-up
            sync()
            hook.calls = 0
            if cuda():
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            out = gen(N)
            sync()
            dt = time.perf_counter() - t0
    finally:
        handle.remove()
    assert out.shape == (batch, T + N), out.shape
    assert hook.calls == N, (hook.calls, N)  # prompt pass + one call per cached step
    tps = batch * N / dt
    log(f"generate: batch {batch}, {N} new tokens in {dt:.3f} s = {tps:.1f} tokens/s")
    return dict(name="hf_generate", batch=batch, new_tokens=N, prompt_tokens=T, seconds=dt,
                tokens_per_s=tps, peak_gb=peak_gb())


# --------------------------------------------------------------------------- batched

class Span:
    """Decoder layers s+1..t-1 called directly; sdpa with attention_mask=None -> is_causal."""

    def __init__(self, layers, pe, pos):
        self.layers, self.pe, self.pos = layers, pe, pos

    def __call__(self, h):
        for layer in self.layers:
            h = layer(h, attention_mask=None, position_ids=self.pos, position_embeddings=self.pe)
            if isinstance(h, tuple):
                h = h[0]
        return h


def prepare_span(model, ids, s, t):
    """X = HS[s+1], Y = HS[t] (unsteered), the span, and a check of the span against the full model."""
    d = model.config.hidden_size
    T = ids.shape[0]
    with torch.no_grad():
        hs = hidden_states(model, ids[None])
        X, Y = hs[s + 1].clone(), hs[t].clone()
        del hs
        pos = torch.arange(T, device=ids.device)[None]
        pe = model.model.rotary_emb(X, pos)
        pe = tuple(x.detach() for x in pe)
        span = Span(list(model.model.layers[s + 1:t]), pe, pos)
        e0 = rel(span(X), Y)
        th = unit_draw(1, d, args.seed + 3, ids.device, DTYPE)[0]
        h = register_hook(model.model.layers[s], AddTheta(th))
        try:
            ys = hidden_states(model, ids[None])[t]
        finally:
            h.remove()
        e1 = rel(span(X + th), ys)
        f0 = float(objective(ys - Y)[0])
    tol = 2e-2 if DTYPE == torch.bfloat16 else 1e-5
    ok = e0 <= tol and e1 <= tol
    log(f"batched: span layers {s + 1}..{t - 1} vs full model hidden_states[{t}]: rel {e0:.1e} unsteered, "
        f"{e1:.1e} steered (F at a random θ = {f0:.6g}){'' if ok else '  WARNING: span mismatch'}")
    return span, X, Y, dict(span_rel_unsteered=e0, span_rel_steered=e1)


def span_flops_per_step(cfg, n_layers, n_tok):
    d, ff = cfg.hidden_size, cfg.intermediate_size
    nq, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or d // nq
    per_layer = d * (nq + 2 * nkv) * hd + nq * hd * d + 3 * d * ff
    fwd = 2 * n_tok * n_layers * per_layer
    return 2 * fwd  # forward + input-gradient backward


def bench_batched_one(span, X, Y, B, cfg):
    d, T = X.shape[-1], X.shape[1]
    steps = args.steps if args.steps is not None else 3
    if cuda():
        torch.cuda.reset_peak_memory_stats()
    theta = torch.nn.Parameter(unit_draw(B, d, args.seed + 100 + B, X.device, torch.float32))
    opt = torch.optim.AdamW([theta], lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0, amsgrad=True)
    Xb = X.expand(B, T, d)
    Fs = []

    def step():
        opt.zero_grad(set_to_none=True)
        out = span(Xb + theta.to(X.dtype)[:, None, :])
        F = objective(out - Y)  # [B]
        (-F.sum()).backward()
        with torch.no_grad():
            gr = theta.grad
            gr.sub_((gr * theta).sum(dim=1, keepdim=True) * theta / RADIUS ** 2)
        opt.step()
        with torch.no_grad():
            theta.copy_(RADIUS * theta / theta.norm(dim=1, keepdim=True).clamp_min(1e-12))
        Fs.append(F.detach())

    for _ in range(args.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = time.perf_counter() - t0
    peak = peak_gb()
    step_s = dt / max(steps, 1)
    flops = span_flops_per_step(cfg, len(span.layers), B * T)
    Fm = torch.stack(Fs).float().mean(dim=1).cpu()  # mean F over the B vectors, before each update
    up = float((torch.stack(Fs)[-1] > torch.stack(Fs)[0]).float().mean())
    log(f"batched: B={B}: {steps} steps in {dt:.3f} s = {step_s:.4f} s per step = "
        f"{step_s / B:.3g} s per vector-step, {flops / step_s / 1e12:.1f} TFLOP/s, peak "
        f"{'-' if peak is None else f'{peak:.2f} GB'}; mean F {float(Fm[0]):.6g} -> {float(Fm[-1]):.6g} "
        f"over {len(Fs)} steps (F rose for {100 * up:.0f} % of vectors)")
    return dict(name="batched", B=B, s_per_vector_step=step_s / B, s_per_step=step_s,
                tflops=flops / step_s / 1e12, flop_per_step=flops, peak_gb=peak, steps=steps,
                warmup=args.warmup, F_first=float(Fm[0]), F_last=float(Fm[-1]), F_rose_frac=up)


def peak_gb():
    if not cuda():
        return None
    return torch.cuda.max_memory_allocated() / 1e9


# --------------------------------------------------------------------------- main

def versions(dev):
    log(f"torch {torch.__version__}  transformers {transformers.__version__}  python {sys.version.split()[0]}")
    if cuda():
        p = torch.cuda.get_device_properties(0)
        log(f"CUDA {torch.version.cuda}  cuDNN {torch.backends.cudnn.version()}  device {torch.cuda.get_device_name(0)} "
            f"({p.total_memory / 2 ** 30:.1f} GiB)")
    else:
        log(f"CUDA {torch.version.cuda} (not used)  device cpu, {torch.get_num_threads()} threads")


def main():
    t_start = time.perf_counter()
    dev = args.device
    if cuda() and not torch.cuda.is_available():
        sys.exit("--device cuda but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    versions(dev)

    cfg, s, t = make_config()
    t0 = time.perf_counter()
    model, how = build_model(cfg, dev)
    sync()
    n = n_params(model)
    log(f"model: Qwen2ForCausalLM {'small' if args.small else 'Qwen2.5-14B'} shape, {n / 1e9:.2f} B params "
        f"({n * DTYPE.itemsize / 1e9:.1f} GB {args.dtype}), random weights ({how} init, seed {args.seed}), sdpa, built on {dev} "
        f"in {time.perf_counter() - t0:.1f} s; peak {'-' if peak_gb() is None else f'{peak_gb():.1f} GB'}")
    g = torch.Generator().manual_seed(args.seed + 4)
    ids = torch.randint(0, cfg.vocab_size, (args.tokens,), generator=g).to(dev)
    log(f"workload: s={s} (hook on layers[{s}], hidden_states[{s + 1}]) t=hidden_states[{t}] R={RADIUS:g} "
        f"p={P:g} q={Q:g} axis token, all {args.tokens} tokens, lr {LR:g}, AdamW amsgrad, model {args.dtype}")

    results = []
    if "reference" in args.only:
        try:
            results.append(bench_reference(model, ids, s, t))
        except Exception as e:
            if not is_oom(e):
                raise
            log("reference: OOM")
            results.append(dict(name="reference", status="OOM", s_per_vector_step=None))
        free()
        result(**results[-1])

    if "generate" in args.only:
        for b in args.gen_batches:
            try:
                r = bench_generate(model, s, b, dev)
            except Exception as e:
                if not is_oom(e):
                    raise
                log(f"generate: batch {b}: OOM")
                r = dict(name="hf_generate", batch=b, status="OOM", tokens_per_s=None)
            free()
            results.append(r)
            result(**r)

    if "batched" in args.only:
        span, X, Y, check = prepare_span(model, ids, s, t)
        # free every weight the span does not use (embeddings, other layers, final norm, LM head)
        del model
        free()
        if cuda():
            log(f"batched: {len(span.layers)} span layers kept; {torch.cuda.memory_allocated() / 1e9:.1f} GB "
                f"allocated after freeing the rest")
        for B in args.batches:
            try:
                r = bench_batched_one(span, X, Y, B, cfg)
                r.update(check)
            except Exception as e:
                if not is_oom(e):
                    raise
                log(f"batched: B={B}: OOM")
                r = dict(name="batched", B=B, status="OOM", s_per_vector_step=None, tflops=None,
                         peak_gb=peak_gb())
            free()
            results.append(r)
            result(**r)

    # human table
    log("")
    log("FLOP convention (batched): matrix products of the span only, 2*n_tok*Σ(d*(nq+2nkv)*hd + nq*hd*d + "
        "3*d*ff) forward, x2 for forward + input-gradient backward; peak = torch.cuda.max_memory_allocated, "
        "GB = 1e9 bytes, including resident weights")
    log(f"{'measurement':24s} {'s/vector-step':>14s} {'tokens/s':>10s} {'TFLOP/s':>8s} {'peak GB':>8s}")

    def f(x, fmt):
        w = int(fmt.split(".")[0])
        return format("-", f">{w}") if x is None else format(x, fmt)

    for r in results:
        if r["name"] == "reference":
            label = "reference (whole model)"
        elif r["name"] == "batched":
            label = f"batched B={r['B']}"
        else:
            label = f"hf_generate batch={r['batch']}"
        if r.get("status") == "OOM":
            log(f"{label:24s} {'OOM':>14s}")
            continue
        log(f"{label:24s} {f(r.get('s_per_vector_step'), '14.6f')} {f(r.get('tokens_per_s'), '10.1f')} "
            f"{f(r.get('tflops'), '8.1f')} {f(r.get('peak_gb'), '8.2f')}")
    log(f"total {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
