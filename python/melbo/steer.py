"""melbo/steer.py - apply a bank's vector or adapter to a transformers causal LM (torch).

    with bank.steer(model, "-2.5*1+0.5*r0"):          # a vector bank
        out = model.generate(ids, max_new_tokens=32, do_sample=False)
    with bank.steer(model, adapter=3):                  # an adapter bank
        ...

The arithmetic is melbo-rank gen's (DESIGN §4 "Layers"):
- a vector: v = vector(expr) * float32(scale) (float32, as melbo), added by a forward hook to the
  output of decoder block source_layer (HF `model.model.layers[s]`, `hidden_states[s + 1]`) at
  every position, on every forward call: the prompt and each cached generated token alike;
- an adapter: a forward hook on block s's MLP output projection (`mlp.down_proj`; `mlp.c_proj`
  for Qwen-1) adds (alpha / r) * B (A x) to its output, x its input (the LoRA of PEFT).
The hooks are removed when the block exits, even on an exception. torch is imported here only.
"""

import warnings

import numpy as np

from melbo.bank import BankError


def decoder_layers(model):
    """The list of decoder blocks of a transformers causal LM (Llama, Mistral, Qwen2/3: 
    model.model.layers; Qwen-1: model.transformer.h)."""
    for path in ("model.layers", "model.model.layers", "transformer.h", "layers"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "__len__") and len(obj) > 0:
            return obj
    get = getattr(model, "get_decoder", None)
    dec = get() if callable(get) else None
    if dec is not None and getattr(dec, "layers", None) is not None:
        return dec.layers
    raise BankError("steer: cannot find the decoder blocks of %s (looked for model.layers and "
                    "transformer.h)" % type(model).__name__)


def _hidden_size(model):
    cfg = getattr(model, "config", None)
    for key in ("hidden_size", "n_embd", "d_model"):
        v = getattr(cfg, key, None)
        if isinstance(v, int):
            return v
    return None


def _submodule(layer, name):
    for cand in ([name, "mlp.down_proj"] if name == "ffn_down" else [name]):
        obj = layer
        for part in cand.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    raise BankError("steer: the source block has no module %s (the bank's adapter_module)" % name)


class Steering:
    """The context manager bank.steer returns; usable more than once, not nested with itself."""

    def __init__(self, bank, model, expr=None, scale=1.0, adapter=None, layer=None):
        import torch
        self.bank, self.model = bank, model
        self.layer = bank.source_layer if layer is None else int(layer)
        if self.layer is None:
            self.layer = 7  # melbo-rank gen's default when a bank names no source layer
        blocks = decoder_layers(model)
        if not 0 <= self.layer < len(blocks):
            raise BankError("steer: source layer %d is outside the model's %d layers"
                            % (self.layer, len(blocks)))
        self.block = blocks[self.layer]
        d = _hidden_size(model)
        if d is not None and d != bank.d:
            raise BankError("steer: the bank's %ss are for d_model %d but the model has %d"
                            % (bank.kind, bank.d, d))
        archs = getattr(getattr(model, "config", None), "architectures", None) or []
        want = bank.settings.get("architecture")
        from_gguf = str(bank.settings.get("model_name", "")).endswith(".gguf")
        if archs and want and want not in archs and not from_gguf:
            warnings.warn("steer: the bank was trained on a %s (%s), this model is a %s"
                          % (want, bank.settings.get("model_name"), archs[0]), stacklevel=4)
        self.vector = None  # float32 numpy [d], or None
        self.factors = None  # (A, B) numpy, or None
        self._handles = []
        if bank.kind == "vector":
            if adapter is not None:
                raise BankError("%s is a vector bank: adapter= needs a bank trained with "
                                "--adapter-rank (give a vector expression)" % bank.path)
            if expr is None:
                raise BankError("steer: give a vector expression (\"3\", \"-2*3+r0\", \"none\")")
            from melbo import vexpr
            v, is_none = vexpr.evaluate(expr, bank.vectors, bank.random_vectors)
            if not is_none:
                self.vector = v * np.float32(scale)  # float32 product, as melbo-rank gen
        else:
            if expr is not None:
                raise BankError("%s is an adapter bank: choose with adapter=K, not a vector "
                                "expression" % bank.path)
            if adapter is None:
                raise BankError("steer: give adapter=K, \"rK\" or \"none\" for an adapter bank")
            if scale != 1.0:
                raise BankError("steer: scale multiplies vectors, not adapters")
            self.factors = bank.adapter(adapter)
            if self.factors is not None:
                A, B = self.factors
                if A.shape[1] != _submodule(self.block, bank.module).in_features:
                    raise BankError("steer: the bank's adapters are for MLP width %d but %s takes "
                                    "%d" % (A.shape[1], bank.module,
                                            _submodule(self.block, bank.module).in_features))
        self._torch = torch
        self._cache = {}

    def _as(self, key, array, like):
        """array as a torch tensor on like's device and dtype (made once per device/dtype)."""
        k = (key, like.device, like.dtype)
        t = self._cache.get(k)
        if t is None:
            t = self._torch.from_numpy(np.ascontiguousarray(array)).to(like.device, like.dtype)
            self._cache[k] = t
        return t

    def _vector_hook(self, module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h + self._as("v", self.vector, h)
        return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h

    def _adapter_hook(self, module, args, output):
        F = self._torch.nn.functional
        x = args[0]
        A = self._as("A", self.factors[0], x)
        B = self._as("B", self.factors[1], x)
        return output + F.linear(F.linear(x, A), B) * (self.bank.alpha / self.bank.rank)

    def __enter__(self):
        if self._handles:
            raise RuntimeError("steer: this context is already active")
        if self.vector is not None:
            self._handles.append(self.block.register_forward_hook(self._vector_hook))
        elif self.factors is not None:
            mod = _submodule(self.block, self.bank.module)
            self._handles.append(mod.register_forward_hook(self._adapter_hook))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False


def steer(bank, model, expr=None, scale=1.0, adapter=None, layer=None):
    return Steering(bank, model, expr, scale=scale, adapter=adapter, layer=layer)
