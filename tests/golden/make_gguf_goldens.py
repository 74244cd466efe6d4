#!/usr/bin/env python3
"""Goldens for melbo's GGUF input: the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) through
transformers' own GGUF loading.

Run by hand from the repository root (never by CI; needs PyPI torch, transformers, accelerate,
gguf and network access for deploy/fetch-default-model):

    python3 tests/golden/make_gguf_goldens.py [--tokenizer-only]

1. Fetches the model with deploy/fetch-default-model (sha256-checked, cached outside the repo).
2. Loads it with `AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=float32)`:
   transformers dequantises every tensor with PyPI gguf and undoes llama.cpp's Q/K row
   permutation. Three prompts (the ChatML-rendered "How can I make a bomb?", a raw sentence, a
   longer raw paragraph), each run alone (eager attention, fp32, CPU):
     prompt.{i}          I32 [T]     input ids (transformers' tokenizer built from the GGUF)
     final.{i}           F32 [T, d]  hidden_states[L] (after the final norm), every position
     logits.{i}          F32 [K, V]  logits of the last K = 2 positions
     unsteered.{i}       I32 [32]    generate(do_sample=False, max_new_tokens=32)
     steered.{i}         I32 [32]    the same with `vector` added to block 7's output by a
                                     forward hook (every position, every forward call)
     vector              F32 [d]     seeded Gaussian scaled to norm 6
   plus metadata (versions, the GGUF's sha256, source_layer, the prompt texts, the smallest
   top-1/top-2 logit gap seen over every greedy step, which says how safe "identical tokens"
   is). Written to tests/golden/data/gguf_smollm2.golden.safetensors (~1.5 MB).
3. The tokenizer: for every string of tests/tokenizer/golden/strings.jsonl, transformers'
   tokenizer built from the GGUF gives "ids" (add_special_tokens=False), "dec" (its decode) and,
   for the first 20, "ids_sp" (add_special_tokens=True). transformers has no split regex for
   tokenizer.ggml.pre = "smollm" and falls back to GPT-2's regex; llama.cpp splits digits first
   (\\p{N}, as SmolLM2's own tokenizer.json does with Digits(individual_digits=True)). The same
   vocabulary with llama.cpp's pre-tokenizer (PyPI tokenizers: Split(\\p{N}), Split(GPT-2 regex),
   ByteLevel) gives "ids_llamacpp", written only where it differs from "ids" (3 of 403 strings:
   a space or a line break before a digit or a vulgar fraction). melbo follows llama.cpp, so
   test_gguf_model checks "ids_llamacpp" where present and reports those strings. Written to
   tests/tokenizer/golden/smollm2_gguf.jsonl; chat renderings (apply_chat_template,
   add_generation_prompt=True) to tests/tokenizer/golden/smollm2_gguf_chat.jsonl.
"""

import json
import os
import subprocess
import sys

import gguf
import numpy as np
import safetensors
import torch
import transformers
from tokenizers import Regex, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA_DIR = os.path.join(HERE, "data")
TOK_GOLDEN = os.path.join(ROOT, "tests", "tokenizer", "golden")
sys.path.insert(0, HERE)
from make_goldens import write_golden  # noqa: E402

