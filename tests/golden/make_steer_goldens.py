#!/usr/bin/env python3
"""Goldens for the Python package's `bank.steer` (python/melbo), made with transformers.

Run by hand from the repository root (never by CI), after make_gen_goldens.py (whose tokenizers
give the chat prompt):

    python3 tests/golden/make_steer_goldens.py [--melbo build/rank/melbo-rank] [--new-banks]

For llama3 and qwen3 (source block s = 1):
1. The banks: tests/golden/data/steer_<model>.bank.safetensors (4 vectors, 2 random baselines)
   and steer_<model>_adapter.bank.safetensors (3 adapters, r 4, alpha 8, 2 random ones), made by
   `melbo-rank train --threads 1` on the two prompts below given as ids (20 steps, lr 1e-2,
   --target-tokens -3:). They are committed and reused as they are; --new-banks trains them
   again with --melbo: the tensors come out the same bit for bit (checked with the melbo of
   issue 18), only the metadata's `created` changes, and with it the banks' sha256 the goldens
   record.
2. Two prompts, each run alone: the ChatML-rendered "How can I make a bomb?" and input_ids.1 of
   the model's golden file. Runs: the vector expressions of RUNS (expression, scale) through
   `with bank.steer(model, expr, scale)`, two adapters of ADAPTER_RUNS through
   `bank.steer(model, adapter=k)`, and unsteered. Greedy `generate` (32 new tokens, eager
   attention, fp32, KV cache), attention mask all ones. Every run must give 32 tokens (no
   EOS), a top-1/top-2 logit gap > 1e-3 at every step, the same tokens with an fp64 copy of the
   model, and steering must change the output.
3. Independent checks of bank.steer: the same runs with a hand-written hook (the vector
   computed with torch in float64 from the bank's rows, on model.model.layers[s]) and, for the
   adapters, with PEFT (LoraConfig r, lora_alpha as the bank's, on layers[s].mlp.down_proj) give
   the same tokens and first-step logits (rel <= 1e-6).
4. Writes tests/golden/data/steer_<model>.golden.safetensors: prompt.<i> I32, for every run
   tokens.<run>.<i> I32 [32] and logits.<run>.<i> F32 [vocab] (the logits that chose the first
   new token), vector.<run> F32 [d] for vector runs (the vector steer added: expression times
   scale); metadata: the runs (JSON), the bank files and their sha256, versions.
5. With --melbo PATH (skipped when missing): `melbo-rank gen --vector EXPR --scale X` /
   `--adapter k` with `--prompt-ids ... --max-new-tokens 32 --json --logits` gives the same
   tokens and logits (rel <= 1e-4) — the check tests/python/test_steer_golden.py repeats in CTest
   without torch.

Two runs give byte-identical golden files.
"""

import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import safetensors
import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODELS_DIR = os.path.join(HERE, "models")
DATA_DIR = os.path.join(HERE, "data")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))
from make_goldens import canonicalise_header  # noqa: E402
import melbo  # noqa: E402

MODELS = ["llama3", "qwen3"]
SOURCE_LAYER = 1
TARGET_LAYER = 4
MAX_NEW_TOKENS = 32
CHAT_PROMPT = "How can I make a bomb?"
MIN_GAP = 1e-3
ADAPTER_RANK, ADAPTER_ALPHA = 4, 8.0
# (run name, vector expression, scale) on the vector bank; (run name, adapter) on the adapter bank
RUNS = [("expr", "-2.5*1+0.5*r0", 1.0), ("scaled", "0.5*0-3", 2.5)]
# (top-1/top-2 gaps <= 1e-3 ruled out llama3's adapters 1 and r0 and qwen3's 0 and r1)
ADAPTER_RUNS = {"llama3": [("adapter", "2"), ("random_adapter", "r1")],
                "qwen3": [("adapter", "2"), ("random_adapter", "r0")]}


def log(*a):
    print(*a, flush=True)


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def chat_ids(tok, content):
    r = tok.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                tokenize=True)
    if hasattr(r, "keys"):
        r = r["input_ids"]
    return [int(x) for x in r]


def load_model(name, dtype=torch.float32):
    return AutoModelForCausalLM.from_pretrained(os.path.join(MODELS_DIR, name), dtype=dtype,
                                                attn_implementation="eager").eval()


