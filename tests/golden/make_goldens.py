#!/usr/bin/env python3
"""Generate the tiny HF checkpoints and the PyTorch/transformers golden data for melbo.

Run by hand from the repository root (never by CI):

    pip install -r tests/golden/requirements.txt
    python3 tests/golden/make_goldens.py

Everything under tests/golden/models/<name>/ and tests/golden/data/<name>.golden.safetensors
for the models listed in MODELS below is deleted and regenerated from fixed seeds, on the CPU,
in fp32, with eager attention.  See tests/golden/README.md for what each file contains.
"""

import copy
import json
import os
import shutil
import sys

import numpy as np
import safetensors
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS_DIR = os.path.join(HERE, "models")
DATA_DIR = os.path.join(HERE, "data")

PROMPT_LENGTHS = (7, 13)
WEIGHT_STD = 0.1  # every nn.Linear weight (incl. lm_head)
EMBED_STD = 1.0  # embed_tokens: the residual stream starts O(1)
BIAS_STD = 0.1  # every bias (Qwen2 q/k/v)
NORM_STD = 0.2  # every RMSNorm weight = 1 + NORM_STD * randn
FP32_REL_TOL = 1e-4  # DESIGN.md §7: fp32 paths must agree to this
N_LAYERS = 5
SOURCE_LAYER = 1
TARGET_LAYER = 4

COMMON = dict(
    hidden_size=64,
    num_attention_heads=4,
    num_hidden_layers=N_LAYERS,
    intermediate_size=160,
    vocab_size=512,
    max_position_embeddings=256,
)

