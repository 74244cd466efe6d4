"""tests/unit/read_export.py - reads what `melbo-rank bank export` wrote, with python3 + numpy +
safetensors only (tests/run installs nothing else), and checks it against the bank.

    read_export.py init OUT.safetensors K R D_MLP D SEED     writes an --init file of raw draws
    read_export.py bank BANK INIT ALPHA BANK.json            factors = normalised draws; the
                                                             --json ||dW||_F equals numpy's
    read_export.py peft DIR BANK K MODULE TARGET             PEFT directory: config, names,
                                                             shapes, dtypes, bitwise values
    read_export.py gguf FILE BANK K ARCH                     llama.cpp LoRA GGUF: keys, names,
                                                             ne, type, alignment, bitwise values
    read_export.py cvec FILE BANK EXPR TERMS ARCH            llama.cpp control vector GGUF: keys,
                                                             the one direction.S, F32 1-D [d],
                                                             values bitwise EXPR's

The GGUF is read by the small reader below (ggml docs/gguf.md, version 3); when PyPI `gguf` (the
reader llama.cpp's own tools use) is installed, it is read with that too. `cvec` says which one
read the file; test_bank_export.sh installs PyPI gguf when it can (MELBO_NEED_PYPI_GGUF=1 makes
its absence a failure).
"""
import hashlib
import json
import os
import struct
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file


def normalize_cols(x):
    """torch F.normalize(x, dim=0) for one [rows, cols] matrix, in float64."""
    x = x.astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=0, keepdims=True), 1e-12)


def bank_meta(path):
    with safe_open(path, "np") as f:
        return f.metadata()


# ----------------------------------------------------------------------------- GGUF reader

GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                10: "<Q", 11: "<q", 12: "<d"}
GGUF_STRING, GGUF_ARRAY = 8, 9


class Reader:
    def __init__(self, data):
        self.d, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, t):
        if t == GGUF_STRING:
            return self.string()
        if t == GGUF_ARRAY:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        return self.take(GGUF_SCALARS[t])


def read_gguf(path):
    """(version, {key: (type, value)} in file order, [tensor dicts], data_offset)."""
    data = open(path, "rb").read()
    r = Reader(data)
    assert data[:4] == b"GGUF", data[:4]
    r.pos = 4
    version, n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    kv = {}
    for _ in range(n_kv):
        key = r.string()
        t = r.take("<I")
        assert key not in kv, key
        kv[key] = (t, r.value(t))
    align = kv.get("general.alignment", (4, 32))[1]
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        ggml_type, off = r.take("<I"), r.take("<Q")
        tensors.append(dict(name=name, ne=ne, type=ggml_type, offset=off))
    data_off = (r.pos + align - 1) // align * align
    assert all(b == 0 for b in data[r.pos:data_off]), "padding before the data is not zeros"
    for t in tensors:
        assert t["offset"] % align == 0, (t["name"], t["offset"])
        assert t["type"] == 0, (t["name"], "not F32")
        n = int(np.prod(t["ne"]))
        start = data_off + t["offset"]
        assert start + 4 * n <= len(data), (t["name"], "outside the file")
        # ne[0] is the fastest dimension: numpy's shape is ne reversed
        t["data"] = np.frombuffer(data, dtype="<f4", count=n, offset=start).reshape(t["ne"][::-1])
    return version, kv, tensors, data_off


# ----------------------------------------------------------------------------- commands

def cmd_init(out, k, r, d_mlp, d, seed):
    g = np.random.default_rng(int(seed))
    k, r, d_mlp, d = int(k), int(r), int(d_mlp), int(d)
    a = g.standard_normal((k, r, d_mlp)).astype(np.float32)
    b = g.standard_normal((k, d, r)).astype(np.float32)
    save_file({"lora_A": a, "lora_B": b}, out)


