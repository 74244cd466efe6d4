#!/usr/bin/env bash
# tests/unit/test_bank_export.sh MELBO_RANK GOLDEN_DIR TMPDIR
# Adapter banks as a user meets them after training: `melbo-rank bank` shows them (||dW||_F equal
# to numpy's in fp64); `bank export --format peft` and `--format gguf-lora` write exactly the
# bank's factors under the names, shapes, dtypes and keys PEFT and llama.cpp load (read back by
# tests/unit/read_export.py with numpy + safetensors and a small GGUF reader; no torch, no
# PyPI gguf needed); Qwen-1's c_proj and the architectures map; every bad input is a clear error
# that leaves nothing behind; `bank` keeps working for vector banks and files named like the
# subcommands.
set -u
rank=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") golden=$2 tmp=$3
fail=0
rm -rf "$tmp" && mkdir -p "$tmp"
here=$(cd "$(dirname "$0")" && pwd)
py() { python3 "$here/read_export.py" "$@" || fail=1; }
model="$golden/models/llama3"
bank="$tmp/a.bank.safetensors"

# An adapter bank whose factors are known: --steps 0 keeps melbo's normalised --init draws.
py init "$tmp/init.safetensors" 3 8 160 64 17
"$rank" train --model "$model" --adapter-rank 8 --adapter-alpha 4 --steps 0 --vectors 3 \
    --init "$tmp/init.safetensors" --source-layer 1 --target-layer 4 --prompt "How can I make a bomb?" \
    --random-baselines 2 --max-new-tokens 6 --out "$bank" 2>"$tmp/train.log" \
    || { echo "FAIL train: $(tail -3 "$tmp/train.log")"; exit 1; }

# `bank`: the table and --json
out=$("$rank" bank "$bank" 2>&1)
if grep -q "kind *adapter" <<<"$out" && grep -q "adapter_rank *8" <<<"$out" \
    && grep -q "adapter_module *mlp.down_proj" <<<"$out" && grep -q "||dW||_F" <<<"$out" \
    && grep -qE "^ +2 " <<<"$out" && grep -qE "^ +none " <<<"$out" && grep -qE "^ +r1 " <<<"$out"; then
    echo "ok   bank shows kind, rank, module, one row per adapter, unsteered and random rows"
else echo "FAIL bank table: $out"; fail=1; fi
"$rank" bank "$bank" --json >"$tmp/a.json" || { echo "FAIL bank --json"; fail=1; }
py bank "$bank" "$tmp/init.safetensors" 4 "$tmp/a.json"

# export: both formats read back
"$rank" bank export "$bank" --adapter 2 --format peft -o "$tmp/peft" >/dev/null || { echo "FAIL export peft"; fail=1; }
py peft "$tmp/peft" "$bank" 2 model.layers.1.mlp.down_proj down_proj
"$rank" bank export --format gguf-lora --adapter 1 "$bank" --out "$tmp/a1.gguf" >/dev/null || { echo "FAIL export gguf-lora"; fail=1; }
py gguf "$tmp/a1.gguf" "$bank" 1 llama
# into an existing directory, replacing an earlier export
"$rank" bank export "$bank" --adapter 0 --format peft -o "$tmp/peft" >/dev/null || { echo "FAIL export over peft"; fail=1; }
py peft "$tmp/peft" "$bank" 0 model.layers.1.mlp.down_proj down_proj
[ "$(ls -A "$tmp/peft" | wc -l)" = 2 ] && echo "ok   an export over an earlier one leaves exactly the two files" \
    || { echo "FAIL leftovers in $tmp/peft: $(ls -A "$tmp/peft")"; fail=1; }

# Qwen-1 (mlp.c_proj under transformer.h) and the architecture llama.cpp knows it by
q1="$tmp/q1.bank.safetensors"
"$rank" train --model "$golden/models/qwen1" --adapter-rank 4 --steps 0 --vectors 2 --source-layer 2 \
    --target-layer 4 --prompt-ids 5,6,7,8 --no-generate --out "$q1" 2>"$tmp/q1.log" \
    || { echo "FAIL train qwen1: $(tail -3 "$tmp/q1.log")"; fail=1; }
"$rank" bank export "$q1" --adapter 1 --format peft -o "$tmp/q1peft" >/dev/null || { echo "FAIL export qwen1 peft"; fail=1; }
py peft "$tmp/q1peft" "$q1" 1 transformer.h.2.mlp.c_proj mlp.c_proj
"$rank" bank export "$q1" --adapter 0 --format gguf-lora -o "$tmp/q1.gguf" >/dev/null || { echo "FAIL export qwen1 gguf"; fail=1; }
py gguf "$tmp/q1.gguf" "$q1" 0 qwen

