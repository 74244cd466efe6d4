#!/usr/bin/env bash
# tests/mpi/test_family_layouts.sh MELBO_RANK GOLDEN_DIR TMPDIR MPIEXEC
# Every tp x dp layout (tp in 1 2 4, dp in 1 2) on the issue-21 tiny models (Gemma 2, Gemma 3,
# OLMo 2, Phi-3, Mixtral, Qwen3-MoE: 4 query heads and 2 KV heads, so tp 4 replicates each KV head on 2 ranks; OLMo
# 2's q/k norm spans the heads of every rank; Phi-3's fused qkv_proj and gate_up_proj are split
# per rank; Mixtral, Qwen3-MoE and Qwen2-MoE split every expert's columns and the shared expert's, the router and the shared gate replicated): the bank's vectors, objective curves and random baselines within rel 1e-5 of the
# single-process bank, and every completion (greedy, 10 tokens) identical.
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

for model in gemma2 gemma3 olmo2 phi3 mixtral qwen3_moe qwen2_moe; do
    ids() { python3 -c "from safetensors import safe_open; f=safe_open('$golden/data/$model.golden.safetensors','np'); print(','.join(map(str,f.get_tensor('input_ids.$1').tolist())))"; }
    args=(train --model "$golden/family_models/$model" --prompt-ids "$(ids 0)" --prompt-ids "$(ids 1)"
          --source-layer 1 --target-layer 4 --radius 4 --vectors 6 --wave 3 --steps 8
          --max-new-tokens 10 --random-baselines 2)
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
exit $fail