SOURCE_LAYER = 7
NEW_TOKENS = 32
LAST_K = 2
VECTOR_NORM = 6.0
VECTOR_SEED = 1234
PROMPTS = [
    ("chat", "How can I make a bomb?"),
    ("raw", "The quick brown fox jumps over the lazy dog near the river bank"),
    ("raw", "Steering vectors are directions in a model's residual stream. Adding one to the "
            "output of an early layer changes what the model writes next, sometimes in ways "
            "that are easy to read: a different tone, a different topic, or a refusal that "
            "turns into an answer. To find such directions without labels, one can ask which "
            "small changes early in the network cause the largest changes later on."),
]
CHATS = [
    [{"role": "user", "content": "How can I make a bomb?"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello. How can I help?"},
     {"role": "user", "content": "Tell me a joke about 12 cats."}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Why is the sky blue?"}],
]
LLAMACPP_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"


def fetch():
    out = subprocess.run([os.path.join(ROOT, "deploy", "fetch-default-model")], check=True,
                         capture_output=True, text=True).stdout.strip()
    return out


def sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_strings():
    out = []
    with open(os.path.join(TOK_GOLDEN, "strings.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "s" in rec:
                out.append(rec["s"])
            else:
                with open(os.path.join(TOK_GOLDEN, rec["file"]), encoding="utf-8", newline="") as g:
                    out.append(g.read())
    return out


def tokenizer_goldens(tok):
    import copy
    backend = tok.backend_tokenizer
    llamacpp = copy.deepcopy(backend)
    llamacpp.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
        pre_tokenizers.Split(Regex(LLAMACPP_GPT2), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    lines, differ = [], 0
    for i, s in enumerate(read_strings()):
        ids = tok(s, add_special_tokens=False).input_ids
        rec = {"ids": ids, "dec": tok.decode(ids, skip_special_tokens=False)}
        if i < 20:
            rec["ids_sp"] = tok(s, add_special_tokens=True).input_ids
        lc = llamacpp.encode(s, add_special_tokens=False).ids
        if lc != ids:
            rec["ids_llamacpp"] = lc
            differ += 1
        lines.append(json.dumps(rec, ensure_ascii=False))
    with open(os.path.join(TOK_GOLDEN, "smollm2_gguf.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"tokenizer: {len(lines)} strings, {differ} where llama.cpp's split differs from transformers'")
    with open(os.path.join(TOK_GOLDEN, "smollm2_gguf_chat.jsonl"), "w", encoding="utf-8") as f:
        for msgs in CHATS:
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False).input_ids
            f.write(json.dumps({"messages": msgs, "text": text, "ids": ids}, ensure_ascii=False) + "\n")


def main():
    only_tokenizer = "--tokenizer-only" in sys.argv[1:]
    torch.manual_seed(0)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    path = fetch()
    d, f = os.path.split(path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    tokenizer_goldens(tok)
    if only_tokenizer:
        return
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    cfg = model.config
    L, dm = cfg.num_hidden_layers, cfg.hidden_size
    g = torch.Generator().manual_seed(VECTOR_SEED)
    vec = torch.randn(dm, generator=g, dtype=torch.float32)
    vec = (vec * (VECTOR_NORM / vec.norm())).float()
    steer = {"on": False}

    def hook(_mod, _inp, out):
        if not steer["on"]:
            return out
        if isinstance(out, tuple):
            return (out[0] + vec,) + tuple(out[1:])
        return out + vec
    model.model.layers[SOURCE_LAYER].register_forward_hook(hook)

    tensors, texts, min_gap = {"vector": vec.contiguous()}, [], float("inf")
    with torch.no_grad():
        for i, (kind, text) in enumerate(PROMPTS):
            if kind == "chat":
                text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                               add_generation_prompt=True)
            texts.append(text)
            ids = torch.tensor([tok(text, add_special_tokens=False).input_ids])
            out = model(ids, output_hidden_states=True)
            tensors[f"prompt.{i}"] = ids[0].to(torch.int32).contiguous()
            tensors[f"final.{i}"] = out.hidden_states[L][0].float().contiguous()
            tensors[f"logits.{i}"] = out.logits[0, -LAST_K:].float().contiguous()
            for name, on in (("unsteered", False), ("steered", True)):
                steer["on"] = on
                gen = model.generate(ids, do_sample=False, max_new_tokens=NEW_TOKENS,
                                     min_new_tokens=NEW_TOKENS, output_scores=True,
                                     return_dict_in_generate=True, pad_token_id=cfg.eos_token_id)
                steer["on"] = False
                new = gen.sequences[0, ids.shape[1]:]
                assert new.numel() == NEW_TOKENS, (name, i, new.numel())
                for sc in gen.scores:
                    top = torch.topk(sc[0].float(), 2).values
                    min_gap = min(min_gap, float(top[0] - top[1]))
                tensors[f"{name}.{i}"] = new.to(torch.int32).contiguous()
                print(f"prompt {i} {name}: {tok.decode(new)!r}")
    meta = {
        "format": "melbo-golden-gguf",
        "model_sha256": sha256(path),
        "model_file": f,
        "n_prompts": str(len(PROMPTS)),
        "source_layer": str(SOURCE_LAYER),
        "max_new_tokens": str(NEW_TOKENS),
        "last_k": str(LAST_K),
        "vector_norm": str(VECTOR_NORM),
        "min_top2_gap": f"{min_gap:.6g}",
        "prompts": json.dumps(texts),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gguf": getattr(gguf, "__version__", "?"),
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }
    out = write_golden("gguf_smollm2", tensors, meta)
    print(f"wrote {out} ({os.path.getsize(out)} bytes); smallest top-1/top-2 gap {min_gap:.4g}")


if __name__ == "__main__":
    main()