def cmd_bank(bank, init, alpha, json_path):
    t, i = load_file(bank), load_file(init)
    meta = bank_meta(bank)
    alpha = float(alpha)
    A, B = t["lora_A"], t["lora_B"]
    K, r, d_mlp = A.shape
    assert meta["kind"] == "adapter" and int(meta["adapter_rank"]) == r, meta
    assert float(meta["adapter_alpha"]) == alpha and int(meta["d_mlp"]) == d_mlp, meta
    assert A.dtype == np.float32 and B.dtype == np.float32 and B.shape == (K, int(meta["d_model"]), r)
    worst = 0.0
    for k in range(K):
        for got, raw in ((A[k], i["lora_A"][k]), (B[k], i["lora_B"][k])):
            want = normalize_cols(raw)
            worst = max(worst, float(np.abs(got - want).max()))
    assert worst < 1e-6, f"factors are not the normalised init: max |diff| {worst:.3g}"
    shown = json.load(open(json_path))
    assert shown["kind"] == "adapter" and len(shown["adapters"]) == K, shown.keys()
    rel = 0.0
    for k, row in enumerate(shown["adapters"]):
        want = alpha / r * np.linalg.norm(B[k].astype(np.float64) @ A[k].astype(np.float64))
        rel = max(rel, abs(row["delta_w_norm"] - want) / want)
    for k, row in enumerate(shown["random_adapters"]):
        ra, rb = t["random_lora_A"][k].astype(np.float64), t["random_lora_B"][k].astype(np.float64)
        want = alpha / r * np.linalg.norm(rb @ ra)
        rel = max(rel, abs(row["delta_w_norm"] - want) / want)
    assert rel < 1e-12, f"||dW||_F differs from numpy's by rel {rel:.3g}"
    print(f"ok   bank: {K} adapters = the normalised --init draws (max |diff| {worst:.2g}); "
          f"||dW||_F of {K} + {len(shown['random_adapters'])} random equal numpy fp64 (rel {rel:.2g})")


def cmd_peft(d, bank, k, module, target):
    """module: the adapted module's path in the HF model (model.layers.1.mlp.down_proj)."""
    t, meta, k = load_file(bank), bank_meta(bank), int(k)
    s, r, alpha = int(meta["source_layer"]), int(meta["adapter_rank"]), float(meta["adapter_alpha"])
    cfg = json.load(open(f"{d}/adapter_config.json"))
    want = dict(peft_type="LORA", task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=0,
                bias="none", target_modules=[target], layers_to_transform=[s], use_rslora=False,
                use_dora=False, fan_in_fan_out=False, base_model_name_or_path=meta["model_name"],
                layers_pattern=None, modules_to_save=None)
    bad = {key: (cfg.get(key, "(absent)"), v) for key, v in want.items() if cfg.get(key, "(absent)") != v}
    assert not bad, f"adapter_config.json: got, want: {bad}"
    w = load_file(f"{d}/adapter_model.safetensors")
    with safe_open(f"{d}/adapter_model.safetensors", "np") as f:
        wmeta = f.metadata()
    base = f"base_model.model.{module}"
    na, nb = f"{base}.lora_A.weight", f"{base}.lora_B.weight"
    assert sorted(w) == sorted([na, nb]), sorted(w)
    A, B = w[na], w[nb]
    assert A.dtype == np.float32 and A.shape == t["lora_A"].shape[1:], (A.dtype, A.shape)
    assert B.dtype == np.float32 and B.shape == t["lora_B"].shape[1:], (B.dtype, B.shape)
    assert A.tobytes() == t["lora_A"][k].tobytes() and B.tobytes() == t["lora_B"][k].tobytes(), \
        "factors are not bitwise the bank's"
    assert wmeta.get("format") == "pt" and wmeta.get("melbo.adapter") == str(k), wmeta
    print(f"ok   peft: {na} {list(A.shape)} and lora_B {list(B.shape)} F32, bitwise adapter {k}; "
          f"config r={r} lora_alpha={alpha:g} target {target} layers [{s}]")