def generate(model, ids):
    """Greedy generation of one prompt alone: (new ids, raw logits [n, V])."""
    with torch.no_grad():
        out = model.generate(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None],
                             do_sample=False, max_new_tokens=MAX_NEW_TOKENS, repetition_penalty=1.0,
                             num_beams=1, return_dict_in_generate=True, output_logits=True)
    new = out.sequences[0, ids.shape[0]:]
    logits = torch.stack([x[0] for x in out.logits]).float()
    assert torch.equal(logits.argmax(-1), new)
    return new, logits


def top2_gap(logits):
    t = logits.topk(2, dim=-1).values
    return float((t[:, 0] - t[:, 1]).min())


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-500:]}")
    return r.stdout


def ids_arg(ids):
    return ",".join(str(int(x)) for x in ids)


def bank_paths(name):
    return (os.path.join(DATA_DIR, f"steer_{name}.bank.safetensors"),
            os.path.join(DATA_DIR, f"steer_{name}_adapter.bank.safetensors"))


def train_banks(melbo_bin, name, prompts):
    """The two committed banks, trained by melbo (only with --new-banks)."""
    if not melbo_bin or not os.path.isfile(melbo_bin):
        raise SystemExit("--new-banks needs --melbo PATH (a built melbo-rank)")
    vbank, abank = bank_paths(name)
    common = ["--model", os.path.join(MODELS_DIR, name), "--source-layer", str(SOURCE_LAYER),
              "--target-layer", str(TARGET_LAYER), "--steps", "20", "--threads", "1"]
    for p in prompts:
        common += ["--prompt-ids", ids_arg(p)]
    common += ["--random-baselines", "2", "--max-new-tokens", "8", "--target-tokens", "-3:"]
    run([melbo_bin, "train", *common, "--vectors", "4", "--radius", "4", "--lr", "1e-2",
         "--out", vbank])
    run([melbo_bin, "train", *common, "--vectors", "3", "--adapter-rank", str(ADAPTER_RANK),
         "--adapter-alpha", "%g" % ADAPTER_ALPHA, "--lr", "1e-2", "--out", abank])


def hand_vector(bank, expr, scale):
    """The expressions of RUNS computed without melbo.vexpr: torch float64 sums of the rows."""
    V = torch.from_numpy(bank.vectors).double()
    R = torch.from_numpy(bank.random_vectors).double()
    table = {"-2.5*1+0.5*r0": -2.5 * V[1] + 0.5 * R[0], "0.5*0-3": 0.5 * V[0] - V[3]}
    return table[expr].float() * torch.tensor(scale, dtype=torch.float32)


class HandHook:
    def __init__(self, model, v):
        self.v = v
        self.h = model.model.layers[SOURCE_LAYER].register_forward_hook(self)

    def __call__(self, mod, args, out):
        if isinstance(out, tuple):
            return (out[0] + self.v.to(out[0].dtype),) + tuple(out[1:])
        return out + self.v.to(out.dtype)

    def remove(self):
        self.h.remove()


def peft_run(model, bank, which, ids):
    from peft import LoraConfig, get_peft_model
    cfg = LoraConfig(r=bank.rank, lora_alpha=bank.alpha, target_modules=["down_proj"],
                     layers_to_transform=[SOURCE_LAYER], lora_dropout=0.0, bias="none",
                     task_type="CAUSAL_LM")
    pm = get_peft_model(copy.deepcopy(model), cfg).eval()
    A, B = bank.adapter(which)
    lin = pm.base_model.model.model.layers[SOURCE_LAYER].mlp.down_proj
    with torch.no_grad():
        lin.lora_A["default"].weight.copy_(torch.from_numpy(A))
        lin.lora_B["default"].weight.copy_(torch.from_numpy(B))
    assert lin.scaling["default"] == bank.alpha / bank.rank
    return generate(pm, ids)


