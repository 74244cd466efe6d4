"""The CPU benchmarks' shared workload: SmolLM2-135M's shape with random weights.

Imported by bench/train_baselines.py and bench/gen_baselines.py after they have set
OMP_NUM_THREADS (torch reads it at import).
"""
import os
import shutil
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM


def log(*a):
    print(*a, flush=True)


def setup_torch(threads):
    """torch on `threads` intra-op threads and one inter-op thread; prints the versions."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    log(f"torch {torch.__version__}  transformers {transformers.__version__}  python {sys.version.split()[0]}")
    log("\n".join(torch.__config__.parallel_info().splitlines()[:6]))


def build_model(seed, attn, **config_extra):
    """SmolLM2-135M's LlamaConfig (plus config_extra) with transformers' own init under
    torch.manual_seed(seed); fp32, eval, no gradients on the weights."""
    cfg = LlamaConfig(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                      intermediate_size=1536, vocab_size=49152, rope_theta=100000, rms_norm_eps=1e-5,
                      tie_word_embeddings=True, max_position_embeddings=2048, **config_extra)
    cfg._attn_implementation = attn
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).float().eval()
    model.requires_grad_(False)
    return model


def save_once(model, d, marker_name, want):
    """Saves model to d with save_pretrained unless d/marker_name already reads `want`."""
    marker = os.path.join(d, marker_name)
    if os.path.exists(marker) and open(marker).read() == want and \
            os.path.exists(os.path.join(d, "config.json")):
        log(f"melbo: reusing the model in {d}")
        return False
    shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    model.save_pretrained(d, safe_serialization=True)
    with open(marker, "w") as f:
        f.write(want)
    log(f"melbo: saved the model to {d} in {time.perf_counter() - t0:.1f} s")
    return True
