#!/usr/bin/env python3
"""Tiny tokenizers for the tiny models, and greedy-generation goldens for melbo.

Run by hand from the repository root (never by CI), after make_goldens.py (which deletes the
model directories, tokenizer files included) and make_train_goldens.py (whose learned vectors
are the steering vectors used here):

    python3 tests/golden/make_gen_goldens.py [--melbo build/rank/melbo-rank]

1. Trains, with PyPI `tokenizers`, one byte-level BPE of exactly 512 ids (Qwen2-style: NFC,
   Split(Qwen2 regex, Isolated) + ByteLevel(use_regex=False), ByteLevel decoder) on a fixed
   English text built here, with the special tokens <|endoftext|> = 0, <|im_start|> = 1,
   <|im_end|> = 2, and writes tokenizer.json + tokenizer_config.json (minimal ChatML chat
   template, eos <|im_end|>, no bos, pad <|endoftext|>) into every model directory in
   TOKENIZER_MODELS. config.json, generation_config.json and the weights are not touched.
2. For llama3 and qwen3, two prompts (the ChatML-rendered "How can I make a bomb?" and the
   13-token input_ids.1 of the model's golden file), each run alone through transformers'
   `generate` (greedy, 32 new tokens, eager attention, fp32, KV cache): unsteered, and steered by
   a forward hook on decoder block s = 1 that adds scale * v to its output at every position and
   on every forward call (prompt and every cached step), scale 1 and -2.5. Writes
   tests/golden/data/gen_<model>.golden.safetensors.

See tests/golden/README.md ("Generation goldens and tokenizers"). Two runs give byte-identical
files.
"""

import argparse
import copy
import json
import os
import random
import subprocess
import sys

import safetensors
import tokenizers
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODELS_DIR = os.path.join(HERE, "models")
DATA_DIR = os.path.join(HERE, "data")
sys.path.insert(0, HERE)
from make_goldens import canonicalise_header  # noqa: E402

# ----------------------------------------------------------------------------- tokenizer settings

VOCAB_SIZE = 512  # total, special tokens included
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CHATML_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                   "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
CORPUS_SEED = 4242
CORPUS_REPEATS = 20
TOKENIZER_MODELS = ["llama3", "qwen3", "qwen2", "llama2", "mistral", "qwen3_sharded", "llama3_bf16",
                    "llama3_bf16r"]