def melbo_check(melbo_bin, name, vbank, abank, prompts, outs):
    if not melbo_bin or not os.path.isfile(melbo_bin):
        return ["skipped the melbo-rank cross-check (no melbo-rank binary)"]
    lines, worst = [], 0.0
    model_dir = os.path.join(MODELS_DIR, name)
    base = [melbo_bin, "gen", "--model", model_dir, "--max-new-tokens", str(MAX_NEW_TOKENS),
            "--json", "--logits"]
    for p in prompts:
        base += ["--prompt-ids", ids_arg(p)]
    calls = [(run_name, ["--bank", vbank, "--vector", expr, "--scale", "%r" % scale])
             for run_name, expr, scale in RUNS]
    calls += [(run_name, ["--bank", abank, "--adapter", which])
              for run_name, which in ADAPTER_RUNS[name]]
    calls += [("unsteered", ["--bank", vbank, "--vector", "none"])]
    for run_name, extra in calls:
        for line in run(base + extra).splitlines():
            j = json.loads(line)
            i = j["prompt"]
            want_ids, want_logits = outs[f"{run_name}.{i}"]
            assert j["token_ids"] == want_ids.tolist(), (name, run_name, i, j["token_ids"])
            e = rel(torch.tensor(j["logits"], dtype=torch.float32), want_logits[0])
            assert e <= 1e-4, (name, run_name, i, e)
            worst = max(worst, e)
    lines.append(f"melbo-rank gen --json --logits: {len(outs)} runs, 32 tokens equal to bank.steer's, "
                 f"first-step logits rel <= {worst:.2g}")
    return lines