# name -> (config class, model class, config kwargs, init seed)
SPECS = {
    "llama3": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(
            num_key_value_heads=2,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        ),
        1001,
    ),
    "llama2": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(
            num_key_value_heads=4,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
        ),
        1002,
    ),
    "mistral": (
        MistralConfig,
        MistralForCausalLM,
        dict(
            num_key_value_heads=2,
            head_dim=24,
            sliding_window=4096,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        1003,
    ),
    "qwen2": (
        Qwen2Config,
        Qwen2ForCausalLM,
        dict(
            num_key_value_heads=4,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        1004,
    ),
    "qwen3": (
        Qwen3Config,
        Qwen3ForCausalLM,
        dict(
            num_key_value_heads=2,
            head_dim=32,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        1005,
    ),
    # llama3 architecture, other seed, every parameter rounded to bf16 (fp32 twin of llama3_bf16)
    "llama3_bf16r": None,
}
BF16_SEED = 1006
DATA_SEED_BASE = 5000  # prompts and functionals of model k use seed DATA_SEED_BASE + init seed

# Every directory / file this script owns (deleted and rewritten on each run).
MODEL_NAMES = ["llama3", "llama2", "mistral", "qwen2", "qwen3", "llama3_bf16r", "llama3_bf16",
               "qwen3_sharded", "qwen1"]
GOLDEN_NAMES = ["llama3", "llama2", "mistral", "qwen2", "qwen3", "llama3_bf16r", "qwen1"]


def log(*a):
    print(*a, flush=True)


def rel(a, b):
    a = a.double()
    b = b.double()
    return float((a - b).abs().max() / b.abs().max())


# --------------------------------------------------------------------------- model construction

def is_norm_weight(name):
    # input_layernorm, post_attention_layernorm, model.norm, q_norm, k_norm
    return name.endswith("norm.weight")


def reinit(model, seed):
    """Re-initialise every parameter from a seeded generator (HF zero-inits biases, 1-inits norms)."""
    g = torch.Generator().manual_seed(seed)
    seen = []
    with torch.no_grad():
        for name, p in model.named_parameters():  # deduplicated: a tied lm_head is not listed
            if is_norm_weight(name):
                v = 1.0 + NORM_STD * torch.randn(p.shape, generator=g)
            elif name.endswith(".bias"):
                v = BIAS_STD * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in name:
                v = EMBED_STD * torch.randn(p.shape, generator=g)
            elif name.endswith(".weight") and p.dim() == 2:
                v = WEIGHT_STD * torch.randn(p.shape, generator=g)
            else:
                raise RuntimeError(f"don't know how to initialise {name} {tuple(p.shape)}")
            p.copy_(v.to(p.dtype))
            seen.append(name)
    return seen


def build(name):
    if name == "llama3_bf16r":
        cfg_cls, model_cls, kw, _ = SPECS["llama3"]
        seed = BF16_SEED
    else:
        cfg_cls, model_cls, kw, seed = SPECS[name]
    cfg = cfg_cls(**COMMON, **copy.deepcopy(kw), attn_implementation="eager")
    torch.manual_seed(seed)
    model = model_cls(cfg).float().eval()
    seen = reinit(model, seed)
    if name == "llama3_bf16r":
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight is model.model.embed_tokens.weight, "tie broken"
    return model, seed, seen


def save_hf(model, name, **kw):
    out = os.path.join(MODELS_DIR, name)
    model.save_pretrained(out, **kw)
    return out


def st_files(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))


def st_header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


# --------------------------------------------------------------------------- goldens

class ReplaceOutput:
    """Forward hook on decoder block s: replace its output hidden states by a fresh leaf h
    (optionally plus delta, for finite differences)."""

    def __init__(self):
        self.h = None
        self.delta = None
        self.output_kind = None

    def __call__(self, module, args, output):
        hs = output[0] if isinstance(output, tuple) else output
        self.output_kind = (f"tuple(len={len(output)})" if isinstance(output, tuple)
                            else type(output).__name__)
        h = hs.detach().clone()
        if self.delta is not None:
            h = h + self.delta.to(h.dtype)
        h.requires_grad_(True)
        self.h = h
        if isinstance(output, tuple):
            return (h,) + tuple(output[1:])
        return h


def run_prompt(model, ids, W, s, t, delta=None):
    """One prompt alone (batch 1, no mask). Returns hidden states, logits, F, dF/dh[s+1]."""
    hook = ReplaceOutput()
    hook.delta = delta
    # prepend: run before transformers' own output-capturing hook (installed on the first forward
    # with output_hidden_states), so hidden_states[s+1] is h itself
    handle = model.model.layers[s].register_forward_hook(hook, prepend=True)
    try:
        out = model(input_ids=ids[None, :], output_hidden_states=True, use_cache=False)
    finally:
        handle.remove()
    hs = out.hidden_states
    L = model.config.num_hidden_layers
    assert len(hs) == L + 1, len(hs)
    F = (W.to(hs[t].dtype) * hs[t][0]).sum()
    F.backward()
    grad = hook.h.grad
    assert grad is not None, "no gradient reached the leaf"
    same_object = hs[s + 1] is hook.h
    assert torch.equal(hs[s + 1][0].detach(), hook.h[0].detach()), "hidden_states[s+1] != h"
    return dict(
        hidden=[x[0].detach() for x in hs],
        logits=out.logits[0].detach(),
        F=float(F.detach()),
        grad=grad[0].detach(),
        output_kind=hook.output_kind,
        same_object=same_object,
    )


def check_final_norm(model, ids, res):
    """hidden_states[L] is HF's last_hidden_state, i.e. after the final norm."""
    cap = {}
    h = model.model.layers[-1].register_forward_hook(
        lambda m, a, o: cap.__setitem__("raw", (o[0] if isinstance(o, tuple) else o).detach()))
    with torch.no_grad():
        model(input_ids=ids[None, :], use_cache=False)
    h.remove()
    normed = model.model.norm(cap["raw"])[0]
    assert torch.equal(normed, res["hidden"][-1]), "hidden_states[L] is not norm(block L-1 output)"
    assert not torch.equal(cap["raw"][0], res["hidden"][-1])
    emb = model.model.embed_tokens(ids)
    assert torch.equal(emb.detach(), res["hidden"][0]), "hidden_states[0] != embeddings"


def make_goldens(model, name, seed, s, t):
    cfg = model.config
    L, d, V = cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size
    assert 0 <= s and s + 2 <= t <= L - 1
    g = torch.Generator().manual_seed(DATA_SEED_BASE + seed)
    prompts = [torch.randint(0, V, (n,), generator=g, dtype=torch.int64) for n in PROMPT_LENGTHS]
    Ws = [torch.randn(n, d, generator=g) for n in PROMPT_LENGTHS]

    model64 = copy.deepcopy(model).double()
    tensors = {}
    Fs = []
    info = {}
    for i, (ids, W) in enumerate(zip(prompts, Ws)):
        r = run_prompt(model, ids, W, s, t)
        check_final_norm(model, ids, r)
        info["output_kind"] = r["output_kind"]
        info["same_object"] = r["same_object"]
        # fp64 cross-check of the fp32 numbers
        r64 = run_prompt(model64, ids, W, s, t)
        for k in range(L + 1):
            e = rel(r["hidden"][k], r64["hidden"][k])
            assert e <= FP32_REL_TOL, (name, i, k, e)
        e_logit = rel(r["logits"], r64["logits"])
        e_grad = rel(r["grad"], r64["grad"])
        assert e_logit <= FP32_REL_TOL and e_grad <= FP32_REL_TOL, (e_logit, e_grad)
        # central finite difference of F along a random direction, on the fp64 copy.  HF computes
        # RMSNorm and the eager softmax in fp32 even for an fp64 model, so F carries ~1e-7 relative
        # noise: use a moderate step (truncation error O(eps^2)) and a 1e-3 tolerance.
        v = torch.randn(ids.shape[0], d, generator=g, dtype=torch.float64)
        v = v / v.norm()
        eps = 1e-2
        Fp = run_prompt(model64, ids, W, s, t, delta=eps * v[None])["F"]
        Fm = run_prompt(model64, ids, W, s, t, delta=-eps * v[None])["F"]
        fd = (Fp - Fm) / (2 * eps)
        an = float((r64["grad"] * v).sum())
        e_fd = abs(fd - an) / float(r64["grad"].norm())  # |v| = 1
        assert e_fd <= 1e-3, (name, i, fd, an)
        info.setdefault("checks", []).append(
            dict(rel_logits_fp64=e_logit, rel_grad_fp64=e_grad, fd_rel=e_fd, F=r["F"],
                 grad_norm=float(r["grad"].norm()), grad_maxabs=float(r["grad"].abs().max()),
                 hidden_rms=[float(x.pow(2).mean().sqrt()) for x in r["hidden"]],
                 logits_std=float(r["logits"].std())))

        tensors[f"input_ids.{i}"] = ids.to(torch.int32)
        for k in range(L + 1):
            tensors[f"hidden.{i}.{k}"] = r["hidden"][k].float().contiguous()
        tensors[f"logits.{i}"] = r["logits"].float().contiguous()
        tensors[f"functional.{i}"] = W.float().contiguous()
        tensors[f"grad.{i}"] = r["grad"].float().contiguous()
        Fs.append(r["F"])

    for k, x in tensors.items():
        if x.is_floating_point():
            assert torch.isfinite(x).all(), f"{name}: {k} not finite"
    for i in range(len(prompts)):
        assert tensors[f"grad.{i}"].abs().max() > 1e-3, f"{name}: grad.{i} (nearly) zero"
        # hidden states must actually vary between layers and tokens
        for k in range(L + 1):
            assert tensors[f"hidden.{i}.{k}"].std() > 0.1, (name, i, k)

    meta = {
        "format": "melbo-golden",
        "version": "1",
        "model": name,
        "architecture": cfg.architectures[0] if cfg.architectures else type(model).__name__,
        "source_layer": str(s),
        "target_layer": str(t),
        "n_prompts": str(len(prompts)),
        "n_layers": str(L),
        "d_model": str(d),
        "vocab_size": str(V),
        "objective": "F = sum_i sum(functional.i * hidden.i.<target_layer>); grad.i = dF/dhidden.i.<source_layer+1>",
        "objective_F": json.dumps(["%.9g" % f for f in Fs]),
        "hidden_last_is_final_normed": "true",
        "attn_implementation": "eager",
        "dtype": "float32",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "safetensors_version": safetensors.__version__,
        "seed": str(DATA_SEED_BASE + seed),
    }
    return tensors, meta, info


def canonicalise_header(path):
    """safetensors serialises __metadata__ from a hash map, so its key order (and the file's
    bytes) change from run to run.  Rewrite the header with the metadata keys sorted; the tensor
    entries and the byte buffer are untouched (offsets are relative to the buffer)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for k, v in hdr.items():
        out[k] = dict(sorted(v.items())) if k == "__metadata__" else v
    text = json.dumps(out, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-(8 + len(text)) % 8)  # buffer starts 8-aligned, as safetensors does it
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        f.write(raw[8 + n:])


def write_golden(name, tensors, meta):
    os.makedirs(DATA_DIR, exist_ok=True)
    path = os.path.join(DATA_DIR, f"{name}.golden.safetensors")
    save_file(tensors, path, metadata=meta)
    canonicalise_header(path)
    # read back
    back = load_file(path)
    assert set(back) == set(tensors)
    for k in tensors:
        assert torch.equal(back[k], tensors[k]), k
    with safe_open(path, "pt") as f:
        assert f.metadata() == meta
    return path


# --------------------------------------------------------------------------- reload checks

def reload_and_compare(dirname, ref_tensors, dtype=torch.float32, cls=None, exact=True):
    m = cls.from_pretrained(dirname, dtype=dtype, attn_implementation="eager").float().eval()
    worst = 0.0
    with torch.no_grad():
        for i in range(len(PROMPT_LENGTHS)):
            ids = ref_tensors[f"input_ids.{i}"].long()
            logits = m(input_ids=ids[None], use_cache=False).logits[0]
            e = rel(logits, ref_tensors[f"logits.{i}"])
            worst = max(worst, e)
            if exact:
                assert torch.equal(logits, ref_tensors[f"logits.{i}"]), (dirname, i, e)
    assert worst <= FP32_REL_TOL, (dirname, worst)
    return worst


# --------------------------------------------------------------------------- Qwen-1

def write_qwen1(qwen2_model):
    """Qwen-1 ('QWen', model_type qwen) layout of the (MHA) qwen2 model."""
    c = qwen2_model.config
    assert c.num_key_value_heads == c.num_attention_heads, "Qwen-1 is MHA only"
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    rp = c.rope_parameters
    assert rp.get("rope_type", "default") == "default"
    sd = {k: v.detach().clone().contiguous() for k, v in qwen2_model.state_dict().items()}
    t = {"transformer.wte.weight": sd["model.embed_tokens.weight"]}
    for n in range(c.num_hidden_layers):
        p = f"model.layers.{n}."
        q = f"transformer.h.{n}."
        t[q + "ln_1.weight"] = sd[p + "input_layernorm.weight"]
        t[q + "attn.c_attn.weight"] = torch.cat(
            [sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"],
             sd[p + "self_attn.v_proj.weight"]], 0)
        t[q + "attn.c_attn.bias"] = torch.cat(
            [sd[p + "self_attn.q_proj.bias"], sd[p + "self_attn.k_proj.bias"],
             sd[p + "self_attn.v_proj.bias"]], 0)
        t[q + "attn.c_proj.weight"] = sd[p + "self_attn.o_proj.weight"]
        t[q + "ln_2.weight"] = sd[p + "post_attention_layernorm.weight"]
        t[q + "mlp.w1.weight"] = sd[p + "mlp.up_proj.weight"]
        t[q + "mlp.w2.weight"] = sd[p + "mlp.gate_proj.weight"]
        t[q + "mlp.c_proj.weight"] = sd[p + "mlp.down_proj.weight"]
    t["transformer.ln_f.weight"] = sd["model.norm.weight"]
    t["lm_head.weight"] = sd["model.embed_tokens.weight"].clone()  # written explicitly (untied)
    t = {k: v.contiguous() for k, v in t.items()}

    cfg = {
        "architectures": ["QWenLMHeadModel"],
        "model_type": "qwen",
        "hidden_size": c.hidden_size,
        "num_attention_heads": c.num_attention_heads,
        "num_hidden_layers": c.num_hidden_layers,
        "kv_channels": head_dim,
        "intermediate_size": 2 * c.intermediate_size,
        "rotary_emb_base": rp["rope_theta"],
        "rotary_pct": 1.0,
        "layer_norm_epsilon": c.rms_norm_eps,
        "vocab_size": c.vocab_size,
        "seq_length": 256,
        "max_position_embeddings": 256,
        "no_bias": True,
        "tie_word_embeddings": False,
        "use_dynamic_ntk": True,
        "use_logn_attn": True,
        "bf16": False,
        "fp16": False,
        "fp32": True,
    }
    out = os.path.join(MODELS_DIR, "qwen1")
    os.makedirs(out)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file(t, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    return out, cfg


def qwen1_reference_forward(dirname, ids):
    """Independent plain-torch forward of the Qwen-1 layout, from the files on disk, following
    the original modeling_qwen.py semantics (short prompts: dynamic NTK and logn are inactive)."""
    cfg = json.load(open(os.path.join(dirname, "config.json")))
    w = load_file(os.path.join(dirname, "model.safetensors"))
    H, nh, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["kv_channels"]
    eps = cfg["layer_norm_epsilon"]
    T = ids.shape[0]
    assert T <= cfg["seq_length"]

    def rms(x, wt):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * wt

    inv = 1.0 / (cfg["rotary_emb_base"] ** (torch.arange(0, hd, 2).float() / hd))
    fr = torch.outer(torch.arange(T).float(), inv)
    emb = torch.cat([fr, fr], -1)
    cos, sin = emb.cos(), emb.sin()

    def rot(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return torch.cat([-x2, x1], -1)

    x = w["transformer.wte.weight"][ids]
    hidden = [x]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for n in range(cfg["num_hidden_layers"]):
        p = f"transformer.h.{n}."
        a = rms(x, w[p + "ln_1.weight"])
        qkv = a @ w[p + "attn.c_attn.weight"].T + w[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(H, -1)
        q, k, v = (z.view(T, nh, hd).transpose(0, 1) for z in (q, k, v))
        q = q * cos + rot(q) * sin
        k = k * cos + rot(k) * sin
        att = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5 + mask, -1)
        o = (att @ v).transpose(0, 1).reshape(T, nh * hd)
        x = x + o @ w[p + "attn.c_proj.weight"].T
        m = rms(x, w[p + "ln_2.weight"])
        a1 = m @ w[p + "mlp.w1.weight"].T
        a2 = m @ w[p + "mlp.w2.weight"].T
        x = x + (a1 * torch.nn.functional.silu(a2)) @ w[p + "mlp.c_proj.weight"].T
        hidden.append(x)
    xf = rms(x, w["transformer.ln_f.weight"])
    hidden[-1] = xf
    return hidden, xf @ w["lm_head.weight"].T


# --------------------------------------------------------------------------- main

def fsize(p):
    return os.path.getsize(p)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    log(f"torch {torch.__version__}  transformers {transformers.__version__}  "
        f"safetensors {safetensors.__version__}  numpy {np.__version__}  python {sys.version.split()[0]}")

    for n in MODEL_NAMES:
        shutil.rmtree(os.path.join(MODELS_DIR, n), ignore_errors=True)
    for n in GOLDEN_NAMES:
        p = os.path.join(DATA_DIR, f"{n}.golden.safetensors")
        if os.path.exists(p):
            os.remove(p)
    os.makedirs(MODELS_DIR, exist_ok=True)
    os.makedirs(DATA_DIR, exist_ok=True)

    written = []  # (path, note)
    summary = []
    goldens = {}
    models = {}
    for name in ["llama3", "llama2", "mistral", "qwen2", "qwen3", "llama3_bf16r"]:
        model, seed, seen = build(name)
        models[name] = model
        L = model.config.num_hidden_layers
        s, t = SOURCE_LAYER, TARGET_LAYER
        d = save_hf(model, name)
        tensors, meta, info = make_goldens(model, name, seed, s, t)
        path = write_golden(name, tensors, meta)
        goldens[name] = (tensors, meta)
        e = reload_and_compare(d, tensors, cls=type(model))
        log(f"\n== {name}: {type(model).__name__}, L={L}, d={model.config.hidden_size}, s={s}, t={t}, "
            f"{len(seen)} parameters re-initialised; decoder block output: {info['output_kind']}; "
            f"hidden_states[s+1] is h: {info['same_object']}; reload rel {e:.1e}")
        for i, c in enumerate(info["checks"]):
            log(f"   prompt {i}: F={c['F']:.6g} |grad|={c['grad_norm']:.4g} max|grad|={c['grad_maxabs']:.4g} "
                f"logits std={c['logits_std']:.3g} rel(fp32,fp64): logits {c['rel_logits_fp64']:.1e} "
                f"grad {c['rel_grad_fp64']:.1e}; fd rel {c['fd_rel']:.1e}")
            log("     hidden rms per layer: " + " ".join(f"{x:.3g}" for x in c["hidden_rms"]))
        summary.append((name, type(model).__name__, L, model.config.hidden_size, s, t, name))

    # --- tied qwen2: no lm_head tensor on disk
    keys = st_header(os.path.join(MODELS_DIR, "qwen2", "model.safetensors"))
    assert "lm_head.weight" not in keys, "qwen2 is tied: lm_head.weight must not be saved"
    for n in range(N_LAYERS):
        for pn in ("q_proj", "k_proj", "v_proj"):
            assert f"model.layers.{n}.self_attn.{pn}.bias" in keys

    # --- llama3_bf16: the bf16 tensors of llama3_bf16r, saved as bf16
    twin = models["llama3_bf16r"]
    bf = copy.deepcopy(twin).to(torch.bfloat16)
    bf.config.dtype = torch.bfloat16
    for p32, p16 in zip(twin.parameters(), bf.parameters()):
        assert torch.equal(p16.float(), p32), "twin is not bf16-exact"
    dbf = save_hf(bf, "llama3_bf16")
    hdr = st_header(os.path.join(dbf, "model.safetensors"))
    dts = {v["dtype"] for k, v in hdr.items() if k != "__metadata__"}
    assert dts == {"BF16"}, dts
    cj = json.load(open(os.path.join(dbf, "config.json")))
    assert cj.get("dtype", cj.get("torch_dtype")) == "bfloat16", cj
    e = reload_and_compare(dbf, goldens["llama3_bf16r"][0], dtype=torch.bfloat16, cls=LlamaForCausalLM)
    log(f"\n== llama3_bf16: BF16 on disk {sorted(dts)}, config dtype {cj.get('dtype', cj.get('torch_dtype'))}; "
        f"loaded and upcast to fp32 its logits equal llama3_bf16r's exactly (rel {e:.1e})")
    summary.append(("llama3_bf16", "LlamaForCausalLM (bf16)", N_LAYERS, 64, SOURCE_LAYER, TARGET_LAYER,
                    "llama3_bf16r"))

    # --- qwen3_sharded: same weights as qwen3, two shards + index
    q3 = models["qwen3"]
    total = sum(v.numel() * v.element_size() for v in q3.state_dict().values())
    dsh = None
    for frac in (0.6, 0.55, 0.65, 0.5, 0.7):
        shutil.rmtree(os.path.join(MODELS_DIR, "qwen3_sharded"), ignore_errors=True)
        dsh = save_hf(q3, "qwen3_sharded", max_shard_size=int(total * frac))
        if len(st_files(dsh)) == 2:
            break
    shards = st_files(dsh)
    assert len(shards) == 2, shards
    idx = json.load(open(os.path.join(dsh, "model.safetensors.index.json")))
    assert sorted(set(idx["weight_map"].values())) == shards
    sh_tensors = {}
    for sfile in shards:
        sh_tensors.update(load_file(os.path.join(dsh, sfile)))
    ref = load_file(os.path.join(MODELS_DIR, "qwen3", "model.safetensors"))
    assert set(sh_tensors) == set(ref) == set(idx["weight_map"])
    for k in ref:
        assert torch.equal(ref[k], sh_tensors[k]), k
    with open(os.path.join(MODELS_DIR, "qwen3", "config.json")) as a, open(os.path.join(dsh, "config.json")) as b:
        assert a.read() == b.read(), "qwen3_sharded config differs from qwen3"
    e = reload_and_compare(dsh, goldens["qwen3"][0], cls=Qwen3ForCausalLM)
    log(f"\n== qwen3_sharded: {shards} + model.safetensors.index.json (total_size "
        f"{idx['metadata'].get('total_size')}, max_shard_size {int(total * frac)}); same tensors as qwen3; "
        f"reload rel {e:.1e}")
    summary.append(("qwen3_sharded", "Qwen3ForCausalLM (2 shards)", N_LAYERS, 64, SOURCE_LAYER, TARGET_LAYER,
                    "qwen3"))

    # --- qwen1: Qwen-1 layout of qwen2, goldens = qwen2's
    d1, cfg1 = write_qwen1(models["qwen2"])
    t2, m2 = goldens["qwen2"]
    worst = 0.0
    for i in range(len(PROMPT_LENGTHS)):
        hid, logits = qwen1_reference_forward(d1, t2[f"input_ids.{i}"].long())
        worst = max(worst, rel(logits, t2[f"logits.{i}"]))
        for k, h in enumerate(hid):
            worst = max(worst, rel(h, t2[f"hidden.{i}.{k}"]))
    assert worst <= FP32_REL_TOL, worst
    m1 = dict(m2)
    m1["model"] = "qwen1"
    m1["architecture"] = "QWenLMHeadModel"
    m1["same_numbers_as"] = "qwen2"
    write_golden("qwen1", t2, m1)
    log(f"\n== qwen1: QWen layout of qwen2; independent plain-torch Qwen-1 forward of the files "
        f"reproduces qwen2's goldens, worst rel {worst:.1e}")
    summary.insert(4, ("qwen1", "QWenLMHeadModel (hand-written)", N_LAYERS, 64, SOURCE_LAYER, TARGET_LAYER,
                       "qwen1 (= qwen2)"))

    # --- table
    log("\nmodel dirs:")
    log(f"  {'name':15s} {'class':32s} {'L':>2s} {'d':>4s} {'s':>2s} {'t':>2s}  goldens")
    for n, cls, L, dd, s, t, g in summary:
        log(f"  {n:15s} {cls:32s} {L:2d} {dd:4d} {s:2d} {t:2d}  {g}")
    log("\nfiles written:")
    total = 0
    for root in (MODELS_DIR, DATA_DIR):
        for dp, _, fs in sorted(os.walk(root)):
            for f in sorted(fs):
                p = os.path.join(dp, f)
                rp = os.path.relpath(p, os.path.dirname(os.path.dirname(HERE)))
                if os.path.basename(dp) in MODEL_NAMES or f.endswith(".golden.safetensors"):
                    total += fsize(p)
                    log(f"  {fsize(p):10d}  {rp}")
    log(f"  {total:10d}  total ({total / 1e6:.2f} MB)")
    assert total < 15e6, "goldens too large"
    log("\nok")


if __name__ == "__main__":
    main()
