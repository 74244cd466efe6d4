#!/usr/bin/env python3
"""Compare two melbo bank files (DESIGN.md §4) vector by vector.

    compare_banks.py A B --rel 1e-4   [--tokens-identical] [--label TEXT]
    compare_banks.py A B --cosine 0.99 [--tokens-identical] [--label TEXT]
    compare_banks.py --ids FILE TENSOR      (prints an integer tensor as comma-separated ids)

A is the reference: rel(B, A) = max|B - A| / max|A| over the whole tensor (DESIGN.md §7).
--rel X       every tensor the two banks share among `vectors`, `objective`, `random_vectors`
              must be within rel X of A's.
--cosine C    every vector of B must have cosine > C with the same vector of A (fp64);
              `objective` and `random_vectors` are reported, not checked.
--tokens-identical   the `completions` metadata (greedy completions of every vector, the
              unsteered model and every random vector, per prompt) must be identical. The bank
              stores them as text decoded from the token ids, so equal text is the check that the
              ids agree; a model without a tokenizer stores "" and the check says so.
The two banks must also agree on the settings that make the comparison meaningful (d_model,
layers, radius, p, q, steps, seed, ...); a difference is a failure.

One line per vector (rel and cosine), then one `ok   ...` / `FAIL ...` line per check. Exit status
0 when every check passed, 1 when one failed, 2 when a file cannot be read.

Pure Python (no numpy, no safetensors package): reads the safetensors header (8-byte little-endian
length, JSON) and the F32/F64/F16/BF16/I32/I64 data it points at.
"""

import argparse
import json
import math
import struct
import sys

FORMATS = {"F32": ("f", 4), "F64": ("d", 8), "F16": ("e", 2), "I32": ("i", 4), "I64": ("q", 8),
           "I16": ("h", 2), "I8": ("b", 1), "U8": ("B", 1)}
SAME_SETTINGS = ("d_model", "n_layers", "source_layer", "target_layer", "radius", "p", "q",
                 "loss_axis", "target_tokens", "steps", "seed", "orthogonal", "wave",
                 "model_fingerprint")


class BankError(Exception):
    pass


