#!/usr/bin/env bash
# tests/unit/test_adapter_train.sh MELBO_RANK GOLDEN_DIR TMPDIR
# Unsupervised steering adapters (issue 17), one process: bad input refused before any training
# with a message naming the problem; then `melbo-rank train --adapter-rank` against the PyTorch
# notebook loop of tests/golden/make_adapter_goldens.py (tests/golden/README.md, "Adapter
# goldens"): every case at --wave 1, the 16-adapter case also at --wave 4 and --wave 16, the qwen1
# case (mlp.c_proj) also on models/qwen2 (mlp.down_proj, same numbers). lora_A and lora_B within
# rel 1e-4 (Frobenius, per adapter), the objective curves within rel 1e-5 (per curve); and one run
# with completions and random baseline adapters. tests/mpi/test_adapter_layouts.sh does tp 2 x dp 2.
set -u
rank=$1 golden=$2 tmp=$3
helper="$(dirname "$0")/adapter_golden.py"
fail=0
rm -rf "$tmp" && mkdir -p "$tmp"
python3 -c "import safetensors, numpy" 2>/dev/null ||
    { echo "FAIL python3 safetensors/numpy missing (tests/run installs them)"; exit 1; }

help=$("$rank" train --help 2>&1)
grep -qF -- "--adapter-rank" <<<"$help" ||
    { echo "FAIL melbo-rank train --help does not list --adapter-rank"; exit 1; }

model="$golden/models/llama3"
ids="492,403,287,109,129,38,286"
base=(train --model "$model" --prompt-ids "$ids" --source-layer 1 --target-layer 4 --steps 2 --vectors 2
      --wave 1 --no-generate)
ad=("${base[@]}" --adapter-rank 4)
o="$tmp/o.bank.safetensors"

expect_fail() { # expect_fail DESCRIPTION 'REGEX[|REGEX...]' [REGEX2] -- ARGS...: every REGEX matches (grep -iE)
    local what=$1; shift
    local needles=()
    while [ "$1" != "--" ]; do needles+=("$1"); shift; done
    shift
    local t0=$SECONDS
    out=$("$rank" "$@" 2>&1); st=$?
    local miss=""
    for n in "${needles[@]}"; do grep -qiE -- "$n" <<<"$out" || miss="$miss '$n'"; done
    if [ "$st" = 0 ] || [ -n "$miss" ]; then
        echo "FAIL $what: status $st, no$miss in: $(head -c 600 <<<"$out")"; fail=1
    elif grep -qE "(vector|adapter)-steps|wave [0-9]+/[0-9]+ step" <<<"$out"; then
        echo "FAIL $what: trained before failing: $(head -c 600 <<<"$out")"; fail=1
    else echo "ok   $what ($((SECONDS - t0)) s): $(grep -iE -- "${needles[0]}" <<<"$out" | head -1)"; fi
}

# --- bad input: a clear error before any work
expect_fail "--adapter-rank 0" "adapter-rank" -- "${base[@]}" --adapter-rank 0 --out "$o"
expect_fail "--adapter-rank 65 > min(d, d_mlp) = 64" "adapter-rank" "64" -- "${base[@]}" --adapter-rank 65 --out "$o"
expect_fail "--adapter-alpha 0" "adapter-alpha" -- "${ad[@]}" --adapter-alpha 0 --out "$o"
expect_fail "--adapter-alpha -1" "adapter-alpha" -- "${ad[@]}" --adapter-alpha -1 --out "$o"
expect_fail "--adapter-alpha inf" "adapter-alpha" -- "${ad[@]}" --adapter-alpha inf --out "$o"
expect_fail "--adapter-alpha nan" "adapter-alpha" -- "${ad[@]}" --adapter-alpha nan --out "$o"
expect_fail "--adapter-rank with --radius" "radius" "adapter" -- "${ad[@]}" --radius 4 --out "$o"
expect_fail "--adapter-rank with --orthogonal" "orthogonal" "adapter" -- "${ad[@]}" --orthogonal --out "$o"
init8="$golden/data/adapter_llama3.init.safetensors" # 4 adapters, r = 8
expect_fail "--init of rank 8 for --adapter-rank 4" "lora_A" -- "${base[@]}" --adapter-rank 4 --vectors 4 \
    --init "$init8" --out "$o"
expect_fail "--init of 4 adapters for --vectors 3" "lora_A|lora_B" -- "${base[@]}" --adapter-rank 8 --vectors 3 \
    --init "$init8" --out "$o"