def cmd_gguf(path, bank, k, arch):
    t, meta, k = load_file(bank), bank_meta(bank), int(k)
    s, r = int(meta["source_layer"]), int(meta["adapter_rank"])
    alpha = float(meta["adapter_alpha"])
    version, kv, tensors, data_off = read_gguf(path)
    assert version == 3, version
    keys = list(kv)
    assert keys[0] == "general.architecture", keys[:3]
    want = {"general.architecture": (8, arch), "general.type": (8, "adapter"),
            "adapter.type": (8, "lora"), "adapter.lora.alpha": (6, float(np.float32(alpha)))}
    bad = {key: (kv.get(key), v) for key, v in want.items() if kv.get(key) != v}
    assert not bad, f"GGUF metadata: got, want: {bad}"
    assert kv["melbo.adapter"] == (4, k), kv["melbo.adapter"]
    stem = f"blk.{s}.ffn_down.weight"
    names = [x["name"] for x in tensors]
    assert names == [f"{stem}.lora_a", f"{stem}.lora_b"], names
    a, b = tensors
    d_mlp, d = t["lora_A"].shape[2], t["lora_B"].shape[1]
    assert a["ne"] == [d_mlp, r] and b["ne"] == [r, d], (a["ne"], b["ne"])
    assert a["data"].tobytes() == t["lora_A"][k].tobytes(), "lora_a is not bitwise the bank's A"
    assert b["data"].tobytes() == t["lora_B"][k].tobytes(), "lora_b is not bitwise the bank's B"
    extra = ""
    try:
        import gguf  # optional: not installed by tests/run
        g = gguf.GGUFReader(path)
        assert g.fields["general.architecture"].contents() == arch
        assert g.fields["adapter.type"].contents() == "lora"
        assert abs(g.fields["adapter.lora.alpha"].contents() - alpha) <= 1e-7 * alpha
        gt = {x.name: x for x in g.tensors}
        assert gt[f"{stem}.lora_a"].data.tobytes() == t["lora_A"][k].tobytes()
        assert gt[f"{stem}.lora_b"].data.tobytes() == t["lora_B"][k].tobytes()
        assert [int(x) for x in gt[f"{stem}.lora_a"].shape] == [d_mlp, r]
        from importlib.metadata import version
        extra = f"; PyPI gguf {version('gguf')} reads the same"
    except ImportError:
        extra = "; (PyPI gguf not installed: its cross-check skipped)"
    print(f"ok   gguf-lora: v3, arch {arch}, adapter/lora, alpha {alpha:g}, {names[0]} ne {a['ne']}, "
          f"lora_b ne {b['ne']}, F32, 32-aligned (data at {data_off}), bitwise adapter {k}{extra}")


def eval_terms(bank, terms):
    """TERMS "-2.5 v1 0.5 r1" (coefficient, row: vK a vector, rK a random baseline): the sum in
    float64, in the order given, rounded to float32 once, which is melbo's arithmetic for the
    expression "-2.5*1+0.5*r1", written here without melbo's parser."""
    t = load_file(bank)
    w = terms.split()
    acc = np.zeros(t["vectors"].shape[1], dtype=np.float64)
    for c, row in zip(w[0::2], w[1::2]):
        rows = t["vectors"] if row[0] == "v" else t["random_vectors"]
        acc += float(c) * rows[int(row[1:])].astype(np.float64)
    return acc.astype(np.float32)


