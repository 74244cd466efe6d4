#!/usr/bin/env python3
"""Encode throughput: melbo's tokenizer vs HF tokenizers (Rust, one thread), same text, same run.

usage: python3 bench/tokenizer/bench_tokenizer.py --bench BUILD/bench/tokenizer/bench_tokenizer \
           [--fixtures DIR] [--mb 4] [--seconds 3] [--tokenizers qwen3,llama3.1,mistral]

--fixtures is a folder with <name>/tokenizer.json (e.g. ../shared/fixtures/tokenizers); by default
the copies the build unpacked next to the benchmark (BUILD/tests/tokenizer/fixtures), else the
repository's tests/tokenizer/fixtures unpacked into a temporary folder.

Builds a large mixed text (English prose, code, CJK, Cyrillic, Arabic, Devanagari, Thai, emoji,
numbers, whitespace runs; one ~1 kB document per line, fixed seed), encodes every line with HF
`tokenizers` (encode_batch with TOKENIZERS_PARALLELISM=false / RAYON_NUM_THREADS=1, i.e. one
thread), checks that melbo produces the same token count, and prints MB/s for both and the ratio.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

HERE = os.path.dirname(os.path.abspath(__file__))

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when "
         "machine learning steering vector residual stream activation layer model prompt").split()
PIECES = ["def f(x):\n    return x + 1", "for (int i = 0; i < n; i++) { s += a[i]; }",
          "人工智能正在改变世界", "我们需要理解它的行为", "Искусственный интеллект", "меняет мир",
          "الذكاء الاصطناعي", "कृत्रिम बुद्धिमत्ता", "ปัญญาประดิษฐ์", "😀👍🏽", "👨‍👩‍👧‍👦",
          "https://example.com/a?b=1", "3.14159", "1234567", "   ", "\t", "Ünïcödé", "naïve café"]


def make_text(mb, seed=1):
    rng = random.Random(seed)
    lines, size = [], 0
    while size < mb * 1e6:
        parts = []
        while sum(len(p) for p in parts) < 1000:
            if rng.random() < 0.75:
                w = rng.choice(WORDS)
                parts.append((w.capitalize() if rng.random() < 0.1 else w) +
                             rng.choice([" ", " ", " ", ", ", ". "]))
            else:
                parts.append(rng.choice(PIECES) + " ")
        line = "".join(parts)
        lines.append(line)
        size += len(line.encode("utf-8")) + 1
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="path of the bench_tokenizer executable")
    ap.add_argument("--fixtures", help="folder of <name>/tokenizer.json (default: the build's "
                    "or the repository's copies)")
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--tokenizers", default="qwen3,llama3.1,mistral")
    args = ap.parse_args()
    from tokenizers import Tokenizer

    fixtures, tmpdir = args.fixtures, None
    if fixtures is None:
        built = os.path.join(os.path.dirname(os.path.abspath(args.bench)), "..", "..", "tests",
                             "tokenizer", "fixtures")
        if all(os.path.isfile(os.path.join(built, n, "tokenizer.json"))
               for n in args.tokenizers.split(",")):
            fixtures = os.path.normpath(built)
        else:
            sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "tokenizer", "fixtures"))
            from unpack import unpack
            tmpdir = tempfile.TemporaryDirectory(prefix="melbo-tok-fixtures-")
            fixtures = unpack(tmpdir.name)
    print(f"fixtures: {fixtures}")

    text = make_text(args.mb)
    nbytes = len(text.encode("utf-8"))
    lines = text.split("\n")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
        path = f.name
    print(f"text: {nbytes / 1e6:.2f} MB, {len(lines)} lines")
    try:
        for name in args.tokenizers.split(","):
            d = os.path.join(fixtures, name)
            tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            enc = tok.encode_batch(lines, add_special_tokens=False)  # warm-up
            hf_tokens = sum(len(e.ids) for e in enc)
            reps, t0 = 0, time.perf_counter()
            while True:
                tok.encode_batch(lines, add_special_tokens=False)
                reps += 1
                t = time.perf_counter() - t0
                if t >= args.seconds:
                    break
            hf = nbytes * reps / t / 1e6
            out = subprocess.run([args.bench, d, path, str(args.seconds)], check=True,
                                 capture_output=True, text=True).stdout.split()
            melbo, melbo_tokens = float(out[2]), int(out[4])
            same = "same tokens" if melbo_tokens == hf_tokens else \
                f"TOKEN COUNT DIFFERS ({melbo_tokens} vs {hf_tokens})"
            print(f"{name:10s} melbo {melbo:7.2f} MB/s   HF tokenizers (1 thread) {hf:7.2f} MB/s"
                  f"   ratio {melbo / hf:5.2f}   {same}")
    finally:
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
