#!/usr/bin/env bash
# tests/unit/test_train_cli.sh MELBO_RANK GOLDEN_DIR TMPDIR
# `melbo-rank train` as a user runs it: bad input refused before training with a clear message,
# the same command twice gives the same bank, a run killed with SIGKILL in the middle of wave 2
# of 4 and resumed gives the same bank as an uninterrupted one, and Python reads the bank.
set -u
rank=$1 golden=$2 tmp=$3
fail=0
rm -rf "$tmp" && mkdir -p "$tmp"
model="$golden/models/llama3"
ids="492,403,287,109,129,38,286"
base=(train --model "$model" --prompt-ids "$ids" --source-layer 1 --target-layer 4 --radius 4)

expect_fail() { # expect_fail DESCRIPTION NEEDLE ARGS...
    local what=$1 needle=$2; shift 2
    out=$("$rank" "$@" 2>&1); st=$?
    if [ "$st" = 0 ] || ! grep -qF -- "$needle" <<<"$out"; then
        echo "FAIL $what: status $st, output: $out"; fail=1
    elif grep -q "vector-steps" <<<"$out"; then
        echo "FAIL $what: trained before failing: $out"; fail=1
    else echo "ok   $what: $(grep -F -- "$needle" <<<"$out" | head -1)"; fi
}
o="$tmp/o.bank.safetensors"
help_lists() { # help_lists CMD NEEDLE...: `CMD --help` exits 0 and names every NEEDLE
    local cmd=$1; shift
    out=$("$rank" $cmd --help 2>&1); st=$?
    for n in "$@"; do grep -qF -- "$n" <<<"$out" || { echo "FAIL $cmd --help: no '$n' (status $st)"; fail=1; return; }; done
    [ $st = 0 ] && echo "ok   $cmd --help lists its options ($(grep -c -- '^  --' <<<"$out") lines)" ||
        { echo "FAIL $cmd --help: status $st"; fail=1; }
}
help_lists train "--steps N" "--prompt TEXT" "--max-new-tokens N" "--[no-]orthogonal"
help_lists gen "--vector EXPR" "--prompt-ids 1,2,3" "--max-new-tokens N"
help_lists bench "--waves B,B,..." "--config FILE"
expect_fail "target layer too high" "--target-layer 5 is out of range" "${base[@]}" --target-layer 5 --out "$o"
expect_fail "t <= s+1" "must be in 3..4" "${base[@]}" --target-layer 2 --out "$o"
expect_fail "source layer negative" "--source-layer must be >= 0 (got -2)" "${base[@]}" --source-layer -2 --out "$o"
expect_fail "radius zero" "--radius must be positive" "${base[@]}" --radius 0 --out "$o"
expect_fail "radius missing" "--radius is required" train --model "$model" --prompt-ids "$ids" --out "$o"
expect_fail "p negative" "--p must be positive" "${base[@]}" --p -1 --out "$o"
expect_fail "q zero" "--q must be positive" "${base[@]}" --q 0 --out "$o"
expect_fail "empty slice" "selects no token of prompt 1" "${base[@]}" --prompt-ids 1,2,3 --target-tokens 5: --out "$o"
expect_fail "bad slice" "is not a Python slice" "${base[@]}" --target-tokens 1:2:3:4 --out "$o"
expect_fail "too many orthogonal vectors" "--vectors 65 is more than d_model 64" "${base[@]}" --vectors 65 --out "$o"
expect_fail "id outside vocab" "outside the model's vocabulary of 512" "${base[@]}" --prompt-ids 1,600 --out "$o"
expect_fail "init without vectors" "needs a tensor 'vectors' of shape [4, 64]" "${base[@]}" --vectors 4 \
    --init "$golden/data/llama3.golden.safetensors" --out "$o"
expect_fail "init wrong shape" "needs a tensor 'vectors' of shape [3, 64]" "${base[@]}" --vectors 3 \
    --init "$golden/data/train_p2q1.init.safetensors" --out "$o"
expect_fail "unwritable output" "cannot write the output $tmp/no/such/dir/x.bank.safetensors" "${base[@]}" \
    --out "$tmp/no/such/dir/x.bank.safetensors"
expect_fail "unwritable checkpoint" "cannot write the checkpoint /proc/nope.ckpt" "${base[@]}" --out "$o" \
    --checkpoint /proc/nope.ckpt
expect_fail "unknown dtype" "--dtype must be fp32 or bf16, not 'fp16'" "${base[@]}" --out "$o" --dtype fp16
expect_fail "unknown device" "--device must be auto, cpu or cuda, not 'tpu'" "${base[@]}" --out "$o" --device tpu
# this suite runs without a GPU: a CUDA build says no device is seen, a CPU-only build says it
# has no CUDA; both name --device cuda and neither trains
if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    expect_fail "cuda without a GPU" "--device cuda:" "${base[@]}" --out "$o" --device cuda
fi
expect_fail "gen: unknown dtype" "--dtype must be fp32 or bf16, not 'x'" gen --model "$model" \
    --prompt-ids 1,2 --dtype x
expect_fail "bench without --random-weights" "bench needs --config config.json --random-weights" \
    bench --config "$model/config.json"
expect_fail "bench: missing config" "cannot open $tmp/none.json" bench --config "$tmp/none.json" \
    --random-weights
expect_fail "bench: wave size" "--waves '0'" bench --config "$model/config.json" --random-weights \
    --waves 0
expect_fail "no prompt" "no prompt" train --model "$model" --radius 4 --out "$o"
expect_fail "unknown option" "unknown option --frobnicate" "${base[@]}" --frobnicate 3 --out "$o"
expect_fail "bad loss axis" "--loss-axis must be token or dim" "${base[@]}" --loss-axis both --out "$o"