PARAGRAPHS = [
    "How can I make a bomb? I am sorry, but I cannot help with that. Making weapons is dangerous "
    "and illegal. If you are interested in chemistry, I can suggest some safe experiments instead.",
    "How can I bake a pie? Start with a simple crust: flour, butter, a pinch of salt and cold water. "
    "Roll it out, fill it with sliced apples, sugar and cinnamon, and bake it for about forty minutes.",
    "The user asked the assistant a question, and the assistant gave a short, helpful answer. "
    "A good assistant is honest about what it knows and what it does not know.",
    "Steering vectors change what a language model says. We add a vector to the residual stream "
    "of one layer at every token position, and then we let the model generate text as usual.",
    "The quick brown fox jumps over the lazy dog. The dog does not move; it is sleeping in the sun "
    "near the old stone wall, and the fox runs back into the forest before the farmer wakes up.",
    "In 1969, two astronauts walked on the Moon. They collected 21.5 kilograms of rocks and dust, "
    "planted a flag, and returned to Earth eight days after the launch.",
    "Write a short poem about the sea. The waves are grey, the wind is cold, the gulls are loud, "
    "the boats are old; and still the sailors sing their song until the night is dark and long.",
    "Please explain the difference between a list and a tuple in Python. A list can be changed "
    "after it is created, while a tuple cannot; both keep their items in order.",
    "What is the capital of France? The capital of France is Paris. It is known for its museums, "
    "its cafes, the river Seine and the tall iron tower built for the fair of 1889.",
    "Learning a new skill takes time. Practice a little every day, notice your mistakes, ask for "
    "feedback, and do not give up when the first attempts are slow or clumsy.",
    "Thank you for your message! I would be happy to help. Could you tell me a bit more about "
    "what you need, so that I can give you a clear and useful answer?",
    "Once upon a time there was a small village at the edge of a great mountain. Every winter the "
    "snow closed the roads, and the people told stories by the fire until spring came again.",
]
# ChatML-shaped conversations without the special tokens, so that "user", "assistant" and the
# newlines around them become tokens of their own
CONVERSATIONS = [
    ("How can I make a bomb?", "I am sorry, but I cannot help with that."),
    ("How can I bake a pie?", "Start with a simple crust and fill it with apples."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Write a short poem about the sea.", "The waves are grey, the wind is cold."),
]

# ----------------------------------------------------------------------------- generation settings

# model -> (training golden, row of its `vectors` that steers the model). Row 3, not row 0:
# with row 0 one greedy step is a near-tie (llama3 prompt 1 at scale -2.5: top-2 gap 9.5e-4 at
# step 0; qwen3 prompt 0 at scale 1: 3.3e-5); with row 3 every step of every run has gap > 2e-3.
GEN_MODELS = {
    "llama3": ("train_p2q1", 3),
    "qwen3": ("train_p4q4_dim", 3),
}
SOURCE_LAYER = 1
SCALE = 1.0
SCALE_NEG = -2.5
MAX_NEW_TOKENS = 32
FULL_EXTRA = 8  # logits_full.{i} covers prompt + this many generated tokens
CHAT_PROMPT = "How can I make a bomb?"
MIN_GAP = 1e-3  # top-1 minus top-2 logit, every greedy step


def log(*a):
    print(*a, flush=True)


def rel(a, b):
    a = a.double()
    b = b.double()
    return float((a - b).abs().max() / b.abs().max())


# ============================================================================= 1. tokenizer

def corpus():
    """The fixed training text: the paragraphs and conversations, CORPUS_REPEATS times, each
    time in another order (random.Random(CORPUS_SEED))."""
    items = list(PARAGRAPHS)
    items += [f"user\n{q}\nassistant\n{a}\n" for q, a in CONVERSATIONS]
    r = random.Random(CORPUS_SEED)
    out = []
    for _ in range(CORPUS_REPEATS):
        p = list(items)
        r.shuffle(p)
        out.extend(p)
    return out


def train_tokenizer():
    bl = dict(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(**bl)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(**bl)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=1, show_progress=False,
                                  special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    j = json.loads(tok.to_str())
    # spell the parts exactly as Qwen2/Qwen3's tokenizer.json does (the Python decoder
    # constructor takes no options; the BPE prefix/suffix are "" there, null here)
    j["decoder"] = {"type": "ByteLevel", **bl}
    j["model"]["continuing_subword_prefix"] = ""
    j["model"]["end_of_word_suffix"] = ""
    assert [a["content"] for a in j["added_tokens"]] == SPECIALS
    assert [a["id"] for a in j["added_tokens"]] == [0, 1, 2]
    assert all(a["special"] and not a["normalized"] for a in j["added_tokens"])
    ids = sorted(j["model"]["vocab"].values())
    assert ids == list(range(VOCAB_SIZE)), (len(ids), ids[:5], ids[-5:])
    n_merges = len(j["model"]["merges"])
    assert n_merges == VOCAB_SIZE - 256 - len(SPECIALS), n_merges
    text = json.dumps(j, indent=2, ensure_ascii=False) + "\n"
    Tokenizer.from_str(text)  # loads back
    return text, n_merges


def tokenizer_config_text():
    cfg = {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "bos_token": None,
        "chat_template": CHATML_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 256,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }
    return json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


TEST_STRINGS = [
    "How can I make a bomb?",
    "How can I bake a pie?",
    "Hello, world! It's 2024 and the café is open.\n\nNew paragraph\twith a tab.",
    "  leading spaces, trailing spaces   ",
    "<|im_start|>user\nHi<|im_end|>\n",
    "Zürich, 東京, Ελληνικά, emoji 🙂 and e\u0301 (NFC -> \u00e9)",
    "x = [1, 2, 3]; print(x[0] + 42)  # code\r\n",
]


def chat_ids(tok, content):
    r = tok.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                tokenize=True)
    if hasattr(r, "keys"):  # transformers 5 returns a BatchEncoding
        r = r["input_ids"]
    return [int(x) for x in r]


def write_tokenizers(tj_text, cfg_text):
    for name in TOKENIZER_MODELS:
        d = os.path.join(MODELS_DIR, name)
        assert os.path.exists(os.path.join(d, "config.json")), f"{d}: run make_goldens.py first"
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(tj_text)
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            f.write(cfg_text)


def check_tokenizers(tj_text):
    raw = Tokenizer.from_str(tj_text)
    info = {}
    for name in TOKENIZER_MODELS:
        d = os.path.join(MODELS_DIR, name)
        cfg = json.load(open(os.path.join(d, "config.json")))
        gen = json.load(open(os.path.join(d, "generation_config.json")))
        assert cfg["vocab_size"] == VOCAB_SIZE
        tok = AutoTokenizer.from_pretrained(d)
        assert len(tok) == VOCAB_SIZE, len(tok)
        assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2, (tok.eos_token, tok.eos_token_id)
        assert tok.pad_token_id == 0 and tok.bos_token is None
        ids = chat_ids(tok, CHAT_PROMPT)
        assert max(ids) < VOCAB_SIZE and min(ids) >= 0
        rendered = tok.apply_chat_template([{"role": "user", "content": CHAT_PROMPT}],
                                           add_generation_prompt=True, tokenize=False)
        assert rendered == f"<|im_start|>user\n{CHAT_PROMPT}<|im_end|>\n<|im_start|>assistant\n"
        assert raw.encode(rendered).ids == ids
        for s in TEST_STRINGS:
            a = tok(s, add_special_tokens=True)["input_ids"]
            b = raw.encode(s).ids
            assert a == b, (name, s, a, b)
            nfc = normalizers.NFC().normalize_str(s)
            assert tok.decode(a) == nfc, (s, tok.decode(a))
            assert tok.decode(a, skip_special_tokens=True) == \
                nfc.replace("<|im_start|>", "").replace("<|im_end|>", "")
        info[name] = dict(config_eos=cfg.get("eos_token_id"), config_bos=cfg.get("bos_token_id"),
                          gen_eos=gen.get("eos_token_id"), gen_bos=gen.get("bos_token_id"),
                          chat_ids=ids)
    return info


def check_melbo_tokenizer(melbo, tok_dir, hf_tok):
    """Optional: melbo-rank tokenize must give HF's ids (skipped when the binary is missing)."""
    if not melbo or not os.path.isfile(melbo):
        return "skipped (no melbo-rank binary)"
    try:
        for s in [CHAT_PROMPT] + TEST_STRINGS:
            r = subprocess.run([melbo, "tokenize", "--model", tok_dir, "--prompt", s, "--json"],
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                return f"FAILED: exit {r.returncode}: {r.stderr.strip()[:300]}"
            got = json.loads(r.stdout.strip().splitlines()[-1])["ids"]
            want = chat_ids(hf_tok, s)
            if got != want:
                return f"FAILED: {s!r}: melbo {got} != HF {want}"
            r = subprocess.run([melbo, "tokenize", "--model", tok_dir, "--raw-prompt", s, "--json"],
                               capture_output=True, text=True, timeout=60)
            got = json.loads(r.stdout.strip().splitlines()[-1])["ids"] if r.returncode == 0 else None
            want = hf_tok(s, add_special_tokens=True)["input_ids"]
            if got != want:
                return f"FAILED: raw {s!r}: melbo {got} != HF {want}"
        return f"ok ({1 + len(TEST_STRINGS)} strings, chat and raw, equal to HF)"
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
        return f"FAILED: {e}"


# ============================================================================= 2. generation

class AddVector:
    """Forward hook on decoder block s: output + scale * v at every position, on every call
    (the prompt pass and every KV-cached step). first_call_only: only the prompt pass."""

    def __init__(self, v, scale, first_call_only=False):
        self.v = v
        self.scale = scale
        self.first_call_only = first_call_only
        self.calls = 0
        self.shapes = []

    def __call__(self, module, args, output):
        self.calls += 1
        hs = output[0] if isinstance(output, tuple) else output
        self.shapes.append(tuple(hs.shape))
        if self.first_call_only and self.calls > 1:
            return output
        hs = hs + (self.scale * self.v).to(hs.dtype)
        return (hs,) + tuple(output[1:]) if isinstance(output, tuple) else hs


def generate(model, ids, v=None, scale=0.0, first_call_only=False):
    """Greedy generation of one prompt alone. Returns (new ids, raw logits [n, V], hook)."""
    hook = None
    handle = None
    if v is not None:
        hook = AddVector(v, scale, first_call_only)
        handle = model.model.layers[SOURCE_LAYER].register_forward_hook(hook)
    try:
        with torch.no_grad():
            out = model.generate(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None],
                                 do_sample=False, max_new_tokens=MAX_NEW_TOKENS,
                                 repetition_penalty=1.0, num_beams=1, return_dict_in_generate=True,
                                 output_logits=True, output_scores=True)
    finally:
        if handle is not None:
            handle.remove()
    new = out.sequences[0, ids.shape[0]:]
    logits = torch.stack([x[0] for x in out.logits]).float()
    scores = torch.stack([x[0] for x in out.scores]).float()
    assert logits.shape[0] == new.shape[0]
    # greedy, no processors that change the argmax: the scores are the raw logits
    assert torch.equal(scores.argmax(-1), new) and torch.equal(logits.argmax(-1), new)
    return new, logits, hook


def full_forward(model, seq, v=None, scale=0.0):
    """One forward pass over the whole sequence, no cache, v added at every position."""
    handle = None
    if v is not None:
        handle = model.model.layers[SOURCE_LAYER].register_forward_hook(AddVector(v, scale))
    try:
        with torch.no_grad():
            return model(input_ids=seq[None], use_cache=False).logits[0].float()
    finally:
        if handle is not None:
            handle.remove()


def top2_gap(logits):
    t = logits.topk(2, dim=-1).values
    return (t[:, 0] - t[:, 1])


def gen_goldens(name, train_case, row, tok):
    d = os.path.join(MODELS_DIR, name)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    model64 = copy.deepcopy(model).double()
    gc = model.generation_config
    eos = gc.eos_token_id
    eos_ids = [] if eos is None else ([int(eos)] if isinstance(eos, int) else [int(x) for x in eos])
    V = model.config.vocab_size
    dm = model.config.hidden_size

    train = load_file(os.path.join(DATA_DIR, f"{train_case}.golden.safetensors"))
    v = train["vectors"][row].float().contiguous()
    assert v.shape == (dm,) and abs(float(v.norm()) - 4.0) < 1e-4, float(v.norm())

    golden = load_file(os.path.join(DATA_DIR, f"{name}.golden.safetensors"))
    prompts = [torch.tensor(chat_ids(tok, CHAT_PROMPT), dtype=torch.int64),
               golden["input_ids.1"].long()]
    assert prompts[0].shape[0] != prompts[1].shape[0] and prompts[1].shape[0] == 13

    runs = {"unsteered": None, "steered": SCALE, "steered_neg": SCALE_NEG}
    tensors = {"vector": v}
    meta_extra = {}
    report = []
    tok_eos_at = {}  # run.i -> positions of the tokenizer's eos (<|im_end|>) in the new tokens
    for i, ids in enumerate(prompts):
        T = ids.shape[0]
        tensors[f"prompt.{i}"] = ids.to(torch.int32)
        meta_extra[f"text.prompt.{i}"] = tok.decode(ids.tolist(), skip_special_tokens=False)
        outs = {}
        for run, scale in runs.items():
            new, logits, hook = generate(model, ids, None if scale is None else v,
                                         0.0 if scale is None else scale)
            n = new.shape[0]
            stopped = "eos" if n < MAX_NEW_TOKENS else "max_new_tokens"
            if n < MAX_NEW_TOKENS:
                assert int(new[-1]) in eos_ids, (name, i, run, new)
            assert not any(int(x) in eos_ids for x in new[:-1])
            gap = top2_gap(logits)
            assert float(gap.min()) > MIN_GAP, (name, i, run, float(gap.min()), int(gap.argmin()))
            if hook is not None:
                # the hook ran once for the prompt and once per cached step, on 1 new position
                assert hook.calls == n and hook.shapes[0] == (1, T, dm), (hook.calls, hook.shapes[:2])
                assert all(s == (1, 1, dm) for s in hook.shapes[1:]), hook.shapes
            # cached decoding == one full forward over prompt + generated (hook at every position)
            seq = torch.cat([ids, new])
            full = full_forward(model, seq[:-1], None if scale is None else v,
                                0.0 if scale is None else scale)[T - 1:]
            e_cache = rel(logits, full)
            assert torch.equal(full.argmax(-1), new) and e_cache <= 1e-5, (name, i, run, e_cache)
            # fp64 copy of the model: same greedy tokens
            new64, _, _ = generate(model64, ids, None if scale is None else v.double(),
                                   0.0 if scale is None else scale)
            same64 = torch.equal(new64, new)
            assert same64, (name, i, run, new.tolist(), new64.tolist())
            tensors[f"{run}.{i}"] = new.to(torch.int32)
            meta_extra[f"text.{run}.{i}"] = tok.decode(new.tolist(), skip_special_tokens=True)
            meta_extra[f"stop.{run}.{i}"] = stopped
            outs[run] = dict(new=new, logits=logits, gap=float(gap.min()), e_cache=e_cache,
                             stopped=stopped)
            tok_eos_pos = [k for k, x in enumerate(new.tolist()) if x == tok.eos_token_id]
            if tok_eos_pos:
                tok_eos_at[f"{run}.{i}"] = tok_eos_pos
            report.append(f"  {name} prompt {i} ({T} tokens) {run:11s}: {n} new tokens, stop "
                          f"{stopped}, min top-2 gap {float(gap.min()):.3g}, cached vs full rel "
                          f"{e_cache:.1e}, fp64 same tokens, <|im_end|> at {tok_eos_pos or 'none'}")
            report.append(f"      ids  {new.tolist()}")
            report.append(f"      text {meta_extra[f'text.{run}.{i}']!r}")

        # steering must change the output, and the hook must act on the cached steps too: a
        # prompt-only hook gives another continuation than the every-step hook
        u, s_ = outs["unsteered"]["new"], outs["steered"]["new"]
        m = min(len(u), len(s_))
        diff = [k for k in range(m) if int(u[k]) != int(s_[k])]
        assert diff, (name, i, "steering changed nothing")
        po, _, _ = generate(model, ids, v, SCALE, first_call_only=True)
        mp = min(len(po), len(s_))
        diff_po = [k for k in range(mp) if int(po[k]) != int(s_[k])]
        assert diff_po and diff_po[0] >= 1, (name, i, diff_po)
        report.append(f"  {name} prompt {i}: steered differs from unsteered at steps {diff[:6]}"
                      f"{'...' if len(diff) > 6 else ''} ({len(diff)} of {m}); prompt-only hook "
                      f"differs from every-step hook first at step {diff_po[0]} ({len(diff_po)} of {mp})")
        meta_extra[f"first_diff.steered_vs_unsteered.{i}"] = str(diff[0])
        meta_extra[f"first_diff.prompt_only_hook.{i}"] = str(diff_po[0])

        # full-recompute logits of prompt + the first FULL_EXTRA generated tokens
        k = min(FULL_EXTRA, len(u))
        seq = torch.cat([ids, u[:k]])
        lf = full_forward(model, seq)
        assert lf.shape == (T + k, V)
        assert rel(lf[T - 1:T - 1 + k], outs["unsteered"]["logits"][:k]) <= 1e-5
        tensors[f"logits_full.{i}"] = lf.contiguous()
        ks = min(FULL_EXTRA, len(s_))
        lfs = full_forward(model, torch.cat([ids, s_[:ks]]), v, SCALE)
        assert rel(lfs[T - 1:T - 1 + ks], outs["steered"]["logits"][:ks]) <= 1e-5
        tensors[f"logits_full_steered.{i}"] = lfs.contiguous()

    for key, x in tensors.items():
        if x.is_floating_point():
            assert torch.isfinite(x).all(), key
    meta = {
        "format": "melbo-gen-golden",
        "version": "1",
        "model": name,
        "architecture": model.config.architectures[0],
        "source_layer": str(SOURCE_LAYER),
        "scale": "%g" % SCALE,
        "scale_neg": "%g" % SCALE_NEG,
        "max_new_tokens": str(MAX_NEW_TOKENS),
        "eos_ids": json.dumps(eos_ids),
        "eos_from": "generation_config.eos_token_id",
        "tokenizer_eos_id": str(tok.eos_token_id),
        # HF does not stop there unless it is in eos_ids (qwen3's generation_config has no eos)
        "tokenizer_eos_positions": json.dumps(tok_eos_at, sort_keys=True),
        "n_prompts": str(len(prompts)),
        "prompts_from": json.dumps([f"apply_chat_template([user: {CHAT_PROMPT!r}], "
                                    "add_generation_prompt=True)", f"{name}.golden.safetensors:input_ids.1"]),
        "vector_from": f"{train_case}.golden.safetensors:vectors[{row}]",
        "steering": "forward hook on model.model.layers[source_layer]: output + scale*vector at "
                    "every position, on every forward call (prompt and each KV-cached step)",
        "decoding": "greedy (do_sample=False, num_beams=1, repetition_penalty=1.0), batch 1, "
                    "attention_mask all ones, KV cache; new tokens only, eos included when it stopped",
        "logits_full": f"one forward pass without cache over the prompt + the first {FULL_EXTRA} "
                       "tokens of the unsteered run; logits_full_steered: the same for the steered "
                       "run (scale, vector added at every position)",
        "min_top2_gap": "%.6g" % MIN_GAP,
        "attn_implementation": "eager",
        "dtype": "float32",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "safetensors_version": safetensors.__version__,
        "tokenizers_version": tokenizers.__version__,
    }
    meta.update(meta_extra)
    path = os.path.join(DATA_DIR, f"gen_{name}.golden.safetensors")
    save_file(tensors, path, metadata=meta)
    canonicalise_header(path)
    back = load_file(path)
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    with safe_open(path, "pt") as f:
        assert f.metadata() == meta
    return path, eos_ids, report


# ============================================================================= main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--melbo", default=os.path.join(ROOT, "build", "rank", "melbo-rank"),
                    help="melbo-rank binary for the optional tokenizer cross-check")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    log(f"torch {torch.__version__}  transformers {transformers.__version__}  tokenizers "
        f"{tokenizers.__version__}  safetensors {safetensors.__version__}  python {sys.version.split()[0]}")

    tj, n_merges = train_tokenizer()
    tj2, _ = train_tokenizer()
    assert tj == tj2, "tokenizer training is not deterministic"
    cfg = tokenizer_config_text()
    write_tokenizers(tj, cfg)
    info = check_tokenizers(tj)
    log(f"\n== tokenizer: byte-level BPE, {VOCAB_SIZE} ids = {len(SPECIALS)} specials (ids 0-2: "
        f"{', '.join(SPECIALS)}) + 256 bytes + {n_merges} merges; written to {len(TOKENIZER_MODELS)} "
        f"model dirs ({len(tj.encode())} + {len(cfg.encode())} bytes each)")
    tok = AutoTokenizer.from_pretrained(os.path.join(MODELS_DIR, "llama3"))
    ids = info["llama3"]["chat_ids"]
    log(f"   chat prompt {CHAT_PROMPT!r}: {len(ids)} tokens {ids}")
    log("   tokens: " + " ".join(tok.convert_ids_to_tokens(ids)))
    log("   model        config eos/bos   generation_config eos/bos")
    for n, x in info.items():
        log(f"   {n:13s} {str(x['config_eos']):>6s}/{str(x['config_bos']):5s}  "
            f"{str(x['gen_eos']):>6s}/{x['gen_bos']}")
    log(f"   melbo-rank tokenize cross-check: "
        f"{check_melbo_tokenizer(args.melbo, os.path.join(MODELS_DIR, 'llama3'), tok)}")

    for name, (case, row) in GEN_MODELS.items():
        t = AutoTokenizer.from_pretrained(os.path.join(MODELS_DIR, name))
        path, eos_ids, report = gen_goldens(name, case, row, t)
        log(f"\n== {name}: eos ids used by generate (generation_config): {eos_ids}; vector "
            f"{case}.golden.safetensors:vectors[{row}]")
        for line in report:
            log(line)
        log(f"   wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")
    log("\nok")


if __name__ == "__main__":
    main()
