#!/usr/bin/env bash
# tests/unit/test_inspect_cli.sh MELBO_RANK GOLDEN_DIR TMPDIR
# `melbo-rank inspect` as a user runs it: text and --json output on real checkpoints, and clear
# errors with exit status 1 (2 for usage) on bad input.
set -u
rank=$1 golden=$2 tmp=$3
fail=0
rm -rf "$tmp" && mkdir -p "$tmp"
check() { # check DESCRIPTION COMMAND... ; expects success
    if ! out=$("${@:2}" 2>&1); then echo "FAIL $1: $out"; fail=1; else echo "ok   $1"; fi
}
expect_fail() { # expect_fail DESCRIPTION STATUS NEEDLE COMMAND...
    out=$("${@:4}" 2>&1); st=$?
    if [ "$st" != "$2" ] || ! grep -qF -- "$3" <<<"$out"; then
        echo "FAIL $1: status $st, output: $out"; fail=1
    else echo "ok   $1: $out"; fi
}

out=$("$rank" inspect --model "$golden/models/llama3") || { echo "FAIL inspect llama3"; fail=1; }
grep -q '^parameters      281280$' <<<"$out" || { echo "FAIL parameters line: $out"; fail=1; }
grep -q 'llama3 (factor 8' <<<"$out" || { echo "FAIL rope line"; fail=1; }
grep -q '4 query, 2 key/value (GQA), head_dim 16' <<<"$out" || { echo "FAIL heads line"; fail=1; }
echo "$out"
out=$("$rank" inspect --model "$golden/models/qwen3_sharded" --json) || fail=1
python3 - "$out" <<'PY' || fail=1
import json, sys
j = json.loads(sys.argv[1])
assert j["model_type"] == "qwen3" and j["n_layers"] == 5 and j["head_dim"] == 32, j
assert j["safetensors_files"] == 2 and j["qk_norm"] is True and j["tied_embeddings"] is False, j
assert isinstance(j["parameters"], int) and j["parameters"] > 0, j
print("ok   --json parses:", j["architecture"], j["parameters"], "parameters")
PY
# The same weights give the same fingerprint whether sharded or not only if the config matches:
fp1=$("$rank" inspect --model "$golden/models/qwen2" --json | python3 -c 'import json,sys;print(json.load(sys.stdin)["fingerprint"])')
fp2=$("$rank" inspect --model "$golden/models/qwen2" --json | python3 -c 'import json,sys;print(json.load(sys.stdin)["fingerprint"])')
[ -n "$fp1" ] && [ "$fp1" = "$fp2" ] && echo "ok   fingerprint stable" || { echo "FAIL fingerprint"; fail=1; }
for m in llama2 mistral qwen2 qwen1 llama3_bf16; do
    check "inspect $m" "$rank" inspect --model "$golden/models/$m"
done
grep -q '^dtype           BF16' <<<"$("$rank" inspect --model "$golden/models/llama3_bf16")" \
    && echo "ok   bf16 dtype shown" || { echo "FAIL bf16 dtype"; fail=1; }

expect_fail "no config.json" 1 "has no config.json" "$rank" inspect --model "$tmp"
expect_fail "missing dir" 1 "does not exist" "$rank" inspect --model "$tmp/nope"
mkdir -p "$tmp/gemma" && echo '{"model_type": "gpt_neox", "hidden_size": 8}' > "$tmp/gemma/config.json"
expect_fail "unsupported model_type" 1 'unsupported model_type "gpt_neox"' "$rank" inspect --model "$tmp/gemma"
mkdir -p "$tmp/trunc" && cp "$golden/models/llama3/config.json" "$tmp/trunc/"
head -c 100000 "$golden/models/llama3/model.safetensors" > "$tmp/trunc/model.safetensors"
expect_fail "truncated weights" 1 "past the end of the data" "$rank" inspect --model "$tmp/trunc"
expect_fail "usage" 2 "usage: melbo-rank inspect" "$rank" inspect
expect_fail "unknown command" 2 "unknown command 'frobnicate'" "$rank" frobnicate
exit $fail
