#!/usr/bin/env python3
"""Tiny checkpoints and transformers goldens for the issue-21 families: Gemma 2, Gemma 3 (text,
and the language model of a gemma3 image-text checkpoint), OLMo 2 and Phi-3.

Run by hand from the repository root (never by CI):

    python3 tests/golden/make_family_goldens.py

Writes tests/golden/family_models/<name>/ and tests/golden/data/<name>.golden.safetensors (the format of
make_goldens.py: hidden states, logits, functional, grad) plus
tests/golden/data/gen_<name>.golden.safetensors (32 greedy tokens, unsteered and steered by a
forward hook on block s that adds a vector at every position and every cached step). The models
are smaller than make_goldens.py's (d = 32, vocab 256, MLP 64) to keep the committed data small.
See tests/golden/README.md ("Issue-21 families").
"""

import copy
import json
import os
import shutil
import sys

import safetensors
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    MixtralConfig,
    MixtralForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_goldens as mg  # noqa: E402

# its own directory: tests that take every dir of models/ (tests/gpu) stay on the Llama family
MODELS_DIR = os.path.join(HERE, "family_models")
DATA_DIR = mg.DATA_DIR
S, T = 1, 4
N_NEW = 32
WINDOW = 4  # sliding window of the Gemma models: shorter than both prompts (7 and 13 tokens)

COMMON = dict(
    hidden_size=32,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_hidden_layers=5,
    intermediate_size=64,
    vocab_size=256,
    max_position_embeddings=256,
    pad_token_id=0,
    bos_token_id=2,
    eos_token_id=1,
)

SPECS = {
    "gemma2": (Gemma2Config, Gemma2ForCausalLM, dict(
        head_dim=16, query_pre_attn_scalar=24, attn_logit_softcapping=1.5,
        final_logit_softcapping=5.0, sliding_window=WINDOW, rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), 2101),
    "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM, dict(
        head_dim=16, query_pre_attn_scalar=16, sliding_window=WINDOW, rms_norm_eps=1e-6,
        layer_types=["sliding_attention", "sliding_attention", "full_attention",
                     "sliding_attention", "full_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
        tie_word_embeddings=True), 2102),
    "olmo2": (Olmo2Config, Olmo2ForCausalLM, dict(
        rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), 2133),
    "phi3": (Phi3Config, Phi3ForCausalLM, dict(
        rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}),
        2124),
    # mixture of experts: 4 experts, top 2; Mixtral renormalises the top-k weights, this
    # Qwen3-MoE does not (norm_topk_prob false) so both router backward branches are tested
    "mixtral": (MixtralConfig, MixtralForCausalLM, dict(
        num_local_experts=4, num_experts_per_tok=2, rms_norm_eps=1e-5, tie_word_embeddings=False,
        intermediate_size=32,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), 2105),
    "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM, dict(
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=False,
        head_dim=16, rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), 2116),
    # Qwen2-MoE: experts plus a shared expert of another width behind a sigmoid gate, q/k/v bias
    "qwen2_moe": (Qwen2MoeConfig, Qwen2MoeForCausalLM, dict(
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        shared_expert_intermediate_size=48, norm_topk_prob=False, qkv_bias=True,
        rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), 2127),
}
GEMMA = ("gemma2", "gemma3")
MOE = ("mixtral", "qwen3_moe", "qwen2_moe")


def log(*a):
    print(*a, flush=True)


def reinit(model, seed, gemma):
    """make_goldens' initialisation; Gemma norms store w with the effective scale 1 + w, so they
    get 0.2 N(0, 1) (effective 1 + 0.2 N), the others 1 + 0.2 N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                v = mg.NORM_STD * torch.randn(p.shape, generator=g) + (0.0 if gemma else 1.0)
            elif name.endswith(".bias"):
                v = mg.BIAS_STD * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in name:  # Gemma scales embeddings by sqrt(d): keep rows O(1)
                std = p.shape[1] ** -0.5 if gemma else mg.EMBED_STD
                v = std * torch.randn(p.shape, generator=g)
            elif name.endswith(".weight") and p.dim() == 2:
                v = mg.WEIGHT_STD * torch.randn(p.shape, generator=g)
            elif name.endswith("_proj") and p.dim() == 3:  # fused experts [E, out, in]
                v = mg.WEIGHT_STD * torch.randn(p.shape, generator=g)
            else:
                raise RuntimeError(f"don't know how to initialise {name}")
            p.copy_(v)


def build(name):
    cfg_cls, model_cls, kw, seed = SPECS[name]
    extra = {"experts_implementation": "eager"} if name in MOE else {}  # fp64 copies need it
    cfg = cfg_cls(**{**COMMON, **copy.deepcopy(kw)}, attn_implementation="eager", **extra)
    torch.manual_seed(seed)
    model = model_cls(cfg).float().eval()
    reinit(model, seed, name in GEMMA)
    with torch.no_grad():  # bf16-exact values: stored as BF16 (half the bytes), computed in fp32
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model, seed


def save_bf16(model, name):
    """save_pretrained of a BF16 copy; its values are exactly the fp32 model's."""
    out = os.path.join(MODELS_DIR, name)
    bf = copy.deepcopy(model).to(torch.bfloat16)
    bf.config.dtype = torch.bfloat16
    bf.save_pretrained(out)
    return out


