"""tests/external/llama_cpp_cvec.py - a melbo control vector in llama.cpp itself (PyPI
llama-cpp-python), against `melbo-rank gen --vector` on the same GGUF model.

    llama_cpp_cvec.py MODEL.gguf PROMPT N GEN.jsonl EXPR=FILE.gguf ...

GEN.jsonl is `melbo-rank gen --json` with --vector EXPR for every EXPR and --vector none, N greedy
tokens on the raw PROMPT. Each FILE is read as llama.cpp's common_control_vector_load_one reads
it, through ggml's own GGUF parser (gguf_init_from_file in llama-cpp-python's libggml-base):
every tensor named direction.N with N >= 1, F32, 1-D, of the model's n_embd, summed into a flat
buffer at offset n_embd * (N - 1); that buffer goes to llama_set_adapter_cvec over layers
1 .. n_layer - 1, and llama.cpp decodes N greedy tokens.

A vector passes when llama.cpp's steered tokens differ from its unsteered ones and agree with
melbo's steered ones at least up to and including the first token where melbo's steered and
unsteered completions part (and for at least the first 4 tokens): steering, not the prompt,
decides the agreement. The placement is checked too: the same vector moved one block earlier or
later (direction.S-1, direction.S+1, cvector-generator's off-by-one) must agree with melbo on
fewer tokens than direction.S. The agreement (tokens equal from the start, and in all) and the
texts are printed. Exit status 0 when every vector passes, 1 otherwise.

Known traps with llama-cpp-python 0.3.x (issue 18): setting a control vector before the
context's first decode crashed, as did eval of a raw token list and a long (chat-length) prompt;
so the context is warmed up with a one-token completion first and the prompt stays short.
"""
import ctypes
import glob
import json
import os
import sys

import numpy as np

import llama_cpp
from llama_cpp import llama_cpp as C

MIN_AGREE = 4  # tokens that must agree from the start, whatever the unsteered completion does


class GgufInitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.POINTER(ctypes.c_void_p))]


def ggml_base():
    """llama-cpp-python's libggml-base (ggml's GGUF reader), with the prototypes used here."""
    here = os.path.dirname(llama_cpp.__file__)
    found = sorted(glob.glob(os.path.join(here, "lib", "libggml-base.so*")) +
                   glob.glob(os.path.join(here, "**", "libggml-base.so*"), recursive=True))
    if not found:
        raise SystemExit(f"FAIL no libggml-base.so under {here}")
    lib = ctypes.CDLL(found[0])
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    for name, res, args in (
            ("gguf_init_from_file", vp, [ctypes.c_char_p, GgufInitParams]),
            ("gguf_free", None, [vp]),
            ("gguf_get_n_tensors", i64, [vp]),
            ("gguf_get_tensor_name", ctypes.c_char_p, [vp, i64]),
            ("gguf_get_tensor_type", ctypes.c_int, [vp, i64]),
            ("gguf_find_key", i64, [vp, ctypes.c_char_p]),
            ("gguf_get_val_str", ctypes.c_char_p, [vp, i64]),
            ("ggml_get_tensor", vp, [vp, ctypes.c_char_p]),
            ("ggml_n_dims", ctypes.c_int, [vp]),
            ("ggml_nelements", i64, [vp]),
            ("ggml_get_data_f32", ctypes.POINTER(ctypes.c_float), [vp]),
            ("ggml_free", None, [vp])):
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


def load_control_vector(lib, path, n_embd):
    """common_control_vector_load_one (llama.cpp common/common.cpp) at strength 1: the flat
    buffer (direction.N at n_embd * (N - 1)), the metadata strings asked for, and the layers
    named. Raises ValueError where llama.cpp would drop the file."""
    ctx = ctypes.c_void_p()
    g = lib.gguf_init_from_file(path.encode(), GgufInitParams(False, ctypes.pointer(ctx)))
    if not g:
        raise ValueError(f"{path}: ggml's gguf_init_from_file cannot read it")
    try:
        meta = {}
        for key in ("general.architecture", "controlvector.model_hint"):
            k = lib.gguf_find_key(g, key.encode())
            meta[key] = lib.gguf_get_val_str(g, k).decode() if k >= 0 else None
        data, layers = np.zeros(0, dtype=np.float32), []
        for i in range(lib.gguf_get_n_tensors(g)):
            name = lib.gguf_get_tensor_name(g, i).decode()
            head, _, idx = name.partition(".")
            try:
                n = int(idx) if head == "direction" else -1
            except ValueError:
                n = -1
            if n < 1:
                raise ValueError(f"{path}: tensor '{name}' is not direction.N with N >= 1")
            t = lib.ggml_get_tensor(ctx, name.encode())
            ttype = lib.gguf_get_tensor_type(g, i)  # 0: GGML_TYPE_F32
            if ttype != 0 or lib.ggml_n_dims(t) != 1 or lib.ggml_nelements(t) != n_embd:
                raise ValueError(f"{path}: {name} is type {ttype}, {lib.ggml_n_dims(t)}-D, "
                                 f"{lib.ggml_nelements(t)} elements; llama.cpp wants F32 1-D "
                                 f"[{n_embd}]")
            if data.size < n_embd * n:
                data = np.concatenate([data, np.zeros(n_embd * n - data.size, np.float32)])
            data[n_embd * (n - 1):n_embd * n] += np.ctypeslib.as_array(
                lib.ggml_get_data_f32(t), shape=(n_embd,))
            layers.append(n)
        return data, meta, layers
    finally:
        lib.gguf_free(g)
        if ctx:
            lib.ggml_free(ctx)