python3 "$helper" badinit "$init8" "$tmp/badB.init.safetensors" B
expect_fail "--init with lora_B [4, 65, 8]" "lora_B" -- "${base[@]}" --adapter-rank 8 --vectors 4 \
    --init "$tmp/badB.init.safetensors" --out "$o"
python3 "$helper" badinit "$init8" "$tmp/badA.init.safetensors" A
expect_fail "--init with lora_A [4, 9, 160]" "lora_A" -- "${base[@]}" --adapter-rank 8 --vectors 4 \
    --init "$tmp/badA.init.safetensors" --out "$o"
expect_fail "--init holding vectors (adapters)" "lora_A" -- "${base[@]}" --adapter-rank 4 --vectors 4 \
    --init "$golden/data/train_p2q1.init.safetensors" --out "$o"
expect_fail "--init holding lora_A/lora_B (vectors)" "vectors" -- "${base[@]}" --radius 4 --vectors 4 \
    --init "$init8" --out "$o"

# no orthogonality between adapters: --vectors may exceed d
if "$rank" train --model "$model" --prompt-ids "$ids" --source-layer 1 --target-layer 4 --adapter-rank 1 \
        --vectors 65 --wave 65 --steps 1 --no-generate --out "$tmp/k65.bank.safetensors" 2>"$tmp/k65.log"; then
    echo "ok   --vectors 65 > d_model 64 adapters train"
else echo "FAIL --vectors 65 adapters refused: $(tail -2 "$tmp/k65.log")"; fail=1; fi

# --resume across kinds: a checkpoint of each kind (a finished run leaves its last wave's)
"$rank" "${base[@]}" --radius 4 --checkpoint "$tmp/vec.ckpt" --out "$tmp/vec.bank.safetensors" 2>"$tmp/vec.log" ||
    { echo "FAIL vector run for the checkpoint: $(tail -2 "$tmp/vec.log")"; fail=1; }
"$rank" "${ad[@]}" --checkpoint "$tmp/ad.ckpt" --out "$tmp/ad.bank.safetensors" 2>"$tmp/ad.log" ||
    { echo "FAIL adapter run for the checkpoint: $(tail -2 "$tmp/ad.log")"; fail=1; }
if [ -e "$tmp/vec.ckpt" ] && [ -e "$tmp/ad.ckpt" ]; then
    expect_fail "--resume of a vector checkpoint as adapters" "resume" "adapter|kind" -- "${ad[@]}" \
        --resume "$tmp/vec.ckpt" --out "$o"
    expect_fail "--resume of an adapter checkpoint as vectors" "resume" "adapter|kind" -- "${base[@]}" \
        --radius 4 --resume "$tmp/ad.ckpt" --out "$o"
    expect_fail "--resume of a rank-4 checkpoint at rank 8" "resume" "adapter|rank" -- "${base[@]}" \
        --adapter-rank 8 --resume "$tmp/ad.ckpt" --out "$o"
else
    echo "FAIL a finished run with --checkpoint left no checkpoint ($(ls "$tmp"))"; fail=1
fi

# --- parity with the PyTorch notebook loop
run_case() { # run_case CASE WAVE [MODEL]
    local case=$1 wave=$2 m=${3:-}
    local label="$case${m:+ on models/$m} --wave $wave"
    local out="$tmp/${case}${m:+_$m}.w$wave.bank.safetensors" args
    mapfile -t args < <(python3 "$helper" args "$golden" "$case" $m)
    local t0=$SECONDS
    if ! "$rank" train "${args[@]}" --wave "$wave" --no-generate --out "$out" 2>"$out.log"; then
        echo "FAIL $label: melbo-rank train failed: $(tail -3 "$out.log")"; fail=1; return
    fi
    local module=()
    [ "$m" = qwen2 ] && module=(mlp.down_proj)
    python3 "$helper" compare "$out" "$golden/data/adapter_$case.golden.safetensors" \
        "$label ($((SECONDS - t0)) s)" "${module[@]}" || fail=1
}
run_case llama3 1
run_case qwen1 1
run_case qwen1 1 qwen2
run_case qwen3_2prompts 1
run_case r64 1
for w in 1 4 16; do run_case wave16 $w; done

# --- completions for every adapter, the unsteered model and the random baseline adapters
mapfile -t args < <(python3 "$helper" args "$golden" llama3)
g="$tmp/gen.bank.safetensors"
if "$rank" train "${args[@]}" --steps 3 --wave 2 --max-new-tokens 4 --random-baselines 2 --out "$g" \
        2>"$g.log"; then
    python3 "$helper" completions "$g" 4 2 1 || fail=1
else echo "FAIL run with completions: $(tail -3 "$g.log")"; fail=1; fi
exit $fail
