"""melbo/bank.py - a melbo bank file (*.bank.safetensors, DESIGN §4) as plain Python objects.

    bank = melbo.Bank("bomb.bank.safetensors")
    bank.kind                 # "vector" or "adapter"
    bank.vectors              # numpy float32 [N, d] (vector banks)
    bank.lora_A, bank.lora_B  # numpy float32 [N, r, d_mlp], [N, d, r] (adapter banks)
    bank.objectives           # numpy float32 [N, steps]: F before every update
    bank.settings             # metadata parsed: {"radius": 4, "betas": [0.9, 0.98], ...}
    bank.prompts              # the rendered prompts (list of str)
    bank.completions          # {"vectors" | "adapters": [[str per prompt] per row],
                              #  "unsteered": [str per prompt], "random": [[...] per baseline]}
    bank.vector("-2.5*1+0.5*r0")   # melbo-rank gen --vector's arithmetic (float32 [d])
    with bank.steer(model, "3"): model.generate(...)   # torch + transformers (melbo/steer.py)

The checks are those of melbo's own reader (rank/bank/bank.c): a file that is no bank, a newer
format_version than this package reads, an unknown kind, a missing or misshapen tensor or a
missing setting is a BankError naming the file and the problem.
"""

import json
import math
import os

import numpy as np

from melbo import vexpr

#: The newest bank format_version this package reads (rank/bank/bank.h MELBO_BANK_READ_VERSION).
FORMAT_VERSION = 1

# Metadata values kept as text even where they would parse as JSON.
_TEXT_KEYS = {"format", "model_name", "model_fingerprint", "architecture", "kind", "chat_format",
              "loss_axis", "target_tokens", "adapter_module", "melbo_version", "created", "init",
              "job_id"}


class BankError(ValueError):
    """A file that is not a bank melbo can read, or a question it cannot answer."""