def melbo_package_vector(bank, expr):
    """melbo.Bank(bank).vector(expr) from the repository's python/ (numpy + safetensors only),
    or None when it cannot be imported."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "..", "python"))
    try:
        import melbo
    except ImportError:
        return None
    return melbo.Bank(bank).vector(expr)


def llama_cpp_load(tensors, n_embd):
    """common_control_vector_load_one's checks (llama.cpp common/common.cpp), on the tensors as
    read: every tensor named direction.N with N >= 1, F32, 1-D, one length; the flat buffer
    with direction.N at offset n_embd * (N - 1), as llama_set_adapter_cvec takes it."""
    data = np.zeros(0, dtype=np.float32)
    for t in tensors:
        head, _, idx = t["name"].partition(".")
        assert head == "direction" and idx.isdigit(), f"{t['name']}: llama.cpp drops the file"
        n = int(idx)
        assert n >= 1, f"{t['name']}: direction.0 makes llama.cpp drop the file"
        assert t["type"] == 0 and len(t["ne"]) == 1, (t["name"], t["type"], t["ne"])
        assert t["ne"][0] == n_embd, (t["name"], t["ne"], n_embd)
        if data.size < n_embd * n:
            data = np.concatenate([data, np.zeros(n_embd * n - data.size, dtype=np.float32)])
        data[n_embd * (n - 1):n_embd * n] += t["data"]
    return data


def cmd_cvec(path, bank, expr, terms, arch):
    t, meta = load_file(bank), bank_meta(bank)
    s, d, n_layers = int(meta["source_layer"]), int(meta["d_model"]), int(meta["n_layers"])
    version, kv, tensors, data_off = read_gguf(path)
    assert version == 3, version
    keys = list(kv)
    assert keys[:3] == ["general.architecture", "controlvector.model_hint",
                        "controlvector.layer_count"], keys[:3]
    want = {"general.architecture": (8, "controlvector"), "controlvector.model_hint": (8, arch),
            "controlvector.layer_count": (5, n_layers - 1), "melbo.vector": (8, expr),
            "melbo.bank": (8, os.path.basename(bank)),
            "melbo.bank_sha256": (8, hashlib.sha256(open(bank, "rb").read()).hexdigest())}
    for key in ("model_name", "model_fingerprint", "architecture", "source_layer", "target_layer",
                "radius", "p", "q", "prompts"):
        want["melbo." + key] = (8, meta[key])
    bad = {key: (kv.get(key), v) for key, v in want.items() if kv.get(key) != v}
    assert not bad, f"GGUF metadata: got, want: {bad}"
    others = [k for k in keys if not k.startswith(("general.", "controlvector.", "melbo."))]
    assert not others, f"keys outside general.*, controlvector.*, melbo.*: {others}"
    names = [x["name"] for x in tensors]
    assert names == [f"direction.{s}"], names
    (x,) = tensors
    assert x["type"] == 0 and x["ne"] == [d], (x["type"], x["ne"])
    want_v = eval_terms(bank, terms)
    got = x["data"]
    assert got.tobytes() == want_v.tobytes(), \
        f"direction.{s} is not bitwise {terms}: max |diff| {np.abs(got - want_v).max():.3g}"
    assert kv["melbo.vector_norm"][0] == 6 and \
        abs(kv["melbo.vector_norm"][1] - np.linalg.norm(want_v.astype(np.float64))) <= \
        1e-6 * max(1.0, np.linalg.norm(want_v.astype(np.float64))), kv["melbo.vector_norm"]
    pkg = melbo_package_vector(bank, expr)
    assert pkg is None or pkg.tobytes() == got.tobytes(), "melbo.Bank.vector(EXPR) differs"
    flat = llama_cpp_load(tensors, d)
    assert flat.size == d * s and not flat[:d * (s - 1)].any(), "not only block S is steered"
    assert flat[d * (s - 1):].tobytes() == want_v.tobytes()
    extra = "; melbo.Bank.vector agrees" if pkg is not None else "; (python/melbo not importable)"
    try:
        import gguf  # PyPI gguf: test_bank_export.sh installs it when it can
    except ImportError:
        if os.environ.get("MELBO_NEED_PYPI_GGUF") == "1":
            raise
        extra += "; (PyPI gguf unavailable: read with the small reader only)"
    else:
        from importlib.metadata import version as pkg_version
        g = gguf.GGUFReader(path)
        f = g.fields
        assert f["general.architecture"].contents() == "controlvector"
        assert f["controlvector.model_hint"].contents() == arch
        assert f["controlvector.layer_count"].types == [gguf.GGUFValueType.INT32]
        assert f["controlvector.layer_count"].contents() == n_layers - 1
        assert f["melbo.vector"].contents() == expr
        assert f["melbo.source_layer"].contents() == str(s)
        (gt,) = g.tensors
        assert gt.name == f"direction.{s}", gt.name
        assert gt.tensor_type == gguf.GGMLQuantizationType.F32, gt.tensor_type
        assert [int(n) for n in gt.shape] == [d] and len(gt.data.shape) == 1, gt.shape
        assert gt.data.dtype == np.float32 and gt.data.tobytes() == want_v.tobytes()
        extra += f"; PyPI gguf {pkg_version('gguf')} reads the same"
    print(f"ok   gguf-control-vector '{expr}': controlvector/{arch}, layer_count {n_layers - 1}, "
          f"only direction.{s} F32 [{d}] = bitwise {terms or '0 (none)'!r} (fp64 sum), sha256 "
          f"and provenance keys, llama.cpp's loader rules hold{extra}")


if __name__ == "__main__":
    cmds = {"init": cmd_init, "bank": cmd_bank, "peft": cmd_peft, "gguf": cmd_gguf,
            "cvec": cmd_cvec}
    cmds[sys.argv[1]](*sys.argv[2:])
