#!/usr/bin/env bash
# tests/faults/test_checkpoint_full.sh BUILD GOLDEN SHIM TMP - the disk under a rank's checkpoint
# is full (the failwrite shim on the checkpoint's directory, issue 22): training goes on with one
# warning, no temporary file is left, and the bank is the same bank as a run without checkpoints.
# Then the disk has room again mid-run (the shim's control file removed by the time the second
# wave starts): checkpoints are written again.
set -u
build=$1 golden=$2 shim=$3 tmp=$4
rm -rf "$tmp" && mkdir -p "$tmp/full" "$tmp/out"
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
rank="$build/rank/melbo-rank"
args=(--model "$golden/models/llama3" --prompt-ids 492,403,287 --source-layer 1 --target-layer 4
      --radius 4 --vectors 4 --wave 2 --steps 200 --max-new-tokens 2)
touch "$tmp/disk-full"
LD_PRELOAD=$shim MELBO_FAIL_WRITE_DIR="$tmp/full" MELBO_FAIL_WRITE_WHEN="$tmp/disk-full" \
    "$rank" train "${args[@]}" --checkpoint-every 10 --checkpoint "$tmp/full/c.ckpt" \
    --out "$tmp/out/full.bank.safetensors" > "$tmp/full.log" 2>&1
st=$?
warnings=$(grep -c "training goes on" "$tmp/full.log")
[ $st = 0 ] && [ "$warnings" = 1 ] && ok "checkpoint disk full: the run ends (exit 0), one warning: $(grep -o 'cannot write [^;]*' "$tmp/full.log" | head -1)" \
    || bad "exit $st, $warnings warnings: $(tail -3 "$tmp/full.log")"
[ -z "$(ls -A "$tmp/full")" ] && ok "no temporary checkpoint file left" || bad "left: $(ls "$tmp/full")"
"$rank" train "${args[@]}" --out "$tmp/out/plain.bank.safetensors" > "$tmp/plain.log" 2>&1 || bad "plain run"
"$rank" bank "$tmp/out/full.bank.safetensors" --same-as "$tmp/out/plain.bank.safetensors" > /dev/null \
    && ok "its bank is the same bank as a run without checkpoints" || bad "the banks differ"
# room again while it runs: the next checkpoint is written
touch "$tmp/disk-full"
( sleep 0.3; rm -f "$tmp/disk-full" ) &
LD_PRELOAD=$shim MELBO_FAIL_WRITE_DIR="$tmp/full" MELBO_FAIL_WRITE_WHEN="$tmp/disk-full" \
    "$rank" train "${args[@]}" --steps 4000 --checkpoint-every 100 --checkpoint "$tmp/full/c.ckpt" \
    --out "$tmp/out/again.bank.safetensors" > "$tmp/again.log" 2>&1
wait
[ -s "$tmp/full/c.ckpt" ] && ok "room again: checkpoints written again ($(grep -c 'written again' "$tmp/again.log") notice)" \
    || bad "no checkpoint after the disk had room: $(tail -2 "$tmp/again.log")"
exit $fail
