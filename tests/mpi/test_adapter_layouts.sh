#!/usr/bin/env bash
# tests/mpi/test_adapter_layouts.sh MELBO_RANK GOLDEN_DIR TMPDIR MPIEXEC
# Unsupervised steering adapters (issue 17) under mpirun: tp 2 x dp 2 (A split with the MLP's
# inner dimension, B replicated) against the PyTorch notebook loop's goldens
# (tests/golden/make_adapter_goldens.py): the 16-adapter case in waves of 4 and 16, the qwen1 case
# (Qwen-1 layout, mlp.c_proj) in waves of 2, and the wave16 case at tp 4 x dp 1 (llama3's 2 KV
# heads replicated). lora_A and lora_B within rel 1e-4 (Frobenius, per adapter), objective curves
# within rel 1e-5 (per curve), as tests/unit/test_adapter_train.sh holds the single process.
set -u
rank=$1 golden=$2 tmp=$3 mpiexec=$4
mpirun=("$mpiexec" --allow-run-as-root --oversubscribe --bind-to none)
helper="$(dirname "$0")/../unit/adapter_golden.py"
fail=0
rm -rf "$tmp" && mkdir -p "$tmp"
export OMP_NUM_THREADS=1
"$rank" train --help 2>&1 | grep -qF -- "--adapter-rank" ||
    { echo "FAIL melbo-rank train --help does not list --adapter-rank"; exit 1; }

run_case() { # run_case CASE WAVE TP DP
    local case=$1 wave=$2 tp=$3 dp=$4 args
    local label="$case --wave $wave tp $tp x dp $dp"
    local out="$tmp/$case.w$wave.tp$tp.dp$dp.bank.safetensors"
    mapfile -t args < <(python3 "$helper" args "$golden" "$case")
    local t0=$SECONDS
    if ! "${mpirun[@]}" -np $((tp * dp)) "$rank" train "${args[@]}" --wave "$wave" --tp "$tp" --dp "$dp" \
         --no-generate --out "$out" >"$out.log" 2>&1; then
        echo "FAIL $label: $(tail -3 "$out.log")"; fail=1; return
    fi
    python3 "$helper" compare "$out" "$golden/data/adapter_$case.golden.safetensors" \
        "$label ($((SECONDS - t0)) s)" || fail=1
}
run_case wave16 4 2 2
run_case wave16 16 2 2
run_case qwen1 2 2 2
run_case wave16 16 4 1
exit $fail
