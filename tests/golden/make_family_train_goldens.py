#!/usr/bin/env python3
"""Training parity for the issue-21 families: make_train_goldens.py's independent PyTorch MELBO
reference algorithm (vectors one at a time, whole-model forward every step, AMSGrad, orthogonal)
on the tiny gemma2 and qwen3_moe models (both golden prompts, R = 4, p = 2, q = 1, 4 vectors x
25 steps).

Run by hand after make_family_goldens.py:   python3 tests/golden/make_family_train_goldens.py

Writes tests/golden/data/train_<case>.{init,golden}.safetensors in make_train_goldens.py's format;
tests/families/test_family_train.sh runs the matching melbo-rank train and compares.
"""
import os
import sys

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_train_goldens as tg  # noqa: E402

CASES = {"gemma2_2prompts": ("gemma2", 2.0, 1.0, "token", ":", (0, 1), 4.0, 7300),
         "qwen3_moe_2prompts": ("qwen3_moe", 2.0, 1.0, "token", ":", (0, 1), 4.0, 7301)}


def load_model(name, dtype=torch.float32):
    """make_train_goldens.load_model with transformers' eager experts (grouped_mm has no fp64)."""
    from transformers import AutoModelForCausalLM
    kw = {"experts_implementation": "eager"} if "moe" in name or "mixtral" in name else {}
    m = AutoModelForCausalLM.from_pretrained(os.path.join(HERE, "family_models", name), dtype=dtype,
                                             attn_implementation="eager", **kw).eval()
    m.requires_grad_(False)
    return m


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for case, (name, p, q, axis, tt, pidx, R, seed) in CASES.items():
        model = load_model(name)
        d = model.config.hidden_size
        gold = load_file(os.path.join(tg.DATA_DIR, f"{name}.golden.safetensors"))
        prompts = [gold[f"input_ids.{i}"].long() for i in pidx]
        idx = tg.parse_slice(tt)
        raw = torch.randn(tg.N_VECTORS, d, generator=torch.Generator().manual_seed(seed))
        vecs, curves, inits = tg.train_reference(model, prompts, tg.SOURCE_LAYER, tg.TARGET_LAYER,
                                                 R, p, q, axis, idx, raw, tg.STEPS)
        m64 = load_model(name, torch.float64)
        v64, c64, _ = tg.train_reference(m64, prompts, tg.SOURCE_LAYER, tg.TARGET_LAYER, R, p, q,
                                         axis, idx, raw.double(), tg.STEPS)
        e_vec = float((vecs.double() - v64).abs().max() / v64.abs().max())
        e_obj = float(((curves.double() - c64).abs() / c64.abs()).max())
        assert e_vec <= 1e-5 and e_obj <= 1e-5, (e_vec, e_obj)
        change = ((curves[:, -1] - curves[:, 0]) / curves[:, 0]).abs()
        assert (change > 1e-2).all(), change
        init_path = os.path.join(tg.DATA_DIR, f"train_{case}.init.safetensors")
        save_file({"vectors": raw.float().contiguous()}, init_path)
        tensors = {"vectors": vecs.float().contiguous(), "objective": curves.float().contiguous()}
        for i, pr in enumerate(prompts):
            tensors[f"prompt_ids.{i}"] = pr.to(torch.int32).contiguous()
        meta = {"format": "melbo-train-golden", "model": name, "radius": str(R), "p": str(p),
                "q": str(q), "loss_axis": axis, "target_tokens": tt, "steps": str(tg.STEPS),
                "vectors": str(tg.N_VECTORS), "source_layer": str(tg.SOURCE_LAYER),
                "target_layer": str(tg.TARGET_LAYER), "fp64_rel_vectors": "%.2e" % e_vec,
                "fp64_rel_objective": "%.2e" % e_obj}
        path = os.path.join(tg.DATA_DIR, f"train_{case}.golden.safetensors")
        save_file(tensors, path, metadata=meta)
        tg.canonicalise_header(path)
        print(f"{case}: F {curves[:, 0].tolist()} -> {curves[:, -1].tolist()}; fp64 rel vectors "
              f"{e_vec:.1e} objective {e_obj:.1e}")


if __name__ == "__main__":
    main()