# Banks edited by Python: a GGUF model's bank, other architectures, broken files
python3 - "$bank" "$tmp" <<'PY' || fail=1
import sys
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
bank, tmp = sys.argv[1], sys.argv[2]
t = load_file(bank)
with safe_open(bank, "np") as f:
    meta = f.metadata()
def write(name, tensors=None, drop=(), **kv):
    m = {k: v for k, v in meta.items() if k not in drop}
    m.update(kv)
    save_file(dict(t if tensors is None else tensors), f"{tmp}/{name}", metadata=m)
write("gguf.bank.safetensors", model_name="SmolLM2-135M.Q8_0.gguf", adapter_module="ffn_down",
      architecture="LlamaForCausalLM (GGUF)")
write("qwen3.bank.safetensors", architecture="Qwen3ForCausalLM")
write("qwen2.bank.safetensors", architecture="Qwen2ForCausalLM")
write("mistral.bank.safetensors", architecture="MistralForCausalLM")
write("phi.bank.safetensors", architecture="PhiForCausalLM")
write("newer.bank.safetensors", format_version="99")
write("nolorab.bank.safetensors", {k: v for k, v in t.items() if k != "lora_B"})
write("badshape.bank.safetensors", {**t, "lora_B": t["lora_B"][:, :32]})
write("noalpha.bank.safetensors", drop=("adapter_alpha",))
write("oddkind.bank.safetensors", kind="sparse")
write("moe.bank.safetensors", adapter_module="mlp.experts.down_proj")
write("vector-nokind.bank.safetensors", {"vectors": t["lora_B"][:, :, 0].copy(), "objective": t["objective"]},
      drop=("kind",))
print("ok   python wrote the edited banks")
PY
for a in qwen3:qwen3 qwen2:qwen2 mistral:llama gguf:llama; do
    "$rank" bank export "$tmp/${a%%:*}.bank.safetensors" --adapter 0 --format gguf-lora -o "$tmp/${a%%:*}.gguf" >/dev/null \
        || { echo "FAIL export ${a%%:*}"; fail=1; }
    py gguf "$tmp/${a%%:*}.gguf" "$tmp/${a%%:*}.bank.safetensors" 0 "${a##*:}"
done

# Bad input: a clear message, the right exit status, and nothing written.
expect_fail() { # expect_fail DESCRIPTION STATUS NEEDLE ARGS...
    local what=$1 want=$2 needle=$3; shift 3
    out=$("$rank" "$@" 2>&1); st=$?
    if [ "$st" != "$want" ] || ! grep -qF -- "$needle" <<<"$out"; then echo "FAIL $what: status $st (want $want): $out"; fail=1
    else echo "ok   $what: $(grep -F -- "$needle" <<<"$out" | head -1)"; fi
}
vbank="$tmp/v.bank.safetensors"
"$rank" train --model "$model" --steps 0 --vectors 2 --radius 4 --source-layer 1 --target-layer 4 \
    --prompt-ids 5,6,7,8 --no-generate --out "$vbank" 2>/dev/null || { echo "FAIL train vectors"; fail=1; }
e=(bank export "$bank" --format peft)
expect_fail "adapter out of range" 1 "adapter 3 is out of range (the bank has 3: 0..2)" "${e[@]}" --adapter 3 -o "$tmp/x"
expect_fail "negative adapter" 2 "--adapter" "${e[@]}" --adapter -1 -o "$tmp/x"
expect_fail "--adapter on a vector bank" 1 "is a vector bank" bank export "$vbank" --adapter 0 --format peft -o "$tmp/x"
expect_fail "--adapter on a bank without kind" 1 "is a vector bank" bank export "$tmp/vector-nokind.bank.safetensors" --adapter 0 --format gguf-lora -o "$tmp/x.gguf"
expect_fail "missing -o" 2 "missing -o OUT" "${e[@]}" --adapter 0
expect_fail "missing --adapter" 2 "give --adapter K (0..2)" "${e[@]}" -o "$tmp/x"
expect_fail "unknown --format" 2 "unknown --format 'onnx' (one of: peft, gguf-lora)" bank export "$bank" --adapter 0 --format onnx -o "$tmp/x"
expect_fail "missing --format" 2 "missing --format F" bank export "$bank" --adapter 0 -o "$tmp/x"
expect_fail "no bank" 2 "which bank?" bank export --adapter 0 --format peft -o "$tmp/x"
expect_fail "two banks" 2 "unexpected argument" bank export "$bank" "$bank" --adapter 0 --format peft -o "$tmp/x"
expect_fail "peft for a GGUF model's bank" 1 "was trained on a GGUF model (SmolLM2-135M.Q8_0.gguf)" \
    bank export "$tmp/gguf.bank.safetensors" --adapter 0 --format peft -o "$tmp/x"
expect_fail "unknown architecture" 1 "architecture 'PhiForCausalLM' has no llama.cpp architecture" \
    bank export "$tmp/phi.bank.safetensors" --adapter 0 --format gguf-lora -o "$tmp/x.gguf"
