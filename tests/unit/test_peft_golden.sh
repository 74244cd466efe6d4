#!/usr/bin/env bash
# tests/unit/test_peft_golden.sh MELBO_RANK GOLDEN_DIR TMPDIR
# melbo's adapters generate what transformers + PEFT generate (tests/golden/make_peft_goldens.py):
# for llama3 and qwen3, `train --steps 0 --init data/peft_<model>.init.safetensors` holds the
# normalised draws PEFT was given (within 1e-6), and `gen --adapter 0 --adapter 1 --adapter none`
# on the golden's two prompts gives its 32 greedy tokens for all 6 runs, token for token.
set -u
rank=$1 golden=$2 tmp=$3
fail=0
rm -rf "$tmp" && mkdir -p "$tmp"
for model in llama3 qwen3; do
    g="$golden/data/peft_$model.golden.safetensors"
    read -r p0 p1 alpha <<<"$(python3 - "$g" <<'PY'
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], "np") as f:
    print(",".join(map(str, f.get_tensor("prompt.0"))), ",".join(map(str, f.get_tensor("prompt.1"))),
          f.metadata()["adapter_alpha"])
PY
)"
    bank="$tmp/$model.bank.safetensors"
    "$rank" train --model "$golden/models/$model" --adapter-rank 8 --adapter-alpha "$alpha" --steps 0 \
        --vectors 2 --init "$golden/data/peft_$model.init.safetensors" --source-layer 1 --target-layer 4 \
        --prompt-ids "$p1" --no-generate --out "$bank" 2>"$tmp/$model.train.log" \
        || { echo "FAIL $model train: $(tail -3 "$tmp/$model.train.log")"; fail=1; continue; }
    "$rank" gen --model "$golden/models/$model" --bank "$bank" --adapter 0 --adapter 1 --adapter none \
        --prompt-ids "$p0" --prompt-ids "$p1" --max-new-tokens 32 --json >"$tmp/$model.gen.jsonl" \
        2>"$tmp/$model.gen.log" || { echo "FAIL $model gen: $(tail -3 "$tmp/$model.gen.log")"; fail=1; continue; }
    python3 - "$g" "$bank" "$tmp/$model.gen.jsonl" "$model" <<'PY' || fail=1
import json, sys
import numpy as np
from safetensors.numpy import load_file
golden, bank, runs, model = load_file(sys.argv[1]), load_file(sys.argv[2]), sys.argv[3], sys.argv[4]
bad = 0
for f in ("lora_A", "lora_B"):
    diff = float(np.abs(bank[f] - golden[f]).max())
    if diff > 1e-6:
        print(f"FAIL {model}: melbo's {f} differs from the normalised init by {diff:.3g}"); bad = 1
got = {}
for line in open(runs):
    j = json.loads(line)
    a = j["adapter"]
    got[f"{'unsteered' if a == 'none' else 'adapter' + a}.{j['prompt']}"] = j["token_ids"]
keys = sorted(k for k in golden if k.startswith(("adapter", "unsteered")))
for k in keys:
    want = golden[k].tolist()
    if got.get(k) != want:
        g = got.get(k) or []
        first = next((i for i in range(min(len(g), len(want))) if g[i] != want[i]), min(len(g), len(want)))
        print(f"FAIL {model} {k}: melbo {g} != PEFT {want} (first difference at token {first})"); bad = 1
if not bad:
    print(f"ok   {model}: melbo's adapters = the normalised init; gen --adapter 0/1/none gives PEFT's "
          f"{len(want)} greedy tokens in all {len(keys)} runs")
sys.exit(bad)
PY
done
exit $fail
