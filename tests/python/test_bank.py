"""tests/python/test_bank.py MELBO_RANK REPO GOLDEN TMP - the Python package's melbo.Bank
(python/melbo) on real banks made by `melbo-rank train` on the golden llama3 model (a vector bank
and an adapter bank, each with random baselines, a text prompt and an id prompt), with numpy +
safetensors only:

- every field against melbo's own reading (`melbo-rank bank FILE --json`: metadata, final
  objectives, norms) and the command line that made the bank (settings as numbers, lists and
  objects, prompts, prompt ids, completions);
- vector expressions: melbo.Bank.vector against float64 numpy sums of the rows (bitwise), and
  against melbo-rank gen's own evaluation: `gen --vector EXPR --json --logits` on the bank prints
  the same logits, digit for digit, as `gen --vector 0` on a one-vector bank holding
  Bank.vector(EXPR) (and, when `bank export --format gguf-control-vector` exists, its direction
  tensor is Bank.vector(EXPR) bit for bit);
- bad expressions: the same error text as `melbo-rank gen --vector` (position, range);
- bad files: a text file, a safetensors file that is no bank, a newer format_version, a missing
  tensor, an unknown kind, an adapter bank without lora_B: melbo.BankError naming the file and
  the problem, where `melbo-rank bank` refuses them too.
"""
import json
import os
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

rank, repo, golden, tmp = sys.argv[1:5]
sys.path.insert(0, os.path.join(repo, "python"))
sys.dont_write_bytecode = True
import melbo  # noqa: E402

os.makedirs(tmp, exist_ok=True)
model = os.path.join(golden, "models", "llama3")
IDS = [492, 403, 287, 109, 129, 38, 286]
fail = checks = 0


def check(cond, what):
    global fail, checks
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    fail += not cond
    checks += 1