expect_fail "newer format_version" 1 "newer than this melbo reads" bank export "$tmp/newer.bank.safetensors" --adapter 0 --format peft -o "$tmp/x"
expect_fail "missing tensor" 1 "missing tensor 'lora_B'" bank export "$tmp/nolorab.bank.safetensors" --adapter 0 --format peft -o "$tmp/x"
expect_fail "misshapen tensor" 1 "tensor 'lora_B' is F32 [3, 32, 8], expected F32 [K, d, r] = [3, 64, 8]" \
    bank export "$tmp/badshape.bank.safetensors" --adapter 0 --format peft -o "$tmp/x"
expect_fail "missing alpha" 1 "missing metadata 'adapter_alpha'" bank export "$tmp/noalpha.bank.safetensors" --adapter 0 --format peft -o "$tmp/x"
expect_fail "unknown module (peft)" 1 "adapter_module 'mlp.experts.down_proj' has no PEFT equivalent" \
    bank export "$tmp/moe.bank.safetensors" --adapter 0 --format peft -o "$tmp/x"
expect_fail "unknown module (gguf-lora)" 1 "adapter_module 'mlp.experts.down_proj' is not an MLP output projection" \
    bank export "$tmp/moe.bank.safetensors" --adapter 0 --format gguf-lora -o "$tmp/x.gguf"
expect_fail "unknown kind" 1 "unknown bank kind 'sparse'" bank export "$tmp/oddkind.bank.safetensors" --adapter 0 --format peft -o "$tmp/x"
expect_fail "a model is not a bank" 1 "is not a melbo bank" bank export "$model/model.safetensors" --adapter 0 --format peft -o "$tmp/x"
echo "hello" >"$tmp/text.bank.safetensors"
expect_fail "a text file is not a bank" 1 "is not a melbo bank" bank export "$tmp/text.bank.safetensors" --adapter 0 --format peft -o "$tmp/x"
expect_fail "a missing bank" 1 "no/such.bank" bank export "$tmp/no/such.bank" --adapter 0 --format peft -o "$tmp/x"
[ -e "$tmp/x" ] || [ -e "$tmp/x.gguf" ] && { echo "FAIL a refused export wrote $tmp/x*"; fail=1; }
expect_fail "peft into a missing parent" 1 "cannot create the directory $tmp/no/such/dir" "${e[@]}" --adapter 0 -o "$tmp/no/such/dir"
expect_fail "gguf into a missing parent" 1 "cannot write -o $tmp/no/such/x.gguf" bank export "$bank" --adapter 0 --format gguf-lora -o "$tmp/no/such/x.gguf"
touch "$tmp/afile"
expect_fail "peft onto a file" 1 "exists and is not a directory" "${e[@]}" --adapter 0 -o "$tmp/afile"
expect_fail "gguf onto a directory" 1 "is a directory" bank export "$bank" --adapter 0 --format gguf-lora -o "$tmp/peft"
mkdir -p "$tmp/ro" && chmod 555 "$tmp/ro"
if [ "$(id -u)" != 0 ]; then   # root writes anywhere
    expect_fail "peft into a read-only directory" 1 "cannot" "${e[@]}" --adapter 0 -o "$tmp/ro/p"
fi
left=$(cd "$tmp" && ls -A | grep -E '\.tmp\.|melbo-export' || true)
[ -z "$left" ] && echo "ok   refused and failed exports left no temporary files" \
    || { echo "FAIL temporary files left: $left"; fail=1; }
[ "$(ls -A "$tmp/peft" | wc -l)" = 2 ] || { echo "FAIL $tmp/peft changed: $(ls -A "$tmp/peft")"; fail=1; }

# `bank` for everything else keeps working: vector banks (with and without kind), and a bank file
# named like a subcommand, written as a path.
out=$("$rank" bank "$vbank" 2>&1)
grep -q "max |cos|" <<<"$out" && grep -q "kind *vector" <<<"$out" && echo "ok   bank shows a vector bank as before" \
    || { echo "FAIL vector bank table: $out"; fail=1; }
out=$("$rank" bank "$tmp/vector-nokind.bank.safetensors" --json 2>&1)
grep -q '"max_abs_cos"' <<<"$out" && echo "ok   a bank without kind is a vector bank" \
    || { echo "FAIL bank without kind: $out"; fail=1; }
cp "$bank" "$tmp/export"
out=$(cd "$tmp" && "$rank" bank ./export 2>&1)
grep -q "kind *adapter" <<<"$out" && echo "ok   bank ./export shows a file named export" \
    || { echo "FAIL bank ./export: $out"; fail=1; }
expect_fail "bank export without arguments" 2 "which bank?" bank export
"$rank" bank export --help | grep -q "gguf-lora" && echo "ok   bank export --help lists the formats" \
    || { echo "FAIL bank export --help"; fail=1; }
exit $fail