def greedy(model, ids, s, vec):
    """32 greedy tokens with HF generate (KV cache); vec added to block s's output at every
    position and on every call when not None. Returns tokens and the smallest top-2 gap."""
    handle = None
    model.generation_config.eos_token_id = None  # never stop early: melbo gen --ignore-eos
    if vec is not None:
        def hook(m, a, out):
            if isinstance(out, tuple):
                return (out[0] + vec,) + tuple(out[1:])
            return out + vec
        handle = model.model.layers[s].register_forward_hook(hook)
    try:
        with torch.no_grad():
            out = model.generate(input_ids=ids[None], attention_mask=torch.ones_like(ids[None]),
                                 do_sample=False, num_beams=1, max_new_tokens=N_NEW,
                                 repetition_penalty=1.0,
                                 output_scores=True, return_dict_in_generate=True,
                                 pad_token_id=0)
            new = out.sequences[0, ids.shape[0]:]
            gap = min(float(torch.topk(sc[0], 2).values[0] - torch.topk(sc[0], 2).values[1])
                      for sc in out.scores)
            # the same tokens from full (uncached) forwards of the whole sequence each step
            seq = ids.clone()
            for k in range(N_NEW):
                nxt = model(input_ids=seq[None], use_cache=False).logits[0, -1].argmax()
                assert int(nxt) == int(new[k]), (k, int(nxt), int(new[k]))
                seq = torch.cat([seq, nxt[None]])
    finally:
        if handle:
            handle.remove()
    return new.to(torch.int32), gap


def gen_goldens(model, name, tensors, seed):
    d = model.config.hidden_size
    g = torch.Generator().manual_seed(9000 + seed)
    vec = torch.randn(d, generator=g)
    # norm: half the typical norm of the residual stream at block s's output
    scale = 0.5 * float(tensors[f"hidden.0.{S + 1}"].norm(dim=-1).mean())
    vec = (scale * vec / vec.norm()).float()
    out = {"vector": vec.float()}
    gaps, changed = [], []
    for i in range(2):
        ids = tensors[f"input_ids.{i}"].long()
        out[f"prompt.{i}"] = ids.to(torch.int32)
        un, g0 = greedy(model, ids, S, None)
        st, g1 = greedy(model, ids, S, vec)
        changed.append(not torch.equal(un, st))
        out[f"unsteered.{i}"] = un
        out[f"steered.{i}"] = st
        gaps += [g0, g1]
    assert min(gaps) > 1e-3, (name, gaps)
    assert any(changed), f"{name}: steering changed nothing"
    meta = {"format": "melbo-gen-golden", "model": name, "source_layer": str(S), "n_prompts": "2",
            "max_new_tokens": str(N_NEW), "min_top2_gap": "%.3g" % min(gaps),
            "steering": "vector added to the output of block source_layer at every position, "
                        "every forward call (prompt and cached steps)",
            "torch_version": torch.__version__, "transformers_version": transformers.__version__}
    path = os.path.join(DATA_DIR, f"gen_{name}.golden.safetensors")
    save_file(out, path, metadata=meta)
    mg.canonicalise_header(path)
    return min(gaps)


def effect(model, ids, attr, value):
    """rel change of the logits when config attribute attr is set to value (does it matter?)."""
    with torch.no_grad():
        a = model(input_ids=ids[None], use_cache=False).logits[0]
        m2 = copy.deepcopy(model)
        setattr(m2.config, attr, value)
        for layer in m2.model.layers:
            if hasattr(layer.self_attn, attr):
                setattr(layer.self_attn, attr, value)
            if hasattr(layer, "attention_type") and attr == "sliding_window":
                pass
        b = m2(input_ids=ids[None], use_cache=False).logits[0]
    return mg.rel(b, a)


def write_gemma3_multimodal(text_model):
    """A gemma3 (image-text) checkpoint directory holding only gemma3's language model under
    language_model.model. (transformers v4 names), config with model_type gemma3 + text_config."""
    out = os.path.join(MODELS_DIR, "gemma3_mm")
    os.makedirs(out, exist_ok=True)
    sd = text_model.state_dict()
    tensors = {"language_model." + k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()
               if k != "lm_head.weight"}
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    text_cfg = json.load(open(os.path.join(MODELS_DIR, "gemma3", "config.json")))
    text_cfg.pop("architectures", None)
    cfg = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
           "text_config": text_cfg, "vision_config": {"model_type": "siglip_vision_model"},
           "eos_token_id": [1, 106], "image_token_index": 255, "mm_tokens_per_image": 4}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


