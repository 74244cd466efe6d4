#!/usr/bin/env bash
# tests/families/test_inspect_config.sh MELBO_RANK GOLDEN_DIR
# `melbo-rank inspect --config FILE` on the config.json files of published checkpoints
# (tests/golden/data/published_configs): every one is read and runnable, and its parameter count
# equals the one transformers counts for the same config (expected.json); and `inspect --model`
# accepts the tiny family checkpoints.
set -u
rank=$1 golden=$2
dir=$golden/data/published_configs
fail=0
for f in "$dir"/*-*.json; do
    name=$(basename "$f")
    out=$("$rank" inspect --config "$f" --json 2>&1); st=$?
    python3 - "$name" "$dir/expected.json" "$st" "$out" <<'PY' || fail=1
import json, sys
name, exp_path, st, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
want = json.load(open(exp_path))["parameters"][name]
j = json.loads(out)
ok = j["parameters"] == want and j["runnable"] and st == 0
print(f"{'ok  ' if ok else 'FAIL'} {name}: {j['model_type']}, {j['parameters']} parameters "
      f"(transformers: {want}), runnable {j['runnable']}")
sys.exit(0 if ok else 1)
PY
done
for m in gemma2 gemma3 gemma3_mm olmo2 phi3 mixtral qwen3_moe qwen2_moe; do
    if out=$("$rank" inspect --model "$golden/family_models/$m" 2>&1); then
        echo "ok   inspect --model $m: $(grep '^architecture' <<<"$out")"
    else
        echo "FAIL inspect --model $m: $out"; fail=1
    fi
done
out=$("$rank" inspect --model "$golden/family_models/nope" --config "$dir/phi-4.json" 2>&1) && {
    echo "FAIL --model and --config together accepted"; fail=1; }
exit $fail
