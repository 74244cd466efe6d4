#!/usr/bin/env bash
# tests/demo/test_demo.sh REPO_DIR BUILD_DIR TMPDIR
# deploy/demo as a user runs it, with smaller settings (8 vectors, 2 seeds), on the real default
# model; then the method's own claim: the learned vectors change the completion more than the
# random baselines of the same norm (mean token edit distance from the unsteered completion), for
# both seeds. Skips (77) only when the default model cannot be downloaded (no PyPI).
set -u
repo=$1 build=$2 tmp=$3
rm -rf "$tmp" && mkdir -p "$tmp"
model=$("$repo/deploy/fetch-default-model" 2>"$tmp/fetch.err")
st=$?
[ $st = 2 ] && { echo "SKIP: the default model cannot be downloaded: $(cat "$tmp/fetch.err")"; exit 77; }
[ $st = 0 ] || { echo "FAIL fetch-default-model: $(cat "$tmp/fetch.err")"; exit 1; }
fail=0
banks=()
for seed in 0 1; do
    t0=$SECONDS
    MELBO_DEMO_SKIP_SETUP=1 MELBO_DEMO_VECTORS=8 MELBO_DEMO_STEPS=40 MELBO_DEMO_TOKENS=48 \
        MELBO_DEMO_SEED=$seed MELBO_DEMO_DIR="$tmp/seed$seed" MELBO_DEMO_BUILD="$build" "$repo/deploy/demo" > "$tmp/demo$seed.log" 2>&1
    st=$?
    bank="$tmp/seed$seed/demo.bank.safetensors"
    if [ $st = 0 ] && [ -s "$bank" ] && grep -q "What to run next" "$tmp/demo$seed.log" &&
       grep -q "random vectors of the same norm" "$tmp/demo$seed.log" &&
       grep -q "open in a browser: $tmp/seed$seed/report.html" "$tmp/demo$seed.log" &&
       grep -q 'id="heatmap"' "$tmp/seed$seed/report.html"; then
        echo "ok   deploy/demo seed $seed: $((SECONDS - t0)) s, explains itself, bank at $bank, report at $tmp/seed$seed/report.html"
        banks+=("$bank")
    else
        echo "FAIL deploy/demo seed $seed (exit $st):"; tail -20 "$tmp/demo$seed.log"; fail=1
    fi
done
[ ${#banks[@]} = 2 ] && { python3 "$repo/tests/demo/edit_distance.py" "$build/rank/melbo-rank" "$model" "${banks[@]}" || fail=1; }
exit $fail