def write_byte_tokenizer(out):
    """A 256-id byte-level tokenizer (one id per byte, no merges, no special tokens) so that the
    tiny models' completions have text (the layout tests compare banks' completions)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 256}, f,
                  indent=2, sort_keys=True)
    assert Tokenizer.from_file(os.path.join(out, "tokenizer.json")).encode("Hi!").ids == [72, 105, 33]


def router_margin(model, ids_list):
    """Smallest gap between the k-th and (k+1)-th router probability over every token and MoE
    block (the selection must not be a near-tie, or fp reordering could flip it)."""
    k = model.config.num_experts_per_tok
    gaps = []

    def hook(mod, args, out):
        x = args[0].reshape(-1, args[0].shape[-1])
        p = torch.softmax(x @ mod.weight.T, dim=-1)
        top = torch.topk(p, k + 1, dim=-1).values
        gaps.append(float((top[:, k - 1] - top[:, k]).min()))

    hs = [layer.mlp.gate.register_forward_hook(hook) for layer in model.model.layers]
    with torch.no_grad():
        for ids in ids_list:
            model(input_ids=ids[None], use_cache=False)
    for h in hs:
        h.remove()
    return min(gaps)


def write_gemma3_vision_only():
    """A gemma3 directory whose checkpoint holds no language model (a vision tensor only): melbo
    must refuse it naming what is missing."""
    out = os.path.join(MODELS_DIR, "gemma3_no_lm")
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(MODELS_DIR, "gemma3_mm", "config.json"), os.path.join(out, "config.json"))
    save_file({"vision_tower.vision_model.post_layernorm.weight": torch.ones(4)},
              os.path.join(out, "model.safetensors"), metadata={"format": "pt"})


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    log(f"torch {torch.__version__}  transformers {transformers.__version__}  "
        f"safetensors {safetensors.__version__}")
    models = {}
    for name in SPECS:
        shutil.rmtree(os.path.join(MODELS_DIR, name), ignore_errors=True)
        model, seed = build(name)
        models[name] = model
        d = save_bf16(model, name)
        tensors, meta, info = mg.make_goldens(model, name, seed, S, T)
        mg.write_golden(name, tensors, meta)
        # reloaded MoE models use transformers' default grouped experts: equal within tolerance
        # loaded as fp32 (BF16 upcast at load: exact; Gemma's embed_scale buffer stays fp32)
        e = mg.reload_and_compare(d, tensors, dtype=torch.float32, cls=type(model),
                                  exact=name not in MOE)
        gap = gen_goldens(model, name, tensors, seed)
        write_byte_tokenizer(d)
        ids = tensors["input_ids.1"].long()
        notes = []
        if name in MOE:
            mgap = router_margin(model, [tensors["input_ids.0"].long(), tensors["input_ids.1"].long()])
            assert mgap > 1e-4, (name, mgap)
            notes.append("smallest router top-k margin %.2e" % mgap)
        if name == "gemma2":
            notes.append("attn softcap off changes logits by rel %.2e" % effect(model, ids, "attn_logit_softcapping", None))
            notes.append("final softcap off: rel %.2e" % effect(model, ids, "final_logit_softcapping", None))
        log(f"== {name}: {type(model).__name__}, reload rel {e:.1e}, min top-2 gap {gap:.3g}; "
            + "; ".join(notes))
        for i, c in enumerate(info["checks"]):
            log(f"   prompt {i}: F={c['F']:.6g} |grad|={c['grad_norm']:.4g} rel(fp32,fp64) logits "
                f"{c['rel_logits_fp64']:.1e} grad {c['rel_grad_fp64']:.1e} fd {c['fd_rel']:.1e}")
    shutil.rmtree(os.path.join(MODELS_DIR, "gemma3_mm"), ignore_errors=True)
    write_gemma3_multimodal(models["gemma3"])
    write_byte_tokenizer(os.path.join(MODELS_DIR, "gemma3_mm"))
    shutil.rmtree(os.path.join(MODELS_DIR, "gemma3_no_lm"), ignore_errors=True)
    write_gemma3_vision_only()
    total = 0
    for name in list(SPECS) + ["gemma3_mm"]:
        for f in os.listdir(os.path.join(MODELS_DIR, name)):
            total += os.path.getsize(os.path.join(MODELS_DIR, name, f))
    for name in SPECS:
        for f in (f"{name}.golden.safetensors", f"gen_{name}.golden.safetensors"):
            total += os.path.getsize(os.path.join(DATA_DIR, f))
    log(f"written: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
