"""tests/golden/make_calibration_goldens.py - the `--radius auto` rule in PyTorch (run by hand).

The relative lambda rule of the follow-up work (method.md §4.1), as rank/train/calibrate.h
states it: D(theta) = per prompt, the mean over its target positions of
hidden_states[t](theta) - hidden_states[t](0), stacked over prompts, with theta added to the output
of block s at every position (a forward hook; whole model, as transformers computes it); J v by
central differences with h = 1e-2; E(R) = sqrt(mean_l |D(R v_l) - R J v_l|^2 / |R J v_l|^2);
E(R) = lambda solved by 40 bisection steps in log R on [0.001, 100].

Writes tests/golden/data/calibration_llama3.golden.safetensors (R, the ratios at the bracket
ends, settings) and calibration_llama3.init.safetensors ('directions' [n, d], melbo's
--calibration-init), for tests/unit/test_train_cli.sh.
"""
import json
import math
import os

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = "llama3"
S, T, LAMBDA, N, H = 1, 4, 0.5, 8, 1e-2
PROMPTS = [[492, 403, 287, 109, 129, 38, 286], [0, 148, 100, 492, 374, 469, 205, 405, 469, 340]]
TARGET = slice(-3, None)

torch.manual_seed(0)
torch.set_num_threads(1)
model = AutoModelForCausalLM.from_pretrained(os.path.join(HERE, "models", MODEL),
                                             torch_dtype=torch.float32, attn_implementation="eager")
model.eval()
d = model.config.hidden_size
theta = torch.zeros(d)


def hook(_module, _inputs, output):
    if isinstance(output, tuple):
        return (output[0] + theta,) + tuple(output[1:])
    return output + theta


model.model.layers[S].register_forward_hook(hook)


@torch.no_grad()
def target(ids, th):
    theta.copy_(th)
    out = model(torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[T][0].double()


base = [target(p, torch.zeros(d)) for p in PROMPTS]


def D(th):
    parts = []
    for p, y in zip(PROMPTS, base):
        z = target(p, th)
        parts.append((z[TARGET] - y[TARGET]).mean(dim=0))
    return torch.cat(parts)


g = torch.Generator().manual_seed(1234)
dirs = torch.randn(N, d, generator=g)
dirs = dirs / dirs.norm(dim=1, keepdim=True)
jv = [(D(H * v) - D(-H * v)) / (2 * H) for v in dirs]


def ratio(R):
    acc = 0.0
    for v, j in zip(dirs, jv):
        lin = R * j
        acc += float(((D(R * v) - lin) ** 2).sum() / (lin ** 2).sum())
    return math.sqrt(acc / N)


lo, hi = math.log(1e-3), math.log(100.0)
flo, fhi = ratio(1e-3) - LAMBDA, ratio(100.0) - LAMBDA
assert (flo < 0) != (fhi < 0), (flo, fhi)
ratio_lo, ratio_hi = flo + LAMBDA, fhi + LAMBDA
for _ in range(40):
    mid = 0.5 * (lo + hi)
    fm = ratio(math.exp(mid)) - LAMBDA
    if (fm < 0) == (flo < 0):
        lo, flo = mid, fm
    else:
        hi = mid
R = math.exp(0.5 * (lo + hi))
print(f"R = {R:.9g}; ratio {ratio_lo:.4g} at 0.001, {ratio_hi:.4g} at 100")

data = os.path.join(HERE, "data")
save_file({"directions": dirs.numpy().astype(np.float32)},
          os.path.join(data, "calibration_llama3.init.safetensors"))
meta = {"model": MODEL, "source_layer": str(S), "target_layer": str(T), "lambda": str(LAMBDA),
        "samples": str(N), "fd_step": str(H), "target_tokens": "-3:",
        "prompt_ids": json.dumps(PROMPTS), "radius": f"{R:.9g}", "ratio_lo": f"{ratio_lo:.9g}",
        "ratio_hi": f"{ratio_hi:.9g}", "torch_version": torch.__version__}
save_file({"radius": np.array([R], dtype=np.float64)},
          os.path.join(data, "calibration_llama3.golden.safetensors"), metadata=dict(sorted(meta.items())))