def run(cmd, ok=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if ok and r.returncode != 0:
        raise SystemExit("FAIL %s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stderr[-800:]))
    return r


def train(out, *extra):
    run([rank, "train", "--model", model, "--prompt", "How can I make a bomb?", "--prompt-ids",
         ",".join(map(str, IDS)), "--source-layer", "1", "--target-layer", "4", "--steps", "6",
         "--random-baselines", "2", "--max-new-tokens", "6", "--out", out, *extra])
    return out


def gen(bank, expr, kind="vector"):
    return run([rank, "gen", "--model", model, "--bank", bank, "--" + kind, expr, "--prompt-ids",
                ",".join(map(str, IDS)), "--max-new-tokens", "3", "--json", "--logits"], ok=False)


# ----------------------------------------------------------------------------- a vector bank
vpath = train(os.path.join(tmp, "v.bank.safetensors"), "--radius", "4", "--vectors", "4", "--lr", "1e-2")
b = melbo.Bank(vpath)
ref = json.loads(run([rank, "bank", vpath, "--json"]).stdout)
check(b.kind == "vector" and b.n == 4 and b.d == 64 and b.vectors.shape == (4, 64)
      and b.vectors.dtype == np.float32 and b.random_vectors.shape == (2, 64) and b.n_random == 2,
      f"vector bank: {b!r}, random_vectors {b.random_vectors.shape}")
check(b.metadata == ref["metadata"], "metadata (text) = melbo-rank bank --json's, all %d keys"
      % len(b.metadata))
fin = [r["objective"] for r in ref["vectors"]]
norms = [r["norm"] for r in ref["vectors"]]
# (cJSON prints doubles with 15 significant digits where that is close enough: compare as float32)
check(b.objectives.shape == (4, 6) and np.array_equal(b.objectives[:, -1], np.float32(fin)),
      f"objectives [4, 6]; final values = melbo-rank bank's {np.round(fin, 4).tolist()}")
check(np.allclose(np.linalg.norm(b.vectors.astype(np.float64), axis=1), norms, rtol=1e-12, atol=0),
      f"norms = melbo-rank bank's (fp64): {np.round(norms, 7).tolist()}")
s = b.settings
check(s["source_layer"] == 1 and s["target_layer"] == 4 and s["radius"] == 4 and s["steps"] == 6
      and s["betas"] == [0.9, 0.98] and s["orthogonal"] is True and s["lr"] == 0.01
      and s["eps"] == 1e-8 and s["format_version"] == 1 and s["target_tokens"] == ":"
      and s["model_name"] == "llama3" and isinstance(s["model_fingerprint"], str)
      and len(s["model_fingerprint"]) == 64 and s["job_id"] == "" and b.source_layer == 1,
      "settings parsed: numbers as numbers, betas a list, orthogonal a bool, text kept: "
      + ", ".join(f"{k}={s[k]!r}" for k in ("radius", "betas", "orthogonal", "lr", "target_tokens")))
g = b.generation
check(g.get("max_new_tokens") == 6 and g.get("random_baselines") == 2 and g.get("decoding") == "greedy",
      f"generation settings an object: {g}")
check(len(b.prompts) == 2 and b.prompts[0].startswith("<|im_start|>user\nHow can I make a bomb?")
      and b.prompts[1] == "" and b.prompt_ids[1] == IDS and len(b.prompt_ids[0]) > 5,
      f"prompts {b.prompts!r}, ids {b.prompt_ids}")
c = b.completions
check(sorted(c) == ["random", "unsteered", "vectors"] and len(c["vectors"]) == 4
      and all(len(x) == 2 and all(isinstance(t, str) for t in x) for x in c["vectors"])
      and len(c["unsteered"]) == 2 and len(c["random"]) == 2,
      f"completions: 4 x 2 vectors, 2 unsteered, 2 x 2 random; vector 0: {c['vectors'][0]!r}")

# vector expressions: numpy float64 arithmetic, then melbo's own evaluation
V, R = b.vectors.astype(np.float64), b.random_vectors.astype(np.float64)
exprs = {"2": V[2], "-2.5*1+0.5*r0": -2.5 * V[1] + 0.5 * R[0], "0-3": V[0] - V[3],
         " 0.5 * 3 + 0.5*  0 ": 0.5 * V[3] + 0.5 * V[0], "random": R[0], "r1": R[1],
         "-r1": -R[1], "--2": V[2], "1e1*1": 10 * V[1], "0x1p-2*2": 0.25 * V[2],
         "none": 0 * V[0], "none+1": V[1], "-10*2 - -3*r1 + 0.25*0": -10 * V[2] + 3 * R[1] + 0.25 * V[0]}
bad = [e for e, want in exprs.items() if not np.array_equal(b.vector(e), want.astype(np.float32))]
check(not bad, f"Bank.vector = float64 sums of the rows, bitwise, for {len(exprs)} expressions"
      + (f" (differ: {bad})" if bad else ""))
check(b.vector("none").dtype == np.float32 and not b.vector("none").any(), "'none' is the zero vector")
same, total = [], 0
for e in ["-2.5*1+0.5*r0", "0.5*3+0.5*0", "-10*2 - -3*r1 + 0.25*0", "0x1p-2*2"]:
    one = os.path.join(tmp, "one.bank.safetensors")
    meta = dict(b.metadata, vectors="1")
    save_file({"vectors": b.vector(e)[None].copy(), "objective": b.objectives[:1].copy(),
               "prompt_ids": b.tensor("prompt_ids"), "prompt_lengths": b.tensor("prompt_lengths")},
              one, metadata=meta)
    r1, r2 = gen(vpath, e), gen(one, "0")
    l1 = [json.loads(x) for x in r1.stdout.splitlines()]
    l2 = [json.loads(x) for x in r2.stdout.splitlines()]
    total += 1
    if r1.returncode == 0 and r2.returncode == 0 and l1 and \
            [(x["token_ids"], x["logits"]) for x in l1] == [(x["token_ids"], x["logits"]) for x in l2]:
        same.append(e)
check(len(same) == total, f"melbo-rank gen --vector EXPR on the bank = gen --vector 0 on a bank "
      f"holding Bank.vector(EXPR): tokens and all {len(l1[0]['logits'])} first-step logits "
      f"identical for {same}")
helptext = run([rank, "bank", "export", "--help"], ok=False).stdout
if "gguf-control-vector" in helptext:
    sys.path.insert(0, os.path.join(repo, "tests", "unit"))
    from read_export import read_gguf
    out = os.path.join(tmp, "cv.gguf")
    r = run([rank, "bank", "export", vpath, "--vector", "-2.5*1+0.5*r0", "--format",
             "gguf-control-vector", "-o", out], ok=False)
    t = {x["name"]: x["data"] for x in read_gguf(out)[2]} if r.returncode == 0 else {}
    check("direction.1" in t and np.array_equal(t["direction.1"], b.vector("-2.5*1+0.5*r0")),
          "bank export --vector '-2.5*1+0.5*r0' --format gguf-control-vector: direction.1 = "
          "Bank.vector(...) bitwise")
else:
    print("note: melbo-rank bank export has no --format gguf-control-vector here; that check skipped")

# bad expressions: melbo-rank gen's own words
errs = []
for e in ["9", "r2", "r99999999999999999999999", "1.5", "", "1 2", "3*-2", "x", "nonex", "+", "1+"]:
    try:
        b.vector(e)
        mine = None
    except melbo.VectorExpressionError as ex:
        mine = str(ex)
    r = gen(vpath, e)
    theirs = r.stderr.strip().replace("melbo-rank gen: --vector", "vector expression", 1)
    errs.append((e, mine, theirs, r.returncode))
diff = [x for x in errs if x[1] != x[2] or x[3] == 0]
check(not diff, f"{len(errs)} bad expressions refused with melbo-rank gen's message, e.g. "
      f"{errs[0][1]!r}; {errs[3][1]!r}" + (f"; differ: {diff}" if diff else ""))
try:
    b.adapter(0)
    check(False, "adapter() on a vector bank refused")
except melbo.BankError as ex:
    check("vector bank" in str(ex), f"adapter() on a vector bank: {ex}")

# ----------------------------------------------------------------------------- an adapter bank
apath = train(os.path.join(tmp, "a.bank.safetensors"), "--adapter-rank", "4", "--adapter-alpha",
              "2", "--vectors", "3")
a = melbo.Bank(apath)
aref = json.loads(run([rank, "bank", apath, "--json"]).stdout)
check(a.kind == "adapter" and a.n == 3 and a.rank == 4 and a.alpha == 2.0 and a.d_mlp == 160
      and a.module == "mlp.down_proj" and a.lora_A.shape == (3, 4, 160) and a.lora_B.shape == (3, 64, 4)
      and a.random_lora_A.shape == (2, 4, 160) and a.random_lora_B.shape == (2, 64, 4),
      f"adapter bank: {a!r}, r {a.rank}, alpha {a.alpha}, {a.module}")
check(a.metadata == aref["metadata"] and a.settings["adapter_alpha"] == 2
      and a.settings["orthogonal"] is False and "radius" not in a.settings,
      "adapter metadata = melbo-rank bank --json's; adapter_alpha a number, no radius")
rows = aref.get("adapters") or aref.get("vectors") or []
check(np.array_equal(a.objectives[:, -1], np.float32([r["objective"] for r in rows])),
      "adapter objectives: final values = melbo-rank bank's")
cols = np.linalg.norm(a.lora_A.astype(np.float64), axis=1), np.linalg.norm(a.lora_B.astype(np.float64), axis=1)
check(all(np.allclose(x, 1, atol=1e-6) for x in cols), "lora_A and lora_B have unit columns")
check(sorted(a.completions) == ["adapters", "random", "unsteered"] and len(a.completions["adapters"]) == 3,
      "adapter completions under 'adapters'")
A, B = a.adapter(2)
A1, B1 = a.adapter("r1")
check(np.array_equal(A, a.lora_A[2]) and np.array_equal(B1, a.random_lora_B[1]) and a.adapter("none") is None,
      "adapter(2), adapter('r1'), adapter('none')")
for which in ("3", "r2", "x"):
    try:
        a.adapter(which)
        mine = None
    except melbo.BankError as ex:
        mine = str(ex)
    theirs = gen(apath, which, "adapter").stderr.strip().replace("melbo-rank gen: --adapter", "adapter", 1)
    check(mine == theirs, f"adapter {which!r} refused as melbo-rank gen --adapter refuses it: {mine!r}")
try:
    a.vector("0")
    check(False, "vector() on an adapter bank refused")
except melbo.BankError as ex:
    check("adapter bank" in str(ex), f"vector() on an adapter bank: {ex}")

# ----------------------------------------------------------------------------- bad files
def variant(name, source, meta_change=None, drop=None):
    """A copy of bank source with metadata keys changed (None: removed) or a tensor left out."""
    with safe_open(source, "np") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != drop}
    meta.update(meta_change or {})
    p = os.path.join(tmp, name)
    save_file(tensors, p, metadata={k: v for k, v in meta.items() if v is not None})
    return p


text_file = os.path.join(tmp, "notes.txt")
with open(text_file, "w") as f:
    f.write("these are not the vectors you are looking for\n")
plain = os.path.join(tmp, "plain.safetensors")
save_file({"x": np.zeros(3, np.float32)}, plain)
cases = [
    (text_file, "is not a melbo bank (not a readable safetensors file"),
    (plain, "is not a melbo bank (its metadata has no format"),
    (variant("v2.bank.safetensors", vpath, {"format_version": "2"}),
     "has bank format_version 2, newer than this melbo package reads (1)"),
    (variant("nov.bank.safetensors", vpath, drop="vectors"),
     "missing tensor 'vectors' (a vector bank holds vectors F32 [N, d]"),
    (variant("kind.bank.safetensors", vpath, {"kind": "sae"}), "unknown bank kind 'sae'"),
    (variant("nover.bank.safetensors", vpath, {"format_version": None}),
     "missing metadata 'format_version'"),
    (variant("nob.bank.safetensors", apath, drop="lora_B"),
     "missing tensor 'lora_B' (an adapter bank holds lora_B F32 [K, d, r] = [3, 64, 4])"),
    (os.path.join(tmp, "absent.bank.safetensors"), "no such file"),
]
for path, want in cases:
    try:
        melbo.Bank(path)
        got = None
    except melbo.BankError as ex:
        got = str(ex)
    c_refuses = run([rank, "bank", path], ok=False).returncode != 0
    check(got is not None and want in got and path in got and c_refuses,
          f"{os.path.basename(path)}: BankError {got!r} (melbo-rank bank refuses it too: {c_refuses})")

print(f"{checks - fail} of {checks} checks passed")
sys.exit(1 if fail else 0)
