#!/usr/bin/env bash
# tests/unit/test_bank_export.sh MELBO_RANK GOLDEN_DIR TMPDIR
# Adapter banks as a user meets them after training: `melbo-rank bank` shows them (||dW||_F equal
# to numpy's in fp64); `bank export --format peft` and `--format gguf-lora` write exactly the
# bank's factors under the names, shapes, dtypes and keys PEFT and llama.cpp load (read back by
# tests/unit/read_export.py with numpy + safetensors and a small GGUF reader; no torch needed);
# Qwen-1's c_proj and the architectures map; every bad input is a clear error that leaves nothing
# behind; `bank` keeps working for vector banks and files named like the subcommands.
# Vector banks: `bank export --vector EXPR --format gguf-control-vector` writes llama.cpp's
# control vector (only direction.S, F32 [d], bitwise the expression's value as numpy sums it,
# controlvector.* and melbo.* keys), read back with the small reader and with PyPI gguf, which
# this test installs when it is missing and PyPI answers (MELBO_NEED_PYPI_GGUF=1: required).
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
expect_fail "unknown --format" 2 "unknown --format 'onnx' (one of: peft, gguf-lora, gguf-control-vector)" bank export "$bank" --adapter 0 --format onnx -o "$tmp/x"
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

# Control vectors (--format gguf-control-vector) from a vector bank with random baselines, trained
# at source layer 2 so that direction.2 is the bank's S and not a constant.
if ! python3 -c "import gguf" 2>/dev/null; then
    pipq=(python3 -m pip install -q --disable-pip-version-check --retries 1 --timeout 20)
    "${pipq[@]}" gguf >/dev/null 2>&1 || "${pipq[@]}" --break-system-packages gguf >/dev/null 2>&1 \
        || echo "note PyPI gguf could not be installed (offline?): control vectors are read by the small reader only"
fi
cbank="$tmp/c.bank.safetensors"
"$rank" train --model "$model" --steps 2 --vectors 3 --radius 4 --source-layer 2 --target-layer 4 \
    --prompt "How can I make a bomb?" --random-baselines 2 --max-new-tokens 4 --out "$cbank" \
    2>"$tmp/c.log" || { echo "FAIL train a vector bank: $(tail -3 "$tmp/c.log")"; fail=1; }
cv() { # cv BANK EXPR TERMS ARCH: export EXPR and check it equals TERMS (read_export.py cvec)
    rm -f "$tmp/cv.gguf"
    "$rank" bank export "$1" --vector "$2" --format gguf-control-vector -o "$tmp/cv.gguf" >/dev/null \
        || { echo "FAIL export --vector '$2' of $1"; fail=1; return; }
    py cvec "$tmp/cv.gguf" "$1" "$2" "$3" "$4"
}
cv "$cbank" 2 "1 v2" llama
cv "$cbank" "-2.5*1+0.5*r1" "-2.5 v1 0.5 r1" llama
cv "$cbank" " 0.5*0 - 1 + random" "0.5 v0 -1 v1 1 r0" llama
cv "$cbank" none "" llama
python3 - "$cbank" "$tmp" <<'PY' || fail=1
import sys
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
bank, tmp = sys.argv[1], sys.argv[2]
t = load_file(bank)
with safe_open(bank, "np") as f:
    meta = f.metadata()
for name, kv in {"cgguf": dict(model_name="SmolLM2-135M.Q8_0.gguf", architecture="LlamaForCausalLM (GGUF)"),
                 "cqwen2": dict(architecture="Qwen2ForCausalLM"), "cqwen3": dict(architecture="Qwen3ForCausalLM"),
                 "cmistral": dict(architecture="MistralForCausalLM"), "cphi": dict(architecture="PhiForCausalLM"),
                 "cs0": dict(source_layer="0"), "cnewer": dict(format_version="99")}.items():
    save_file(t, f"{tmp}/{name}.bank.safetensors", metadata={**meta, **kv})
print("ok   python wrote the edited vector banks")
PY
for a in cgguf:llama cqwen2:qwen2 cqwen3:qwen3 cmistral:llama; do
    cv "$tmp/${a%%:*}.bank.safetensors" 1 "1 v1" "${a##*:}"
done
c=(bank export "$cbank" --format gguf-control-vector -o "$tmp/y.gguf")
expect_fail "a missing vector" 1 "--vector '3': vector 3 is out of range (the bank has 3: 0..2)" "${c[@]}" --vector 3
expect_fail "a missing random baseline" 1 "random baseline 5 is out of range (the bank has 2)" "${c[@]}" --vector "1+r5"
expect_fail "a bad expression" 1 "expected a vector index, random, rK or none at position 3" "${c[@]}" --vector "2+"
expect_fail "a vector that is not finite" 1 "the vector is not finite" "${c[@]}" --vector "inf*0"
expect_fail "no --vector" 2 "exports one vector: give --vector EXPR (a row 0..2" "${c[@]}"
expect_fail "--adapter to a control vector" 2 "there is no export of an adapter bank to a control vector" "${c[@]}" --adapter 0
expect_fail "--vector and --adapter" 2 "give --vector EXPR or --adapter K, not both" "${c[@]}" --vector 0 --adapter 0
expect_fail "--vector to peft" 2 "--format peft writes one adapter (--adapter K), not a vector" \
    bank export "$cbank" --vector 0 --format peft -o "$tmp/y"
expect_fail "an adapter bank to a control vector" 1 "is an adapter bank: there is no export of an adapter bank to a control vector" \
    bank export "$bank" --vector 0 --format gguf-control-vector -o "$tmp/y.gguf"
expect_fail "an adapter bank, no selection" 1 "there is no export of an adapter bank to a control vector" \
    bank export "$bank" --format gguf-control-vector -o "$tmp/y.gguf"
expect_fail "source layer 0" 1 "trained at source layer 0 (added to the output of block 0), which a llama.cpp control vector cannot steer" \
    bank export "$tmp/cs0.bank.safetensors" --vector 0 --format gguf-control-vector -o "$tmp/y.gguf"
expect_fail "a newer vector bank" 1 "newer than this melbo reads" \
    bank export "$tmp/cnewer.bank.safetensors" --vector 0 --format gguf-control-vector -o "$tmp/y.gguf"
expect_fail "no model_hint for the architecture" 1 "architecture 'PhiForCausalLM' has no llama.cpp architecture" \
    bank export "$tmp/cphi.bank.safetensors" --vector 0 --format gguf-control-vector -o "$tmp/y.gguf"
expect_fail "a control vector onto a directory" 1 "is a directory (--format gguf-control-vector writes one file)" \
    bank export "$cbank" --vector 0 --format gguf-control-vector -o "$tmp/peft"
expect_fail "a control vector into a missing parent" 1 "cannot write -o $tmp/no/such/y.gguf" \
    bank export "$cbank" --vector 0 --format gguf-control-vector -o "$tmp/no/such/y.gguf"
[ -e "$tmp/y.gguf" ] || [ -e "$tmp/y" ] && { echo "FAIL a refused control-vector export wrote $tmp/y*"; fail=1; }
left=$(cd "$tmp" && ls -A | grep -E '\.tmp\.|melbo-export' || true)
[ -z "$left" ] && echo "ok   refused control-vector exports left no files" \
    || { echo "FAIL temporary files left: $left"; fail=1; }

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
"$rank" bank export --help | grep -q "gguf-control-vector -o FILE.gguf  from vector banks (--vector EXPR)" \
    && "$rank" bank export --help | grep -q "gguf-lora" && echo "ok   bank export --help lists the formats" \
    || { echo "FAIL bank export --help"; fail=1; }
exit $fail