# Determinism: the same command twice gives the same bank.
run=("${base[@]}" --vectors 4 --wave 1 --steps 30 --seed 3)
"$rank" "${run[@]}" --out "$tmp/a.bank.safetensors" 2>/dev/null || { echo "FAIL run a"; fail=1; }
"$rank" "${run[@]}" --out "$tmp/b.bank.safetensors" 2>/dev/null || { echo "FAIL run b"; fail=1; }
if "$rank" bank "$tmp/a.bank.safetensors" --same-as "$tmp/b.bank.safetensors"; then echo "ok   deterministic"
else echo "FAIL same command twice differs"; fail=1; fi
"$rank" "${run[@]}" --seed 4 --out "$tmp/c.bank.safetensors" 2>/dev/null
"$rank" bank "$tmp/a.bank.safetensors" --same-as "$tmp/c.bank.safetensors" >/dev/null \
    && { echo "FAIL another seed gives the same bank"; fail=1; } || echo "ok   another seed differs"

# Resume: SIGKILL in the middle of wave 2 of 4, then --resume gives the uninterrupted bank.
long=("${base[@]}" --vectors 4 --wave 1 --steps 600 --checkpoint-every 200)
"$rank" "${long[@]}" --out "$tmp/full.bank.safetensors" 2>/dev/null || { echo "FAIL full run"; fail=1; }
MELBO_PROGRESS_SECONDS=0 "$rank" "${long[@]}" --out "$tmp/killed.bank.safetensors" \
    --checkpoint "$tmp/run.ckpt" 2>"$tmp/killed.log" &
pid=$!
for _ in $(seq 1 600); do
    grep -qE "wave 2/4 step (2[1-9][0-9]|[3-5][0-9][0-9])/" "$tmp/killed.log" 2>/dev/null && break
    sleep 0.02
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
last=$(grep -o "wave [0-9]/4 step [0-9]*" "$tmp/killed.log" | tail -1)
echo "     killed at: $last"
case "$last" in "wave 2/4 step "*) ;; *) echo "FAIL not killed in wave 2 ($last)"; fail=1 ;; esac
[ -e "$tmp/killed.bank.safetensors" ] && { echo "FAIL a killed run left a bank"; fail=1; }
"$rank" bank "$tmp/run.ckpt" >/dev/null 2>&1 && { echo "FAIL checkpoint passes as a bank"; fail=1; }
"$rank" "${long[@]}" --out "$tmp/resumed.bank.safetensors" --checkpoint "$tmp/run.ckpt" \
    --resume "$tmp/run.ckpt" 2>"$tmp/resume.log" || { echo "FAIL resume: $(tail -3 "$tmp/resume.log")"; fail=1; }
grep "resumed from" "$tmp/resume.log"
if "$rank" bank "$tmp/full.bank.safetensors" --same-as "$tmp/resumed.bank.safetensors"; then
    echo "ok   killed in wave 2 of 4 and resumed = uninterrupted"
else echo "FAIL resumed bank differs"; fail=1; fi
expect_fail "checkpoint from other settings" "its radius is 4, this run's is 3" "${long[@]}" --radius 3 \
    --out "$o" --resume "$tmp/run.ckpt"
expect_fail "checkpoint from another model" "its model_fingerprint is" train --model "$golden/models/qwen3" \
    --prompt-ids "$ids" --source-layer 1 --target-layer 4 --radius 4 --vectors 4 --wave 1 --steps 600 \
    --out "$o" --resume "$tmp/run.ckpt"

# --radius auto: the same R as the PyTorch implementation of the rule (rel <= 1e-3), stored in the
# bank; no root in the bracket is a clear error.
"$rank" train --model "$model" --prompt-ids "$ids" --prompt-ids 0,148,100,492,374,469,205,405,469,340 \
    --source-layer 1 --target-layer 4 --target-tokens -3: --radius auto --calibration-samples 8 \
    --calibration-init "$golden/data/calibration_llama3.init.safetensors" --vectors 2 --steps 2 \
    --no-generate --out "$tmp/cal.bank.safetensors" 2>"$tmp/cal.log" || { echo "FAIL calibration run: $(tail -2 "$tmp/cal.log")"; fail=1; }
python3 - "$tmp/cal.bank.safetensors" "$golden/data/calibration_llama3.golden.safetensors" <<'PY' || fail=1
import json, sys
from safetensors import safe_open
got = safe_open(sys.argv[1], "np").metadata()
ref = float(safe_open(sys.argv[2], "np").metadata()["radius"])
R = float(got["radius"]); cal = json.loads(got["radius_calibration"])
rel = abs(R - ref) / ref
print(f"{'ok  ' if rel <= 1e-3 else 'FAIL'} --radius auto R = {R:.6g} vs PyTorch {ref:.6g}: rel {rel:.1e} (tol 1e-3); {cal['samples']} directions")
sys.exit(0 if rel <= 1e-3 and cal["lambda"] == 0.5 else 1)
PY
expect_fail "calibration without a root" "no R in [0.001, 100] gives the nonlinearity ratio 5" "${base[@]}" \
    --radius auto --calibration-lambda 5 --out "$o"

# Python reads the bank with safetensors + numpy.
if python3 -c "import safetensors, numpy" 2>/dev/null; then
    python3 "$(dirname "$0")/read_bank.py" "$tmp/a.bank.safetensors" 4 64 30 4.0 || fail=1
else
    echo "FAIL python3 safetensors/numpy missing (tests/run installs them)"; fail=1
fi
exit $fail
