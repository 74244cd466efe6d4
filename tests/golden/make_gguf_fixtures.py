#!/usr/bin/env python3
"""Small synthetic GGUF files for melbo's reader and dequantisation tests (tests/unit/test_gguf.c).

Run by hand from the repository root (never by CI; needs PyPI gguf and numpy):

    python3 tests/golden/make_gguf_fixtures.py

Writes tests/golden/gguf/ (about 40 kB in all; two runs give identical files):
  quant.gguf           GGUFWriter, version 3: one metadata pair of every value type (scalars,
                       a string, arrays of ints, floats, strings and bools) and one tensor per
                       format melbo dequantises, each [3 rows, 512 values]: F32, F16, BF16, Q8_0,
                       Q4_0, Q4_1 quantised with gguf.quants.quantize from seeded normals; Q4_K,
                       Q6_K (PyPI gguf cannot quantise them) as seeded random blocks whose f16
                       scales are set to small finite values; plus "q5_k" (Q5_K, random blocks)
                       for the refusal test.
  quant.expected.gguf  F32 tensors of the same names holding gguf.quants.dequantize of each.
  align64.gguf         general.alignment = 64, two F32 tensors.
  arch_gpt2.gguf       metadata only, general.architecture = "gpt2" (refused by name).
  bad_magic.gguf, bad_version.gguf, truncated.gguf, bad_vtype.gguf, bad_offset.gguf,
  bad_align.gguf       malformed files, each with one defect (see make_malformed).
"""

import os
import struct

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V
from gguf import quants

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "gguf")
ROWS, COLS = 3, 512


def k_blocks(rng, qtype, rows, cols):
    """Random raw blocks of a K-quant with sane f16 scales (d, dmin) and valid layouts."""
    bv, bb = gguf.GGML_QUANT_SIZES[qtype]
    nb = rows * cols // bv
    raw = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)
    if qtype == T.Q4_K:   # f16 d, f16 dmin at the start
        raw[:, 0:2] = np.frombuffer(np.float16(rng.uniform(0.001, 0.05, nb)).astype("<f2").tobytes(), np.uint8).reshape(nb, 2)
        raw[:, 2:4] = np.frombuffer(np.float16(rng.uniform(0.001, 0.05, nb)).astype("<f2").tobytes(), np.uint8).reshape(nb, 2)
    elif qtype == T.Q6_K:  # f16 d at the end
        raw[:, bb - 2:] = np.frombuffer(np.float16(rng.uniform(0.001, 0.05, nb)).astype("<f2").tobytes(), np.uint8).reshape(nb, 2)
    elif qtype == T.Q5_K:
        raw[:, 0:4] = 0
    return raw.reshape(rows, cols // bv * bb)


def write_quant(rng):
    w = gguf.GGUFWriter(os.path.join(OUT, "quant.gguf"), "llama")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 1.5)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo, GGUF")
    w.add_uint64("test.u64", 1 << 40)
    w.add_int64("test.i64", -(1 << 40))
    w.add_float64("test.f64", 2.25)
    w.add_array("test.arr_i32", [1, -2, 3])
    w.add_array("test.arr_f32", [0.5, 0.25])
    w.add_array("test.arr_str", ["a", "", "ccc"])
    w.add_array("test.arr_bool", [True, False])
    expected = {}
    for qt in (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q4_K, T.Q6_K, T.Q5_K):
        name = qt.name.lower()
        if qt in (T.Q4_K, T.Q6_K, T.Q5_K):
            q = k_blocks(rng, qt, ROWS, COLS)
        else:
            x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
            q = quants.quantize(x, qt)
        w.add_tensor(name, q, raw_dtype=qt)
        if qt != T.Q5_K:
            expected[name] = quants.dequantize(q, qt).astype(np.float32).reshape(ROWS, COLS)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    e = gguf.GGUFWriter(os.path.join(OUT, "quant.expected.gguf"), "llama")
    for name, x in expected.items():
        e.add_tensor(name, x)
    e.write_header_to_file()
    e.write_kv_data_to_file()
    e.write_tensors_to_file()
    e.close()


def write_small():
    w = gguf.GGUFWriter(os.path.join(OUT, "align64.gguf"), "llama")
    w.add_custom_alignment(64)
    w.add_tensor("a", np.arange(5, dtype=np.float32))
    w.add_tensor("b", np.arange(6, dtype=np.float32).reshape(2, 3) * 2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    w = gguf.GGUFWriter(os.path.join(OUT, "arch_gpt2.gguf"), "gpt2")
    w.add_block_count(2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def make_malformed():
    with open(os.path.join(OUT, "align64.gguf"), "rb") as f:
        good = f.read()
    files = {
        "bad_magic.gguf": b"GGUX" + good[4:],
        "bad_version.gguf": good[:4] + struct.pack("<I", 1) + good[8:],
        "truncated.gguf": good[:120],  # cut inside the tensor infos
        # one pair of value type 99
        "bad_vtype.gguf": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("x.y") + struct.pack("<I", 99),
        # one F32 tensor of 4 values at offset 4096 in a file with 32 data bytes
        "bad_offset.gguf": (b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + gstr("t")
                            + struct.pack("<IQIQ", 1, 4, 0, 4096)).ljust(64, b"\0") + b"\0" * 32,
        # offset 8 with the default alignment 32
        "bad_align.gguf": (b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + gstr("t")
                           + struct.pack("<IQIQ", 1, 4, 0, 8)).ljust(64, b"\0") + b"\0" * 64,
    }
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    write_quant(rng)
    write_small()
    make_malformed()
    for n in sorted(os.listdir(OUT)):
        print(n, os.path.getsize(os.path.join(OUT, n)))


if __name__ == "__main__":
    main()
