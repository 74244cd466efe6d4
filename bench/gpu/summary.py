#!/usr/bin/env python3
"""The one summary table of bench/gpu-check: steps, benchmark, gate, targets.

    summary.py [FILE ...]            (no FILE or "-": standard input)

Reads every line of the files and keeps two kinds (anything else is ignored, so whole logs can be
passed):
    STEP {"step": NAME, "status": "ok" | "FAIL ..." | "TIMEOUT" | "skipped ...", "seconds": N}
    RESULT {json}    from `melbo-rank bench` and bench/gpu/torch_baselines.py:
        {"name": "melbo_train", "B": 128, "s_per_vector_step": .., "tflops": .., "peak_gb": ..}
        {"name": "melbo_generate", "batch": 64, "tokens_per_s": ..}
        {"name": "reference", "s_per_vector_step": ..}
        {"name": "batched", "B": .., "s_per_vector_step": .., "tflops": .., "peak_gb": ..}
        {"name": "hf_generate", "batch": .., "tokens_per_s": ..}
    Any RESULT may carry "error" (e.g. "OOM") instead of its numbers. A later line with the same
    name and B (or batch) replaces an earlier one.

Prints the steps, a row per run (melbo and batched PyTorch at B = 1, 32, 128 and any other B
seen; the PyTorch reference), the ratios at B = 128, the gate

    GATE melbo faster than batched PyTorch at B=128: PASS | FAIL

(when batched PyTorch runs out of memory at B = 128, melbo at 128 is compared with the fastest
batched B that ran, and the line says so), one PASS/MISS line per target, and `overall: PASS` or
`overall: FAIL`.
Exit status: 0 when every step is ok and the gate passes (targets do not decide it), 1 otherwise.
"""

import json
import math
import re
import sys

BS = (1, 32, 128)
GEN_BATCH = 64
TARGETS = {
    "s_per_vector_step": 0.0022,   # melbo at B=128, at most
    "vs_batched": 1.65,            # batched / melbo at B=128, at least
    "vs_reference": 40.0,          # reference / melbo at B=128, at least
    "tflops": 500.0,               # melbo at B=128, at least
    "peak_gb": 60.0,               # melbo's peak over every B, at most
    "vs_hf_generate": 2.0,         # melbo tokens/s / HF at batch 64, at least
}
LINE = re.compile(r"\s*(RESULT|STEP)\s+(.*?)\s*$")


def read(paths):
    steps, results, bad = [], {}, []
    for path in paths or ["-"]:
        try:
            f = sys.stdin if path == "-" else open(path, errors="replace")
        except OSError as e:
            bad.append(f"{path}: {e.strerror}")
            continue
        with f:
            for n, line in enumerate(f, 1):
                m = LINE.match(line)
                if not m:
                    continue
                try:
                    obj = json.loads(m.group(2))
                except ValueError:
                    bad.append(f"{path}:{n}: {line.strip()[:120]}")
                    continue
                if not isinstance(obj, dict):
                    bad.append(f"{path}:{n}: not a JSON object")
                elif m.group(1) == "STEP":
                    steps = [s for s in steps if s.get("step") != obj.get("step")] + [obj]
                else:
                    key = (obj.get("name"), obj.get("B", obj.get("batch")))
                    results[key] = obj
    return steps, results, bad


def num(r, field):
    """r[field] as a positive finite float, or None (missing row, error row, bad value)."""
    if r is None or r.get("error"):
        return None
    v = r.get(field)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) and v >= 0 else None


def cell(r, field, fmt):
    if r is None:
        return "missing"
    if r.get("error"):
        e = str(r["error"])
        return "OOM" if "OOM" in e or "out of memory" in e.lower() else "error"
    v = num(r, field)
    return "-" if v is None else fmt % v


