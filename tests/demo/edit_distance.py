"""tests/demo/edit_distance.py MELBO_RANK MODEL BANK [BANK ...]

The method's own claim, checked on a real model: learned vectors change the completion more than
random vectors of the same norm. For every bank, the mean token edit distance (Levenshtein over
token ids, the texts tokenized with melbo-rank's tokenizer for MODEL) between the unsteered
completion and (a) each learned vector's, (b) each random baseline's. Prints both means; exits
non-zero unless learned > random for every bank.
"""
import json
import subprocess
import sys

from safetensors import safe_open


def tokens(rank, model, text):
    out = subprocess.run([rank, "tokenize", "--model", model, "--raw-prompt", text, "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["ids"]


def levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def main():
    rank, model, banks = sys.argv[1], sys.argv[2], sys.argv[3:]
    ok = True
    for path in banks:
        meta = safe_open(path, "np").metadata()
        comp = json.loads(meta["completions"])
        n_prompts = len(comp["unsteered"])
        learned, random = [], []
        for p in range(n_prompts):
            base = tokens(rank, model, comp["unsteered"][p]) if comp["unsteered"][p] else []
            for row in comp["vectors"]:
                learned.append(levenshtein(base, tokens(rank, model, row[p]) if row[p] else []))
            for row in comp["random"]:
                random.append(levenshtein(base, tokens(rank, model, row[p]) if row[p] else []))
        ml, mr = sum(learned) / len(learned), sum(random) / len(random)
        good = ml > mr
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {path}: seed {meta['seed']}, R {float(meta['radius']):.4g}: "
              f"mean token edit distance from the unsteered completion: learned {ml:.1f} "
              f"({len(learned)} completions), random {mr:.1f} ({len(random)})")
    sys.exit(0 if ok else 1)


main()