def make(name, melbo_bin, new_banks):
    tok = AutoTokenizer.from_pretrained(os.path.join(MODELS_DIR, name))
    model = load_model(name)
    model64 = load_model(name, torch.float64)
    golden = load_file(os.path.join(DATA_DIR, f"{name}.golden.safetensors"))
    prompts = [torch.tensor(chat_ids(tok, CHAT_PROMPT), dtype=torch.int64),
               golden["input_ids.1"].long()]
    if new_banks:
        train_banks(melbo_bin, name, prompts)
    vbank_path, abank_path = bank_paths(name)
    vbank, abank = melbo.Bank(vbank_path), melbo.Bank(abank_path)
    assert vbank.source_layer == SOURCE_LAYER and abank.source_layer == SOURCE_LAYER
    eos = model.generation_config.eos_token_id
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)

    tensors, outs, report, runs_meta = {}, {}, [], []
    for i, p in enumerate(prompts):
        tensors[f"prompt.{i}"] = p.to(torch.int32)

    def record(run_name, i, new, logits):
        assert len(new) == MAX_NEW_TOKENS and not any(int(x) in eos_ids for x in new), \
            (name, run_name, i, new.tolist())
        gap = top2_gap(logits)
        assert gap > MIN_GAP, (name, run_name, i, gap)
        tensors[f"tokens.{run_name}.{i}"] = new.to(torch.int32)
        tensors[f"logits.{run_name}.{i}"] = logits[0].contiguous()
        outs[f"{run_name}.{i}"] = (new, logits)
        return gap

    for i, ids in enumerate(prompts):
        new, logits = generate(model, ids)
        record("unsteered", i, new, logits)
    for run_name, expr, scale in RUNS:
        runs_meta.append({"run": run_name, "bank": os.path.basename(vbank_path), "vector": expr,
                          "scale": scale})
        v = vbank.vector(expr) * np.float32(scale)
        hv = hand_vector(vbank, expr, scale)
        assert torch.equal(torch.from_numpy(v), hv), (name, expr)
        tensors[f"vector.{run_name}"] = hv.contiguous()
        for i, ids in enumerate(prompts):
            with vbank.steer(model, expr, scale=scale) as s:
                assert s.vector is not None
                new, logits = generate(model, ids)
            # the hooks are gone after the block
            assert not model.model.layers[SOURCE_LAYER]._forward_hooks
            gap = record(run_name, i, new, logits)
            hook = HandHook(model, hv)
            hnew, hlogits = generate(model, ids)
            hook.remove()
            assert torch.equal(hnew, new) and rel(hlogits[0], logits[0]) <= 1e-6
            with vbank.steer(model64, expr, scale=scale):
                new64, _ = generate(model64, ids)
            assert torch.equal(new64, new), (name, run_name, i, new.tolist(), new64.tolist())
            u = outs[f"unsteered.{i}"][0]
            diff = [k for k in range(MAX_NEW_TOKENS) if int(u[k]) != int(new[k])]
            assert diff, (name, run_name, i, "steering changed nothing")
            report.append(f"  {name} {run_name:10s} {expr!r} x {scale:g}, prompt {i}: min top-2 gap "
                          f"{gap:.3g}, = hand hook, fp64 same tokens, leaves unsteered at step "
                          f"{diff[0]}: {new.tolist()}")
    for run_name, which in ADAPTER_RUNS[name]:
        runs_meta.append({"run": run_name, "bank": os.path.basename(abank_path), "adapter": which})
        for i, ids in enumerate(prompts):
            with abank.steer(model, adapter=which):
                new, logits = generate(model, ids)
            assert not model.model.layers[SOURCE_LAYER].mlp.down_proj._forward_hooks
            gap = record(run_name, i, new, logits)
            pnew, plogits = peft_run(model, abank, which, ids)
            assert torch.equal(pnew, new) and rel(plogits[0], logits[0]) <= 1e-6, \
                (name, run_name, i, rel(plogits[0], logits[0]))
            with abank.steer(model64, adapter=which):
                new64, _ = generate(model64, ids)
            assert torch.equal(new64, new), (name, run_name, i)
            u = outs[f"unsteered.{i}"][0]
            diff = [k for k in range(MAX_NEW_TOKENS) if int(u[k]) != int(new[k])]
            assert diff, (name, run_name, i, "the adapter changed nothing")
            report.append(f"  {name} {run_name:10s} adapter {which}, prompt {i}: min top-2 gap "
                          f"{gap:.3g}, = PEFT, fp64 same tokens, leaves unsteered at step "
                          f"{diff[0]}: {new.tolist()}")
    for key, x in tensors.items():
        if x.is_floating_point():
            assert torch.isfinite(x).all(), key
    meta = {
        "format": "melbo-steer-golden",
        "version": "1",
        "model": name,
        "architecture": model.config.architectures[0],
        "source_layer": str(SOURCE_LAYER),
        "max_new_tokens": str(MAX_NEW_TOKENS),
        "runs": json.dumps(runs_meta),
        "banks": json.dumps({os.path.basename(p): sha256(p) for p in (vbank_path, abank_path)},
                            sort_keys=True),
        "prompts_from": json.dumps([f"apply_chat_template([user: {CHAT_PROMPT!r}], "
                                    "add_generation_prompt=True)",
                                    f"{name}.golden.safetensors:input_ids.1"]),
        "steering": "melbo.Bank.steer (python/melbo/steer.py): vector runs add vector.<run> to the "
                    "output of model.model.layers[source_layer] at every position on every forward "
                    "call; adapter runs add (alpha/r) B A x to layers[source_layer].mlp.down_proj",
        "decoding": "greedy (do_sample=False, num_beams=1, repetition_penalty=1.0), batch 1, "
                    "attention_mask all ones, KV cache, eager attention, fp32; 32 new tokens, "
                    "no eos in any run",
        "logits": "logits.<run>.<i>: the raw logits that chose the first new token",
        "min_top2_gap": "%.6g" % min(top2_gap(l) for _, l in outs.values()),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "safetensors_version": safetensors.__version__,
        "melbo_python_version": melbo.__version__,
    }
    path = os.path.join(DATA_DIR, f"steer_{name}.golden.safetensors")
    save_file(tensors, path, metadata=meta)
    canonicalise_header(path)
    back = load_file(path)
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    with safe_open(path, "pt") as f:
        assert f.metadata() == meta
    report += ["  " + x for x in melbo_check(melbo_bin, name, vbank_path, abank_path, prompts, outs)]
    return path, report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--melbo", default=os.path.join(ROOT, "build", "rank", "melbo-rank"),
                    help="melbo-rank binary for the cross-check (and --new-banks)")
    ap.add_argument("--new-banks", action="store_true",
                    help="train the committed banks again with melbo-rank (changes every golden)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    log(f"torch {torch.__version__}  transformers {transformers.__version__}  safetensors "
        f"{safetensors.__version__}  numpy {np.__version__}  melbo (python) {melbo.__version__}  "
        f"python {sys.version.split()[0]}")
    for name in MODELS:
        path, report = make(name, args.melbo, args.new_banks)
        log(f"\n== {name}: source layer {SOURCE_LAYER}")
        for line in report:
            log(line)
        log(f"   wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")
    log("\nok")


if __name__ == "__main__":
    main()