def read_safetensors(path):
    """-> (tensors {name: (shape, flat list of Python numbers)}, metadata {str: str})."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise BankError(f"cannot read {path}: {e.strerror}")
    if len(raw) < 8:
        raise BankError(f"{path} is not a safetensors file (shorter than 8 bytes)")
    n = int.from_bytes(raw[:8], "little")
    if n > len(raw) - 8:
        raise BankError(f"{path} is not a safetensors file (header length {n} past the end)")
    try:
        hdr = json.loads(raw[8:8 + n])
    except ValueError as e:
        raise BankError(f"{path}: the safetensors header is not JSON ({e})")
    meta = hdr.pop("__metadata__", None) or {}
    data = raw[8 + n:]
    tensors = {}
    for name, t in hdr.items():
        dt, shape, (a, b) = t["dtype"], t["shape"], t["data_offsets"]
        count = 1
        for s in shape:
            count *= s
        buf = data[a:b]
        if dt == "BF16":
            if len(buf) != 2 * count:
                raise BankError(f"{path}: tensor {name} has {len(buf)} bytes for {count} BF16")
            vals = [struct.unpack("<f", b"\0\0" + buf[2 * i:2 * i + 2])[0] for i in range(count)]
        elif dt in FORMATS:
            code, size = FORMATS[dt]
            if len(buf) != size * count:
                raise BankError(f"{path}: tensor {name} has {len(buf)} bytes for {count} {dt}")
            vals = list(struct.unpack("<%d%s" % (count, code), buf))
        else:
            continue  # a dtype this tool does not need
        tensors[name] = (shape, vals)
    return tensors, meta


def rows(shape, vals):
    if len(shape) == 1:
        return [vals]
    if len(shape) != 2:
        raise BankError(f"expected a 1-d or 2-d tensor, got shape {shape}")
    n, d = shape
    return [vals[i * d:(i + 1) * d] for i in range(n)]


def rel(b, a):
    """max|b - a| / max|a| (a the reference); inf when a is all zero and b is not."""
    num = max((abs(x - y) for x, y in zip(b, a)), default=0.0)
    den = max((abs(y) for y in a), default=0.0)
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def cosine(x, y):
    nx = math.sqrt(math.fsum(v * v for v in x))
    ny = math.sqrt(math.fsum(v * v for v in y))
    if nx == 0.0 or ny == 0.0:
        return 1.0 if nx == ny else 0.0
    return math.fsum(u * v for u, v in zip(x, y)) / (nx * ny)


def finite(vals):
    return all(math.isfinite(v) for v in vals)


def main(argv):
    if argv[:1] == ["--ids"]:
        if len(argv) != 3:
            print("usage: compare_banks.py --ids FILE TENSOR", file=sys.stderr)
            return 2
        try:
            tensors, _ = read_safetensors(argv[1])
        except BankError as e:
            print(f"FAIL {e}")
            return 2
        if argv[2] not in tensors:
            print(f"FAIL {argv[1]} has no tensor {argv[2]}", file=sys.stderr)
            return 2
        print(",".join(str(int(v)) for v in tensors[argv[2]][1]))
        return 0

    ap = argparse.ArgumentParser(description="compare two melbo banks (A the reference)")
    ap.add_argument("a", help="reference bank")
    ap.add_argument("b", help="bank to check")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rel", type=float, help="rel(B, A) limit for vectors/objective/random")
    mode.add_argument("--cosine", type=float, help="per-vector cosine must be above this")
    ap.add_argument("--tokens-identical", action="store_true",
                    help="greedy completions must be identical")
    ap.add_argument("--label", default="", help="prefix of every ok/FAIL line")
    args = ap.parse_args(argv)
    lab = (args.label + ": ") if args.label else ""

    try:
        ta, ma = read_safetensors(args.a)
        tb, mb = read_safetensors(args.b)
    except BankError as e:
        print(f"FAIL {lab}{e}")
        return 2
    fails = []

    def check(ok, text):
        print(("ok   " if ok else "FAIL ") + lab + text)
        if not ok:
            fails.append(text)

    for name, m in (("A", ma), ("B", mb)):
        if m.get("format") != "melbo-bank":
            check(False, f"{name} ({args.a if name == 'A' else args.b}) is not a melbo bank "
                         f"(format {m.get('format')!r})")
    diff = [k for k in SAME_SETTINGS if ma.get(k) != mb.get(k)]
    if diff:
        check(False, "the banks differ in settings: " +
              ", ".join(f"{k} {ma.get(k)!r} vs {mb.get(k)!r}" for k in diff))

    if "vectors" not in ta or "vectors" not in tb:
        check(False, "a bank has no tensor 'vectors'")
        return 1
    if ta["vectors"][0] != tb["vectors"][0]:
        check(False, f"vectors shapes differ: {ta['vectors'][0]} vs {tb['vectors'][0]}")
        return 1
    va, vb = rows(*ta["vectors"]), rows(*tb["vectors"])
    n, d = ta["vectors"][0]
    cos_all = []
    for k, (x, y) in enumerate(zip(va, vb)):
        c = cosine(y, x)
        cos_all.append(c)
        print(f"     {lab}vector {k}: rel {rel(y, x):.2e}  cosine {c:.9f}  "
              f"|A| {math.sqrt(math.fsum(v * v for v in x)):.6g}  "
              f"|B| {math.sqrt(math.fsum(v * v for v in y)):.6g}")
    if not finite(ta["vectors"][1]) or not finite(tb["vectors"][1]):
        check(False, "vectors hold NaN or inf")

    if args.rel is not None:
        r = rel(tb["vectors"][1], ta["vectors"][1])
        check(r <= args.rel, f"vectors rel {r:.2e} (limit {args.rel:.0e}; {n} x {d})")
    else:
        worst = min(cos_all) if cos_all else 1.0
        check(all(c > args.cosine for c in cos_all),
              f"vectors min cosine {worst:.6f} (must be > {args.cosine}; {n} x {d})")

    for name in ("objective", "random_vectors"):
        if name not in ta and name not in tb:
            continue
        if (name in ta) != (name in tb):
            check(False, f"{name} is in only one of the banks")
            continue
        if ta[name][0] != tb[name][0]:
            check(False, f"{name} shapes differ: {ta[name][0]} vs {tb[name][0]}")
            continue
        if not ta[name][1]:
            continue
        r = rel(tb[name][1], ta[name][1])
        if not finite(tb[name][1]):
            check(False, f"{name} holds NaN or inf")
        elif args.rel is not None:
            check(r <= args.rel, f"{name} rel {r:.2e} (limit {args.rel:.0e}; shape {ta[name][0]})")
        else:
            print(f"     {lab}{name} rel {r:.2e} (reported, not checked in --cosine mode)")

    if args.tokens_identical:
        try:
            ca = json.loads(ma.get("completions", "{}"))
            cb = json.loads(mb.get("completions", "{}"))
        except ValueError as e:
            check(False, f"completions metadata is not JSON ({e})")
        else:
            def flat(c):
                out = []
                for v, per in enumerate(c.get("vectors", [])):
                    out += [(f"vector {v}", i, s) for i, s in enumerate(per)]
                out += [("unsteered", i, s) for i, s in enumerate(c.get("unsteered", []))]
                for v, per in enumerate(c.get("random", [])):
                    out += [(f"random {v}", i, s) for i, s in enumerate(per)]
                return out
            fa, fb = flat(ca), flat(cb)
            if not fa and not fb:
                check(False, "no completions in either bank (was generation off?)")
            elif len(fa) != len(fb):
                check(False, f"completions: {len(fa)} in A, {len(fb)} in B")
            else:
                bad = [(w, i, x, y) for (w, i, x), (_, _, y) in zip(fa, fb) if x != y]
                if all(x == "" for _, _, x in fa) and all(y == "" for _, _, y in fb):
                    print(f"     {lab}completions: all {len(fa)} empty (no tokenizer: text, and so "
                          f"the token ids, cannot be compared)")
                elif bad:
                    w, i, x, y = bad[0]
                    check(False, f"completions: {len(bad)} of {len(fa)} differ; first: {w} "
                                 f"prompt {i}: A {x!r} vs B {y!r}")
                else:
                    check(True, f"completions identical ({len(fa)} greedy completions)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
