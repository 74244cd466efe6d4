#!/usr/bin/env bash
# tests/families/test_family_train.sh MELBO_RANK GOLDEN_DIR TMPDIR
# Training parity on Gemma 2 and Qwen3-MoE: `melbo-rank train --wave 1` against the independent PyTorch MELBO
# reference (tests/golden/make_family_train_goldens.py): vectors and objective curves rel <= 1e-5.
set -u
rank=$1 golden=$2 tmp=$3
rm -rf "$tmp" && mkdir -p "$tmp"
fail=0
for case in gemma2_2prompts qwen3_moe_2prompts; do
    g=$golden/data/train_$case.golden.safetensors
    args=$(python3 - "$g" <<'PY'
import sys
from safetensors import safe_open
f = safe_open(sys.argv[1], "np")
m = f.metadata()
ids = [",".join(map(str, f.get_tensor(k).tolist())) for k in sorted(x for x in f.keys() if x.startswith("prompt_ids."))]
print(" ".join(f"--prompt-ids {i}" for i in ids), f"--model-name {m['model']}", f"--radius {m['radius']} --p {m['p']} --q {m['q']}",
      f"--loss-axis {m['loss_axis']} --target-tokens {m['target_tokens']} --steps {m['steps']} --vectors {m['vectors']}",
      f"--source-layer {m['source_layer']} --target-layer {m['target_layer']}")
PY
)
    model=$(sed -n 's/.*--model-name \([^ ]*\).*/\1/p' <<<"$args")
    args=${args/--model-name $model/}
    # shellcheck disable=SC2086
    if ! "$rank" train --model "$golden/family_models/$model" $args --wave 1 --orthogonal \
         --init "$golden/data/train_$case.init.safetensors" --max-new-tokens 0 \
         --out "$tmp/$case.bank.safetensors" >"$tmp/$case.log" 2>&1; then
        echo "FAIL $case: $(tail -3 "$tmp/$case.log")"; fail=1; continue
    fi
    python3 - "$g" "$tmp/$case.bank.safetensors" "$case" <<'PY' || fail=1
import sys
import numpy as np
from safetensors import safe_open
g, b = safe_open(sys.argv[1], "np"), safe_open(sys.argv[2], "np")
rv = float(np.abs(b.get_tensor("vectors") - g.get_tensor("vectors")).max() / np.abs(g.get_tensor("vectors")).max())
ro = float((np.abs(b.get_tensor("objective") - g.get_tensor("objective")) / np.abs(g.get_tensor("objective"))).max())
ok = rv <= 1e-5 and ro <= 1e-5
print(f"{'ok  ' if ok else 'FAIL'} {sys.argv[3]}: vectors rel {rv:.2e}, objective rel {ro:.2e} (tol 1e-5) vs the PyTorch reference")
sys.exit(0 if ok else 1)
PY
done
exit $fail
