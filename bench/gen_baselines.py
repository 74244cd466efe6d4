#!/usr/bin/env python3
"""CPU generation benchmark: transformers' batched greedy `generate` against melbo-rank gen.

usage: python3 bench/gen_baselines.py [--melbo build/rank/melbo-rank] [--model-dir DIR]
           [--batch 64] [--prompt-len 32] [--new-tokens 64] [--threads 2] [--attn sdpa|eager]
           [--seed 0] [--skip-hf] [--skip-melbo] [--melbo-args "EXTRA ARGS"]

Workload: SmolLM2-135M's shape (LlamaConfig hidden 576, 30 layers, 9 heads / 3 KV heads, MLP
1536, vocab 49152, rope theta 1e5, rms eps 1e-5, tied embeddings) with random weights
(torch.manual_seed(seed), transformers' own init), fp32, torch.set_num_threads(--threads) and
set_num_interop_threads(1). --batch sequences of --prompt-len random token ids each (all the same
length: no padding, attention mask all ones), --new-tokens new tokens each, greedy, steered by a
random vector of norm 4 (seed + 1) added to the output of decoder block 7 at every position, on
every forward call (prompt and every KV-cached step).

The model has no EOS (config.json and generation_config.json eos_token_id = null) and HF is also
given min_new_tokens = max_new_tokens, so every sequence gets exactly --new-tokens tokens in
both implementations.

  hf     one `model.generate(...)` call on the whole batch after one short warm-up (the same
         call with max_new_tokens=2). tokens/s = batch * new_tokens / wall time of the timed
         call (prefill included).
  melbo  `melbo-rank gen --model DIR --bank BANK --vector 0 --prompt-ids ... --max-new-tokens N
         --gen-batch B --ignore-eos --json` with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = --threads on the same model
         (saved once with save_pretrained; --model-dir reuses it) and a one-vector bank holding the
         steering vector (source_layer 7). tokens/s from its own report (the last "... tokens/s"
         of its progress lines) if it prints one, else
         batch * new_tokens / wall time (model loading included: an underestimate). Any failure
         prints "melbo: skipped (...)"; --melbo-args appends arguments to its command line.
         With --json its token ids are compared with HF's (informational).

The machine's other load shows directly in these numbers: run it on an otherwise idle machine.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SOURCE_LAYER = 7
RADIUS = 4.0


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--melbo", default=os.path.join(ROOT, "build", "rank", "melbo-rank"),
                    help="melbo-rank binary (default build/rank/melbo-rank)")
    ap.add_argument("--model-dir", default=None,
                    help="save the random model here (reused across runs if it already holds it)")
    ap.add_argument("--batch", type=int, default=64, help="sequences generated together")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--warmup-tokens", type=int, default=2, help="max_new_tokens of the warm-up call")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--skip-melbo", action="store_true")
    ap.add_argument("--melbo-args", default="", help="extra arguments appended to melbo-rank gen")
    ap.add_argument("--melbo-timeout", type=float, default=1800)
    return ap.parse_args()


args = parse_args()
os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import smollm_shape  # noqa: E402
from smollm_shape import log, save_once, setup_torch  # noqa: E402


def build_model(seed, attn):
    """The shared workload with no BOS/EOS/pad anywhere, so every sequence runs to --new-tokens."""
    model = smollm_shape.build_model(seed, attn, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    gc = model.generation_config
    gc.eos_token_id = None
    gc.bos_token_id = None
    gc.pad_token_id = None
    return model


class AddVector:
    def __init__(self, v):
        self.v = v
        self.calls = 0

    def __call__(self, module, a, out):
        self.calls += 1
        if isinstance(out, tuple):
            return (out[0] + self.v,) + tuple(out[1:])
        return out + self.v


def hf_generate(model, ids, v, new_tokens):
    """Returns (new ids [B, N], wall seconds, seconds per forward call: prompt pass first)."""
    hook = AddVector(v)
    h = model.model.layers[SOURCE_LAYER].register_forward_hook(hook)
    stamps = []
    hp = model.register_forward_pre_hook(lambda mod, a: stamps.append(time.perf_counter()))
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 num_beams=1, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 repetition_penalty=1.0, eos_token_id=None, pad_token_id=0,
                                 use_cache=True)
            dt = time.perf_counter() - t0
    finally:
        h.remove()
        hp.remove()
    new = out[:, ids.shape[1]:]
    assert new.shape == (ids.shape[0], new_tokens), new.shape
    assert hook.calls == new_tokens, (hook.calls, new_tokens)  # prompt pass + one per cached step
    stamps.append(t0 + dt)
    return new, dt, [b - a for a, b in zip(stamps, stamps[1:])]


HF_SETTINGS = ("model.generate(input_ids=[B, T] ids, attention_mask=ones, do_sample=False, num_beams=1, "
               "max_new_tokens=N, min_new_tokens=N, repetition_penalty=1.0, eos_token_id=None, "
               "pad_token_id=0, use_cache=True) under torch.no_grad(), forward hook on "
               "model.model.layers[7] adding v (|v| = 4) to the block output on every call")


# --------------------------------------------------------------------------- melbo

def ensure_model_dir(model, d):
    want = f"seed={args.seed} transformers={transformers.__version__} eos=none\n"
    if save_once(model, d, "gen_baselines.seed", want):
        cfg = json.load(open(os.path.join(d, "config.json")))
        assert cfg.get("eos_token_id") is None, cfg.get("eos_token_id")
    return d


def fingerprint(d):
    try:
        r = subprocess.run([args.melbo, "inspect", "--model", d, "--json"], capture_output=True,
                           text=True, timeout=120)
        return json.loads(r.stdout)["fingerprint"] if r.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError):
        return ""


def write_bank(path, model, d, v, ids):
    """A one-vector bank (DESIGN.md §4 layout) holding the steering vector."""
    P, T = ids.shape
    meta = {
        "format": "melbo-bank", "format_version": "1", "model_name": os.path.basename(d.rstrip("/")),
        "model_fingerprint": fingerprint(d), "architecture": "LlamaForCausalLM",
        "d_model": str(model.config.hidden_size), "n_layers": str(model.config.num_hidden_layers),
        "source_layer": str(SOURCE_LAYER), "target_layer": str(model.config.num_hidden_layers - 8),
        "radius": "%.9g" % RADIUS, "p": "2", "q": "1", "loss_axis": "token", "target_tokens": ":",
        "steps": "0", "vectors": "1", "lr": "0.001", "betas": "[0.9, 0.98]", "eps": "1e-08", "seed": "0",
        "init": "file", "orthogonal": "true", "wave": "1", "chat_format": "raw",
        "prompts": json.dumps([""] * P), "generation": "{}", "completions": "{}",
        "created": "1970-01-01T00:00:00Z", "job_id": "gen_baselines", "melbo_version": "bench",
    }
    save_file({"vectors": v[None].float().contiguous(), "objective": torch.zeros(1, 0),
               "prompt_ids": ids.to(torch.int32).contiguous(),
               "prompt_lengths": torch.full((P,), T, dtype=torch.int32)}, path, metadata=meta)


def parse_melbo_ids(text, B, N):
    """Generated ids if melbo printed them (JSON lines with "ids", or a JSON list); else None."""
    seqs = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{") and not line.startswith("["):
            continue
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if isinstance(o, dict):
            for key in ("token_ids", "ids", "new_ids", "completion_ids"):
                if isinstance(o.get(key), list) and all(isinstance(x, int) for x in o[key]):
                    seqs.append(o[key])
                    break
    return seqs if len(seqs) == B else None


def bench_melbo(model, ids, v, hf_new):
    if args.skip_melbo:
        log("melbo: skipped (--skip-melbo)")
        return None
    if not (os.path.isfile(args.melbo) and os.access(args.melbo, os.X_OK)):
        log(f"melbo: skipped (no binary at {args.melbo})")
        return None
    tmp = tempfile.mkdtemp(prefix="melbo_gen_bench_")
    try:
        d = ensure_model_dir(model, args.model_dir or os.path.join(tmp, "model"))
        bank = os.path.join(tmp, "steer.bank.safetensors")
        write_bank(bank, model, d, v, ids)
        B, N = ids.shape[0], args.new_tokens
        cmd = [args.melbo, "gen", "--model", d, "--bank", bank, "--vector", "0"]
        for row in ids.tolist():
            cmd += ["--prompt-ids", ",".join(str(x) for x in row)]
        cmd += ["--max-new-tokens", str(N), "--gen-batch", str(B), "--ignore-eos", "--json"]
        cmd += shlex.split(args.melbo_args)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
        shown = [c if len(c) < 200 else c[:40] + "..." for c in cmd]
        log(f"melbo: {' '.join(shown[:8])} --prompt-ids <{B} x {ids.shape[1]} ids> "
            f"{' '.join(shown[8 + 2 * B:])}")
        t0 = time.perf_counter()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.melbo_timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"melbo: skipped ({e})")
            return None
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            log(f"melbo: skipped (melbo-rank gen failed, exit {r.returncode}): "
                f"{(r.stderr or r.stdout).strip()[-1500:]}")
            return None
        text = r.stderr + "\n" + r.stdout
        found = re.findall(r"([0-9.eE+-]+)\s*(?:tokens?|tok)/s", text)  # progress lines: last one
        if found:
            tps = float(found[-1])
            log(f"melbo: reports {tps:.1f} tokens/s (wall {wall:.2f} s incl. loading)")
        else:
            tps = B * N / wall
            log(f"melbo: no 'tokens/s' in its output; {B}x{N} tokens / wall {wall:.2f} s (incl. loading) "
                f"= {tps:.1f} tokens/s")
        got = parse_melbo_ids(r.stdout, B, N)
        if got is not None and hf_new is not None:
            same = sum(1 for a, b in zip(got, hf_new.tolist()) if a[:N] == b)
            log(f"melbo vs HF: {same} of {B} sequences have identical tokens (random weights: "
                f"near-ties in the logits can legitimately split fp32 implementations)")
        return tps
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- main

def main():
    setup_torch(args.threads)
    t_start = time.perf_counter()
    model = build_model(args.seed, args.attn)
    d = model.config.hidden_size
    g = torch.Generator().manual_seed(args.seed + 1)
    v = torch.randn(d, generator=g)
    v = RADIUS * v / v.norm()
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.prompt_len),
                        generator=torch.Generator().manual_seed(args.seed + 2))
    B, T, N = args.batch, args.prompt_len, args.new_tokens
    log(f"workload: SmolLM2-135M shape, random weights (seed {args.seed}), {args.attn} attention, fp32, "
        f"{B} sequences x {T}-token prompts, {N} new tokens each, greedy, steering |v|={RADIUS:g} at "
        f"block {SOURCE_LAYER}'s output, {args.threads} threads")
    log(f"hf settings: {HF_SETTINGS}")

    res = {}
    hf_new = None
    if not args.skip_hf:
        _, tw, _ = hf_generate(model, ids, v, args.warmup_tokens)
        log(f"hf: warm-up (same batch, max_new_tokens={args.warmup_tokens}) {tw:.2f} s")
        hf_new, dt, calls = hf_generate(model, ids, v, N)
        res["hf"] = B * N / dt
        distinct = len({tuple(x) for x in hf_new.tolist()})
        pre, steps = calls[0], sorted(calls[1:])
        log(f"hf: {B}x{N} = {B * N} tokens in {dt:.2f} s = {res['hf']:.1f} tokens/s; "
            f"{distinct} distinct sequences; first: {hf_new[0, :8].tolist()}...")
        if steps:
            med = steps[len(steps) // 2]
            res["hf (median step)"] = B * N / (pre + (N - 1) * med)
            log(f"hf: prompt pass {pre:.2f} s; the {N - 1} cached steps: min {steps[0]:.3f} s, median "
                f"{med:.3f} s, max {steps[-1]:.3f} s ({B / med:.1f} tokens/s at the median step). A "
                f"spread much wider than 2x means other load on the cores: 'hf (median step)' = "
                f"B*N / (prompt pass + {N - 1} x median step) = {res['hf (median step)']:.1f} tokens/s "
                f"is then the steadier number")
    m = bench_melbo(model, ids, v, hf_new)
    if m is not None:
        res["melbo"] = m

    log(f"\n{'implementation':18s} {'tokens/s':>10s} {'vs hf':>8s}")
    for k in ("hf", "hf (median step)", "melbo"):
        if k not in res:
            continue
        ratio = f"{res[k] / res['hf']:7.2f}x" if "hf" in res else f"{'-':>8s}"
        log(f"{k:18s} {res[k]:10.1f} {ratio}")
    log(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
