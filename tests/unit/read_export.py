"""tests/unit/read_export.py - reads what `melbo-rank bank export` wrote, with python3 + numpy +
safetensors only (tests/run installs nothing else), and checks it against the bank.

    read_export.py init OUT.safetensors K R D_MLP D SEED     writes an --init file of raw draws
    read_export.py bank BANK INIT ALPHA BANK.json            factors = normalised draws; the
                                                             --json ||dW||_F equals numpy's
    read_export.py peft DIR BANK K MODULE TARGET             PEFT directory: config, names,
                                                             shapes, dtypes, bitwise values
    read_export.py gguf FILE BANK K ARCH                     llama.cpp LoRA GGUF: keys, names,
                                                             ne, type, alignment, bitwise values

The GGUF is read by the small reader below (ggml docs/gguf.md, version 3); when PyPI `gguf` (the
reader llama.cpp's own tools use) happens to be installed, it is read with that too.
"""
import json
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


if __name__ == "__main__":
    cmds = {"init": cmd_init, "bank": cmd_bank, "peft": cmd_peft, "gguf": cmd_gguf}
    cmds[sys.argv[1]](*sys.argv[2:])
