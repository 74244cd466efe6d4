#!/usr/bin/env bash
# tests/mpi/test_layouts.sh MELBO_RANK GOLDEN_DIR TMPDIR MPIEXEC
# Every tp x dp layout (tp in 1 2 4, dp in 1 2) on golden tiny models, including one with fewer KV
# heads than tp (llama3: 2 KV heads, tp 4 replicates them) and one with Q/K/V biases (qwen2):
# the bank's vectors and objective curves within rel 1e-5 of the single-process bank, the
# random baselines too, and every completion (greedy tokens, as text) identical. Layouts the
# world size or the heads do not allow are refused before anything is loaded.
set -u
rank=$1 golden=$2 tmp=$3 mpiexec=$4
mpirun=("$mpiexec" --allow-run-as-root --oversubscribe --bind-to none)
fail=0
rm -rf "$tmp" && mkdir -p "$tmp"
export OMP_NUM_THREADS=1

compare() { # compare REF OTHER LABEL
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
import numpy as np
from safetensors import safe_open
a, b, label = sys.argv[1:]
fa, fb = safe_open(a, "np"), safe_open(b, "np")
worst = 0.0
for k in ("vectors", "objective", "random_vectors"):
    x, y = fb.get_tensor(k), fa.get_tensor(k)
    worst = max(worst, float(np.abs(x - y).max() / np.abs(y).max()))
same = json.loads(fa.metadata()["completions"]) == json.loads(fb.metadata()["completions"])
ok = worst <= 1e-5 and same
print(f"{'ok  ' if ok else 'FAIL'} {label}: vectors/objective/random rel {worst:.2e}, completions "
      f"{'identical' if same else 'DIFFER'}")
sys.exit(0 if ok else 1)
PY
}

for model in llama3 qwen2 qwen3; do
    ids0=$(python3 -c "from safetensors import safe_open; f=safe_open('$golden/data/$model.golden.safetensors','np'); print(','.join(map(str,f.get_tensor('input_ids.0').tolist())))")
    ids1=$(python3 -c "from safetensors import safe_open; f=safe_open('$golden/data/$model.golden.safetensors','np'); print(','.join(map(str,f.get_tensor('input_ids.1').tolist())))")
    args=(train --model "$golden/models/$model" --prompt-ids "$ids0" --prompt-ids "$ids1" --source-layer 1
          --target-layer 4 --radius 4 --vectors 6 --wave 3 --steps 8 --max-new-tokens 10 --random-baselines 2)
    "$rank" "${args[@]}" --out "$tmp/$model.1.bank.safetensors" 2>"$tmp/$model.1.log" \
        || { echo "FAIL $model single process: $(tail -2 "$tmp/$model.1.log")"; fail=1; continue; }
    for layout in "1 2" "2 1" "2 2" "4 1" "4 2"; do
        set -- $layout
        tp=$1 dp=$2 n=$(($1 * $2))
        out="$tmp/$model.tp$tp.dp$dp.bank.safetensors"
        if ! "${mpirun[@]}" -np $n "$rank" "${args[@]}" --tp $tp --dp $dp --out "$out" \
             >"$tmp/$model.$tp.$dp.log" 2>&1; then
            echo "FAIL $model tp $tp dp $dp: $(tail -3 "$tmp/$model.$tp.$dp.log")"; fail=1; continue
        fi
        compare "$tmp/$model.1.bank.safetensors" "$out" "$model tp $tp x dp $dp ($n ranks)" || fail=1
    done
done

expect_fail() { # expect_fail DESCRIPTION NEEDLE NP ARGS...
    local what=$1 needle=$2 np=$3; shift 3
    out=$("${mpirun[@]}" -np "$np" "$rank" "$@" 2>&1); st=$?
    if [ "$st" = 0 ] || ! grep -qF -- "$needle" <<<"$out"; then echo "FAIL $what: $out"; fail=1
    elif grep -q "vector-steps" <<<"$out"; then echo "FAIL $what: trained"; fail=1
    else echo "ok   $what: $(grep -F -- "$needle" <<<"$out" | head -1)"; fi
}
small=(train --model "$golden/models/llama3" --prompt-ids 1,2,3 --source-layer 1 --target-layer 4 --radius 4
       --vectors 2 --steps 2 --out "$tmp/x.bank.safetensors")
expect_fail "3 ranks for tp 2 x dp 1" "the job has 3 ranks but --tp 2 x --dp 1 = 2" 3 "${small[@]}" --tp 2
expect_fail "tp 3 with 4 heads" "--tp 3 does not divide the model's 4 attention heads" 3 "${small[@]}" --tp 3
expect_fail "tp 8 with 4 heads" "--tp 8 does not divide the model's 4 attention heads" 8 "${small[@]}" --tp 8
out=$("$rank" "${small[@]}" --tp 2 2>&1)
grep -qF "needs 2 ranks: start it with mpirun -np 2" <<<"$out" && echo "ok   --tp without mpirun: $out" \
    || { echo "FAIL --tp without mpirun: $out"; fail=1; }
exit $fail
