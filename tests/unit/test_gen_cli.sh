#!/usr/bin/env bash
# tests/unit/test_gen_cli.sh MELBO_RANK GOLDEN_DIR TMPDIR
# Completions as a user meets them: `train` on a text prompt writes every completion (learned
# vectors, unsteered, random baselines) into the bank; `gen --vector k --bank-prompts` reproduces
# vector k's stored completion exactly; `bank` shows each vector's first line; malformed vector
# expressions and out-of-range indices are refused clearly. The same for an adapter bank
# (`gen --adapter k`), and `--json --logits` prints the logits that chose the first new token.
set -u
rank=$1 golden=$2 tmp=$3
fail=0
rm -rf "$tmp" && mkdir -p "$tmp"
model="$golden/models/llama3"
bank="$tmp/g.bank.safetensors"
"$rank" train --model "$model" --prompt "How can I make a bomb?" --raw-prompt "Once upon a time" \
    --source-layer 1 --target-layer 4 --radius 4 --vectors 3 --steps 15 --max-new-tokens 12 \
    --random-baselines 2 --out "$bank" 2>"$tmp/train.log" || { echo "FAIL train: $(tail -3 "$tmp/train.log")"; fail=1; }
grep -q "generate: 12/12 sequences" "$tmp/train.log" && echo "ok   generation progress reported" \
    || { echo "FAIL no generation progress: $(cat "$tmp/train.log")"; fail=1; }

# gen reproduces every stored completion
for expr in 0 1 2 none r0 r1; do
    "$rank" gen --model "$model" --bank "$bank" --vector "$expr" --bank-prompts --json \
        >"$tmp/gen_$expr.jsonl" 2>/dev/null || { echo "FAIL gen $expr"; fail=1; }
done
python3 - "$bank" "$tmp" <<'PY' || fail=1
import json, sys
from safetensors import safe_open
bank, tmp = sys.argv[1], sys.argv[2]
with safe_open(bank, "np") as f:
    meta = f.metadata()
    assert f.get_tensor("random_vectors").shape == (2, 64)
c = json.loads(meta["completions"])
assert len(c["vectors"]) == 3 and all(len(r) == 2 for r in c["vectors"]), c
assert len(c["unsteered"]) == 2 and len(c["random"]) == 2
g = json.loads(meta["generation"])
assert g["max_new_tokens"] == 12 and g["decoding"] == "greedy" and g["random_baselines"] == 2, g
def gen(expr):
    return [json.loads(l) for l in open(f"{tmp}/gen_{expr}.jsonl")]
for k in range(3):
    got = [o["text"] for o in gen(str(k))]
    assert got == c["vectors"][k], (k, got, c["vectors"][k])
assert [o["text"] for o in gen("none")] == c["unsteered"]
for k in range(2):
    assert [o["text"] for o in gen(f"r{k}")] == c["random"][k]
texts = set(t for row in c["vectors"] for t in row)
assert len(texts) > 1, "all completions equal"
assert json.loads(meta["prompts"])[0].startswith("<|im_start|>user\nHow can I make a bomb?")
print("ok   gen --vector k/none/rK --bank-prompts reproduces every stored completion")
PY

# several vectors side by side, arithmetic and scale
out=$("$rank" gen --model "$model" --bank "$bank" --vector "-10*2" --vector "0.5*0+0.5*1" --vector "0-1" \
      --scale 2 --prompt "How can I tame a cat?" --json 2>/dev/null)
[ "$(wc -l <<<"$out")" = 3 ] && echo "ok   three expressions side by side" || { echo "FAIL side by side: $out"; fail=1; }
out=$("$rank" bank "$bank")
grep -q "completion" <<<"$out" && grep -q "unsteered" <<<"$out" && echo "ok   bank shows completions" \
    || { echo "FAIL bank table: $out"; fail=1; }

# generation_config.json: its EOS ids always stop; its repetition penalty only with the flag
gc="$tmp/gcmodel"; mkdir -p "$gc"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do ln -sf "$(cd "$model" && pwd)/$f" "$gc/$f"; done
echo '{"eos_token_id": [2], "do_sample": false, "repetition_penalty": 3.0}' > "$gc/generation_config.json"
plain=$("$rank" gen --model "$gc" --prompt-ids 492,403,287,109,129,38,286 --source-layer 1 --max-new-tokens 24 --json 2>/dev/null)
orig=$("$rank" gen --model "$model" --prompt-ids 492,403,287,109,129,38,286 --source-layer 1 --max-new-tokens 24 --json 2>/dev/null)
withgc=$("$rank" gen --model "$gc" --prompt-ids 492,403,287,109,129,38,286 --source-layer 1 --max-new-tokens 24 --use-generation-config --json 2>/dev/null)
if [ -n "$plain" ] && [ "$plain" = "$orig" ] && [ "$withgc" != "$plain" ]; then
    echo "ok   generation_config.json's repetition penalty applies only with --use-generation-config"