def main(argv):
    steps, res, bad = read(argv)
    out = []
    p = out.append
    fail, failed_steps = [], []

    # ---- steps
    if steps:
        p(f"{'step':<24} {'result':<48} {'seconds':>7}")
        p(f"{'-' * 24} {'-' * 48} {'-' * 7}")
        for s in steps:
            st = str(s.get("status", "?"))
            secs = s.get("seconds", "")
            p(f"{str(s.get('step', '?')):<24} {st:<48} {secs!s:>7}")
            if st != "ok" and not st.startswith("ok "):
                failed_steps.append(str(s.get("step")))
        p("")
    if failed_steps:
        fail.append("steps not ok: " + ", ".join(failed_steps))

    # ---- benchmark rows
    def rows_of(name):
        bs = sorted(set(BS) | {b for (n, b) in res if n == name and isinstance(b, int)})
        return [(b, res.get((name, b))) for b in bs]

    melbo = dict(rows_of("melbo_train"))
    batched = dict(rows_of("batched"))
    ref = res.get(("reference", None)) or res.get(("reference", 1))
    p(f"{'training run':<22} {'B':>4} {'s/vector-step':>14} {'TFLOP/s':>9} {'peak GB':>8}")
    p(f"{'-' * 22} {'-' * 4} {'-' * 14} {'-' * 9} {'-' * 8}")
    for label, table in (("melbo", melbo), ("batched PyTorch", batched)):
        for b, r in sorted(table.items()):
            p(f"{label:<22} {b:>4} {cell(r, 's_per_vector_step', '%.6f'):>14} "
              f"{cell(r, 'tflops', '%.1f'):>9} {cell(r, 'peak_gb', '%.2f'):>8}")
    p(f"{'reference PyTorch':<22} {1:>4} {cell(ref, 's_per_vector_step', '%.6f'):>14} "
      f"{cell(ref, 'tflops', '%.1f') if ref and 'tflops' in ref else '-':>9} "
      f"{cell(ref, 'peak_gb', '%.2f') if ref and 'peak_gb' in ref else '-':>8}")
    gm = res.get(("melbo_generate", GEN_BATCH))
    gh = res.get(("hf_generate", GEN_BATCH))
    p("")
    p(f"{'generation':<22} {'batch':>5} {'tokens/s':>12}")
    p(f"{'-' * 22} {'-' * 5} {'-' * 12}")
    gen_rows = sorted({b for (n, b) in res if n in ("melbo_generate", "hf_generate")} | {GEN_BATCH},
                      key=lambda b: (not isinstance(b, int), b if isinstance(b, int) else 0))
    for label, name in (("melbo", "melbo_generate"), ("HF generate", "hf_generate")):
        for b in gen_rows:
            r = res.get((name, b))
            if r is None and b != GEN_BATCH:
                continue
            p(f"{label:<22} {b!s:>5} {cell(r, 'tokens_per_s', '%.1f'):>12}")
    p("")

    # ---- ratios and gate
    m128 = num(melbo.get(128), "s_per_vector_step")
    b128_row = batched.get(128)
    b128 = num(b128_row, "s_per_vector_step")
    cmp_b, cmp_note = b128, ""
    if b128 is None and b128_row is not None and b128_row.get("error"):
        ran = [(num(r, "s_per_vector_step"), b) for b, r in batched.items()
               if num(r, "s_per_vector_step") is not None]
        if ran:
            cmp_b, bb = min(ran)
            cmp_note = f" (batched PyTorch {b128_row['error']} at B=128: against its fastest, B={bb})"
        else:
            cmp_note = f" (batched PyTorch {b128_row['error']} at B=128 and ran at no B)"
    r_ref = num(ref, "s_per_vector_step")
    vs_b = cmp_b / m128 if m128 and cmp_b else None
    vs_r = r_ref / m128 if m128 and r_ref else None
    gen_m, gen_h = num(gm, "tokens_per_s"), num(gh, "tokens_per_s")
    vs_hf = gen_m / gen_h if gen_m and gen_h else None

    def x(v):
        return "n/a" if v is None else f"{v:.2f}x"
    p(f"ratios at B=128: batched/melbo {x(vs_b)}{cmp_note}, reference/melbo {x(vs_r)}; "
      f"generation melbo/HF at batch {GEN_BATCH} {x(vs_hf)}")

    if m128 is None:
        gate, why = False, " (no melbo result at B=128)"
    elif cmp_b is not None:
        gate, why = m128 < cmp_b, f" ({m128:.6f} vs {cmp_b:.6f} s/vector-step){cmp_note}"
    elif b128_row is not None and b128_row.get("error"):
        gate, why = True, cmp_note  # batched PyTorch ran at no B; melbo did
    else:
        gate, why = False, " (no batched PyTorch result at B=128)"
    p(f"GATE melbo faster than batched PyTorch at B=128: {'PASS' if gate else 'FAIL'}{why}")
    if not gate:
        fail.append("gate")

    # ---- targets
    peaks = [num(r, "peak_gb") for r in melbo.values() if num(r, "peak_gb") is not None]
    peak = max(peaks) if peaks else None
    t = TARGETS

    def target(text, v, ok, fmt):
        if v is None:
            p(f"target {text}: MISS (no value)")
        else:
            p(f"target {text}: {'PASS' if ok(v) else 'MISS'} ({fmt % v})")
    target(f"melbo s/vector-step at B=128 <= {t['s_per_vector_step']}", m128,
           lambda v: v <= t["s_per_vector_step"], "%.6f")
    target(f"melbo >= {t['vs_batched']}x batched PyTorch at B=128", vs_b,
           lambda v: v >= t["vs_batched"], "%.2fx")
    target(f"melbo >= {t['vs_reference']:g}x reference at B=128", vs_r,
           lambda v: v >= t["vs_reference"], "%.1fx")
    target(f"melbo >= {t['tflops']:g} TFLOP/s at B=128", num(melbo.get(128), "tflops"),
           lambda v: v >= t["tflops"], "%.1f TFLOP/s")
    target(f"melbo peak memory <= {t['peak_gb']:g} GB", peak, lambda v: v <= t["peak_gb"],
           "%.2f GB")
    target(f"melbo generation >= {t['vs_hf_generate']:g}x HF generate at batch {GEN_BATCH}", vs_hf,
           lambda v: v >= t["vs_hf_generate"], "%.2fx")
    for (name, b), r in sorted(res.items(), key=lambda kv: (str(kv[0][0]), kv[0][1] if isinstance(kv[0][1], int) else -1)):
        if r.get("error"):
            p(f"note: {name}" + ("" if b is None else f" at {b}") + f": {r['error']}")
    for b in bad:
        p(f"unreadable: {b}")
    p(f"overall: {'PASS' if not fail else 'FAIL (' + '; '.join(fail) + ')'}")
    print("\n".join(out))
    return 0 if not fail else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