def parse_setting(key, value):
    """One metadata value as a Python object: JSON (numbers, true/false, lists, objects) where
    it parses, text otherwise and for the keys that are always text (model_name, ...)."""
    if key in _TEXT_KEYS or value == "":
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class Bank:
    """A bank file, read whole into memory (banks are small: N x d floats)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            from safetensors import safe_open
        except ImportError as e:  # pragma: no cover - a dependency of the package
            raise ImportError("melbo.Bank needs PyPI safetensors (pip install safetensors)") from e
        if not os.path.isfile(self.path):
            raise BankError("%s: no such file" % self.path)
        try:
            with safe_open(self.path, framework="np") as f:
                meta = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own SafetensorError, OSError, ...
            raise BankError("%s is not a melbo bank (not a readable safetensors file: %s)"
                            % (self.path, e)) from None
        self.metadata = meta  # every key -> its text, as stored
        self._tensors = tensors
        self._check_header()
        self.settings = {k: parse_setting(k, v) for k, v in meta.items()}
        obj = self._tensor("objective", 2, (-1, -1), "[N, steps]" if self.kind == "vector"
                           else "[K, steps]")
        self.objectives = obj
        self.n = int(obj.shape[0])
        if self.kind == "vector":
            self._check_vectors()
        else:
            self._check_adapters()
        self.source_layer = self._meta_int("source_layer", optional=True)

    # ------------------------------------------------------------------ checks (rank/bank/bank.c)

    def _check_header(self):
        fmt = self.metadata.get("format")
        if fmt != "melbo-bank":
            raise BankError("%s is not a melbo bank (its metadata has %s; a bank has "
                            "format=melbo-bank)" % (self.path, "format=" + fmt if fmt is not None
                                                    else "no format"))
        ver = self.metadata.get("format_version")
        if ver is None:
            raise BankError("%s: missing metadata 'format_version'" % self.path)
        if not ver.isdigit() or not ver.isascii() or int(ver) < 1:
            raise BankError("%s: format_version '%s' is not a version number" % (self.path, ver))
        if int(ver) > FORMAT_VERSION:
            raise BankError("%s has bank format_version %d, newer than this melbo package reads "
                            "(%d): upgrade the melbo package (pip install ./python from a newer "
                            "melbo)" % (self.path, int(ver), FORMAT_VERSION))
        self.format_version = int(ver)
        kind = self.metadata.get("kind")
        if kind is None or kind == "vector":
            self.kind = "vector"
        elif kind == "adapter":
            self.kind = "adapter"
        else:
            raise BankError("%s: unknown bank kind '%s' (this melbo package reads vector and "
                            "adapter banks)" % (self.path, kind))

    def _tensor(self, name, ndim, want, what, optional=False):
        t = self._tensors.get(name)
        article = "an" if self.kind == "adapter" else "a"
        if t is None:
            if optional:
                return None
            raise BankError("%s: missing tensor '%s' (%s %s bank holds %s F32 %s)"
                            % (self.path, name, article, self.kind, name, what))
        ok = t.dtype == np.float32 and t.ndim == ndim and all(
            w < 0 or s == w for s, w in zip(t.shape, want))
        if not ok:
            raise BankError("%s: tensor '%s' is %s %s, expected F32 %s"
                            % (self.path, name, _dtype_name(t.dtype), list(t.shape), what))
        return t

    def _meta_int(self, key, optional=False):
        v = self.metadata.get(key)
        if v is None:
            if optional:
                return None
            raise BankError("%s: missing metadata '%s' (%s %s bank needs it)"
                            % (self.path, key, "an" if self.kind == "adapter" else "a", self.kind))
        if not (v.isdigit() and v.isascii()) or int(v) > 1000000000:
            raise BankError("%s: metadata %s='%s' is not a whole number >= 0" % (self.path, key, v))
        return int(v)

    def _check_vectors(self):
        self.vectors = self._tensor("vectors", 2, (self.n, -1), "[N, d] (N as objective's)")
        self.d = int(self.vectors.shape[1])
        rv = self._tensor("random_vectors", 2, (-1, self.d), "[Kr, d]", optional=True)
        self.random_vectors = rv if rv is not None else np.zeros((0, self.d), np.float32)

    def _check_adapters(self):
        self.rank = self._meta_int("adapter_rank")
        self.d = self._meta_int("d_model")
        self.d_mlp = self._meta_int("d_mlp")
        if self.rank < 1 or self.d < 1 or self.d_mlp < 1:
            raise BankError("%s: adapter_rank %d, d_model %d and d_mlp %d must be positive"
                            % (self.path, self.rank, self.d, self.d_mlp))
        alpha = self.metadata.get("adapter_alpha")
        if alpha is None:
            raise BankError("%s: missing metadata 'adapter_alpha'" % self.path)
        try:
            self.alpha = float(alpha)
        except ValueError:
            self.alpha = math.nan
        if not math.isfinite(self.alpha) or self.alpha <= 0:
            raise BankError("%s: adapter_alpha '%s' is not a finite number > 0"
                            % (self.path, alpha))
        self.module = self.metadata.get("adapter_module")
        if self.module is None:
            raise BankError("%s: missing metadata 'adapter_module'" % self.path)
        n, r, d, f = self.n, self.rank, self.d, self.d_mlp
        self.lora_A = self._tensor("lora_A", 3, (n, r, f),
                                   "[K, r, d_mlp] = [%d, %d, %d]" % (n, r, f))
        self.lora_B = self._tensor("lora_B", 3, (n, d, r), "[K, d, r] = [%d, %d, %d]" % (n, d, r))
        ra = self._tensor("random_lora_A", 3, (-1, r, f), "[Kr, r, d_mlp] = [Kr, %d, %d]" % (r, f),
                          optional=True)
        rb = self._tensor("random_lora_B", 3, (-1, d, r), "[Kr, d, r] = [Kr, %d, %d]" % (d, r),
                          optional=True)
        if (ra is None) != (rb is None) or (ra is not None and ra.shape[0] != rb.shape[0]):
            raise BankError("%s: random_lora_A and random_lora_B must come together, with as many "
                            "adapters each" % self.path)
        self.random_lora_A = ra if ra is not None else np.zeros((0, r, f), np.float32)
        self.random_lora_B = rb if rb is not None else np.zeros((0, d, r), np.float32)
        if "vectors" in self._tensors:
            raise BankError("%s: an adapter bank holds no 'vectors' tensor (is kind=adapter right?)"
                            % self.path)

    # ------------------------------------------------------------------ contents

    @property
    def n_random(self):
        """Random baselines stored (0 when none)."""
        return int((self.random_vectors if self.kind == "vector" else self.random_lora_A).shape[0])

    @property
    def prompts(self):
        """The rendered prompt strings ("" for prompts given as ids)."""
        p = self.settings.get("prompts")
        return list(p) if isinstance(p, list) else []

    @property
    def prompt_ids(self):
        """The token ids of every prompt (list of lists of int)."""
        ids, lens = self._tensors.get("prompt_ids"), self._tensors.get("prompt_lengths")
        if ids is None or lens is None:
            return []
        return [[int(x) for x in ids[i, :int(lens[i])]] for i in range(ids.shape[0])]

    @property
    def completions(self):
        """{"vectors" (or "adapters"): [[text per prompt] per row], "unsteered": [...],
        "random": [[...] per baseline]}; {} for a bank made without generation."""
        c = self.settings.get("completions")
        return c if isinstance(c, dict) else {}

    @property
    def generation(self):
        """The decoding settings the completions were made with."""
        g = self.settings.get("generation")
        return g if isinstance(g, dict) else {}

    def tensor(self, name):
        """Any tensor of the file by name (numpy), e.g. "prompt_ids"."""
        if name not in self._tensors:
            raise BankError("%s: missing tensor '%s' (it holds %s)"
                            % (self.path, name, ", ".join(sorted(self._tensors))))
        return self._tensors[name]

    def tensor_names(self):
        return sorted(self._tensors)

    def vector(self, expr):
        """The vector of a vector expression ("9", "-10*22", "0.5*3+0.5*7", "r1", "none"), float32
        [d], exactly as `melbo-rank gen --vector EXPR` computes it. Raises
        melbo.VectorExpressionError (a ValueError) with melbo's message for a bad expression or
        an index the bank does not hold."""
        if self.kind != "vector":
            raise BankError("%s is an adapter bank: choose with adapter(K), not vector(EXPR)"
                            % self.path)
        return vexpr.evaluate(expr, self.vectors, self.random_vectors)[0]

    def adapter(self, which):
        """(A [r, d_mlp], B [d, r]) of adapter K, random adapter "rK", or None for "none" (as
        `melbo-rank gen --adapter`)."""
        if self.kind != "adapter":
            raise BankError("%s is a vector bank: adapter() needs a bank trained with "
                            "--adapter-rank (use vector(EXPR))" % self.path)
        e = str(which)
        if e == "none":
            return None
        rnd = e.startswith("r")
        digits = e[1:] if rnd else e
        n = self.n_random if rnd else self.n
        if not (digits.isdigit() and digits.isascii()) or int(digits) >= n:
            raise BankError("adapter %s: the bank holds %d adapters (0..%d) and %d random "
                            "baselines (r0..r%d); or none"
                            % (e, self.n, self.n - 1, self.n_random, self.n_random - 1))
        k = int(digits)
        if rnd:
            return self.random_lora_A[k], self.random_lora_B[k]
        return self.lora_A[k], self.lora_B[k]

    def steer(self, model, expr=None, scale=1.0, adapter=None, layer=None):
        """A context manager that steers a transformers causal LM as melbo-rank gen does: adds
        the vector expression (times scale) to the output of decoder block source_layer (or
        layer) at every position, or, for an adapter bank, adapter=K's (alpha/r) B A on that
        block's MLP output projection. Hooks are removed on exit. Needs torch (melbo/steer.py)."""
        from melbo import steer
        return steer.steer(self, model, expr, scale=scale, adapter=adapter, layer=layer)

    def __repr__(self):
        rows = "%d %ss" % (self.n, self.kind)
        return "<melbo.Bank %s: %s, d %d, source layer %s, model %s>" % (
            self.path, rows, self.d, self.source_layer, self.settings.get("model_name"))


def _dtype_name(dt):
    names = {np.float32: "F32", np.float16: "F16", np.float64: "F64", np.int32: "I32",
             np.int64: "I64", np.int8: "I8", np.uint8: "U8", np.int16: "I16", np.bool_: "BOOL"}
    for k, v in names.items():
        if dt == k:
            return v
    return str(dt)