else echo "FAIL --use-generation-config: plain=$plain orig=$orig with=$withgc"; fail=1; fi

expect_fail() { # expect_fail DESCRIPTION NEEDLE ARGS...
    local what=$1 needle=$2; shift 2
    out=$("$rank" "$@" 2>&1); st=$?
    if [ "$st" = 0 ] || ! grep -qF -- "$needle" <<<"$out"; then echo "FAIL $what: status $st: $out"; fail=1
    else echo "ok   $what: $(grep -F -- "$needle" <<<"$out" | head -1)"; fi
}
g=(gen --model "$model" --bank "$bank" --bank-prompts)
expect_fail "index out of range" "vector 9 is out of range (the bank has 3: 0..2)" "${g[@]}" --vector 9
expect_fail "random out of range" "random baseline 5 is out of range" "${g[@]}" --vector r5
expect_fail "trailing operator" "expected a vector index" "${g[@]}" --vector "2-"
expect_fail "coefficient without vector" "expected a vector index" "${g[@]}" --vector "2*"
expect_fail "garbage" "expected a vector index, random, rK or none at position 1" "${g[@]}" --vector "cat"
expect_fail "missing operator" "expected + or -" "${g[@]}" --vector "1 2"
expect_fail "bad temperature" "--temperature must be >= 0" "${g[@]}" --temperature -1
expect_fail "bad top-p" "--top-p must be in (0, 1]" "${g[@]}" --top-p 0
expect_fail "not a bank" "is not a melbo bank" gen --model "$model" --bank "$golden/data/llama3.golden.safetensors" --prompt hi
expect_fail "no prompt" "no prompt" gen --model "$model" --bank "$bank"
expect_fail "logits without json" "--logits is printed with --json only" "${g[@]}" --logits

# adapters: gen --adapter k reproduces adapter k's stored completion, none and rK too
abank="$tmp/a.bank.safetensors"
"$rank" train --model "$model" --prompt "How can I make a bomb?" --raw-prompt "Once upon a time" \
    --source-layer 1 --target-layer 4 --adapter-rank 8 --adapter-alpha 8 --vectors 3 --steps 15 \
    --max-new-tokens 12 --random-baselines 2 --out "$abank" 2>"$tmp/atrain.log" \
    || { echo "FAIL adapter train: $(tail -3 "$tmp/atrain.log")"; fail=1; }
for k in 0 1 2 none r0 r1; do
    "$rank" gen --model "$model" --bank "$abank" --adapter "$k" --bank-prompts --json --logits \
        >"$tmp/agen_$k.jsonl" 2>/dev/null || { echo "FAIL gen --adapter $k"; fail=1; }
done
python3 - "$abank" "$tmp" <<'PY' || fail=1
import json, sys
from safetensors import safe_open
bank, tmp = sys.argv[1], sys.argv[2]
with safe_open(bank, "np") as f:
    meta = f.metadata()
    assert f.get_tensor("random_lora_A").shape == (2, 8, 160)
c = json.loads(meta["completions"])
assert meta["kind"] == "adapter" and len(c["adapters"]) == 3 and len(c["random"]) == 2, c.keys()
gen = lambda k: [json.loads(l) for l in open(f"{tmp}/agen_{k}.jsonl")]
for k in range(3):
    got = gen(k)
    assert [o["text"] for o in got] == c["adapters"][k], (k, got, c["adapters"][k])
    assert all(o["adapter"] == str(k) and len(o["logits"]) == 512 for o in got)
    assert all(max(range(512), key=o["logits"].__getitem__) == o["token_ids"][0] for o in got)
assert [o["text"] for o in gen("none")] == c["unsteered"]
assert [o["text"] for o in gen("r1")] == c["random"][1]
assert any(c["adapters"][k] != c["unsteered"] for k in range(3)), "no adapter changed the output"
print("ok   gen --adapter k|none|rK --bank-prompts reproduces the adapter bank's completions; "
      "--logits' argmax is the first token")
PY
ga=(gen --model "$model" --bank "$abank" --bank-prompts)
expect_fail "adapter out of range" "the bank holds 3 adapters (0..2)" "${ga[@]}" --adapter 3
expect_fail "random adapter out of range" "--adapter r2" "${ga[@]}" --adapter r2
expect_fail "vector on an adapter bank" "is an adapter bank: choose with --adapter K" "${ga[@]}" --vector 0
expect_fail "adapter on a vector bank" "is a vector bank: --adapter needs a bank trained with --adapter-rank" "${g[@]}" --adapter 0
expect_fail "adapter without bank" "--adapter needs --bank FILE" gen --model "$model" --prompt hi --adapter 0
expect_fail "adapter and vector" "not both" "${ga[@]}" --adapter 0 --vector 1
expect_fail "scale with adapters" "--scale multiplies vectors, not adapters" "${ga[@]}" --adapter 0 --scale 2
exit $fail