def common_prefix(a, b):
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


def main():
    model_path, prompt, n, gen_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    files = [a.split("=", 1) for a in sys.argv[5:]]
    melbo = {}
    for line in open(gen_path):
        o = json.loads(line)
        melbo[o["vector"]] = o["token_ids"]
    lib = ggml_base()
    llm = llama_cpp.Llama(model_path, n_ctx=256, n_batch=64, n_threads=2, seed=0,
                          verbose=False)
    n_embd, n_layer = llm.n_embd(), C.llama_model_n_layer(llm.model)
    arch = llm.metadata.get("general.architecture")
    ids = llm.tokenize(prompt.encode(), add_bos=True, special=False)

    def greedy():
        llm.reset()
        out = []
        for t in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0,
                              reset=True):
            if llama_cpp.llama_token_is_eog(llm._model.vocab, t) or len(out) >= n:
                break
            out.append(t)
        return out

    def text(toks):
        return llm.detokenize(toks).decode("utf-8", "replace")

    def steer(data):
        """Greedy tokens under the flat buffer data (strength 1, layers 1 .. n_layer - 1), or
        None. The buffer is zero-padded to every layer: llama_set_adapter_cvec writes only the
        layers the buffer covers, so a shorter buffer would leave an earlier vector's later
        layers in place (llama-cli sets one buffer once and never meets this)."""
        buf = np.zeros(n_embd * (n_layer - 1), dtype=np.float32)
        buf[:data.size] = data
        rc = C.llama_set_adapter_cvec(llm.ctx, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                      buf.size, n_embd, 1, n_layer - 1)
        if rc != 0:
            print(f"FAIL llama_set_adapter_cvec returned {rc}")
            return None
        return greedy()

    # warm-up: the first decode before any control vector (the traps above)
    llm.create_completion(prompt, max_tokens=1, temperature=0.0)
    plain = greedy()
    print(f"llama-cpp-python {llama_cpp.__version__}, {os.path.basename(model_path)} ({arch}, "
          f"n_layer {n_layer}, n_embd {n_embd}); prompt {prompt!r} = ids {ids}; {n} greedy tokens")
    print(f"     llama.cpp unsteered: {text(plain)!r}")
    print(f"     melbo     unsteered: {text(melbo['none'])!r} "
          f"({common_prefix(plain, melbo['none'])}/{n} tokens equal from the start)")
    ok = True
    for expr, path in files:
        try:
            data, meta, layers = load_control_vector(lib, path, n_embd)
        except ValueError as e:
            print(f"FAIL {e}")
            ok = False
            continue
        if (meta["general.architecture"] != "controlvector"
                or meta["controlvector.model_hint"] != arch):
            print(f"FAIL {path}: metadata {meta}, model architecture {arch}")
            ok = False
        steered = steer(data)
        if steered is None:
            ok = False
            continue
        mine, mine_plain = melbo[expr], melbo["none"]
        k = common_prefix(steered, mine)
        same = sum(a == b for a, b in zip(steered, mine))
        part = common_prefix(mine, mine_plain)  # where steering changes melbo's completion
        need = min(max(part + 1, MIN_AGREE), len(mine))
        passed = steered != plain and k >= need
        ok &= passed
        print(f"{'ok  ' if passed else 'FAIL'} vector {expr!r} ({os.path.basename(path)}, "
              f"direction.{','.join(map(str, layers))}, |v| {np.linalg.norm(data):.4g}): "
              f"{k}/{len(mine)} tokens agree from the start ({same} position by position; "
              f"needed {need}: melbo's steered completion leaves the unsteered one at token "
              f"{part}); llama.cpp steered != unsteered: {steered != plain}")
        print(f"     llama.cpp steered: {text(steered)!r}")
        print(f"     melbo     steered: {text(mine)!r}")
        if len(layers) != 1:
            continue
        s, moved = layers[0], {}
        for m in (s - 1, s + 1):
            if 1 <= m < n_layer:
                shifted = np.zeros(n_embd * m, dtype=np.float32)
                shifted[n_embd * (m - 1):] = data[n_embd * (s - 1):n_embd * s]
                got = steer(shifted)
                moved[m] = common_prefix(got, mine) if got is not None else -1
        placed = all(k > km for km in moved.values())
        ok &= placed
        print(f"{'ok  ' if placed else 'FAIL'} vector {expr!r} at direction.{s} agrees on more "
              f"tokens ({k}) than moved one block: "
              + ", ".join(f"direction.{m} {km}" for m, km in moved.items()))
    # a null buffer clears the control vector: the unsteered tokens come back
    C.llama_set_adapter_cvec(llm.ctx, None, 0, n_embd, 1, n_layer - 1)
    again = greedy()
    cleared = again == plain
    ok &= cleared
    print(f"{'ok  ' if cleared else 'FAIL'} clearing the control vector gives the unsteered "
          f"tokens again")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
