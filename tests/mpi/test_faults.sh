#!/usr/bin/env bash
# tests/mpi/test_faults.sh MELBO_RANK GOLDEN_DIR TMPDIR MPIEXEC MAKE_RANDOM_MODEL
#   1. a rank other than 0 killed with SIGKILL in the middle of a step ends the whole job within
#      60 s, melbo's own message names the lost rank, and no rank is left behind;
#   2. memory: on a model whose weights dominate (random, ~380 MB in F32), each rank's peak RSS at
#      tp = 2 is at most 0.6 of the tp = 1 peak.
set -u
rank=$1 golden=$2 tmp=$3 mpiexec=$4 mkmodel=$5
mpirun=("$mpiexec" --allow-run-as-root --oversubscribe --bind-to none)
fail=0
rm -rf "$tmp" && mkdir -p "$tmp"
export OMP_NUM_THREADS=1

# 1. fault
MELBO_PROGRESS_SECONDS=0 "${mpirun[@]}" -np 4 "$rank" train --model "$golden/models/llama3" \
    --prompt-ids 492,403,287,109,129,38,286 --source-layer 1 --target-layer 4 --radius 4 --vectors 4 \
    --wave 2 --steps 1000000 --tp 2 --dp 2 --no-generate --out "$tmp/k.bank.safetensors" \
    >"$tmp/kill.log" 2>&1 &
job=$!
for _ in $(seq 1 300); do grep -q "step 20/" "$tmp/kill.log" 2>/dev/null && break; sleep 0.1; done
pids=($(pgrep -f "$tmp/k.bank.safetensors"))   # mpirun and its ranks; only ranks have a rank variable
victim=$(for p in "${pids[@]}"; do tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -q '^OMPI_COMM_WORLD_RANK=2$' && echo "$p"; done | head -1)
if [ -z "$victim" ]; then echo "FAIL could not find rank 2 (pids ${pids[*]})"; fail=1; kill $job; fi
t0=$(date +%s)
kill -9 "$victim" 2>/dev/null
wait $job
t1=$(date +%s)
left=$(pgrep -f "$tmp/k.bank.safetensors" | wc -l)
echo "     job ended $((t1 - t0)) s after rank 2 was killed; $left processes left"
grep -v " step " "$tmp/kill.log" | grep -i "melbo" | head -5
if [ $((t1 - t0)) -le 60 ] && [ "$left" = 0 ] && grep -q "melbo: rank [0-9]*: rank 2 (pid $victim on .*) is gone" "$tmp/kill.log"; then
    echo "ok   SIGKILL of rank 2 mid-step: whole job ended, melbo named the lost rank"
else
    echo "FAIL fault handling"; cat "$tmp/kill.log" | grep -v " step " | tail -20; fail=1
    pkill -9 -f "$tmp/k.bank.safetensors"
fi

# 2. memory
"$mkmodel" "$tmp/big" 768 10 8 8 3072 512 || { echo "FAIL make model"; exit 1; }
declare -A rss
for tp in 1 2; do
    out=$("${mpirun[@]}" -np $tp "$rank" train --model "$tmp/big" --prompt-ids 1,2,3,4,5,6,7,8 \
          --source-layer 1 --target-layer 9 --radius 4 --vectors 1 --steps 1 --no-generate --tp $tp \
          --out "$tmp/big$tp.bank.safetensors" 2>&1) || { echo "FAIL tp $tp run: $out"; fail=1; }
    rss[$tp]=$(grep -o "peak RSS of rank 0: [0-9.]*" <<<"$out" | grep -o "[0-9.]*$")
done
ratio=$(python3 -c "print(f'{${rss[2]:-0} / ${rss[1]:-1}:.3f}')")
echo "     peak RSS per rank: tp 1 ${rss[1]} MiB, tp 2 ${rss[2]} MiB, ratio $ratio"
python3 -c "import sys; sys.exit(0 if $ratio <= 0.6 else 1)" && echo "ok   tp 2 peak RSS <= 0.6 x tp 1" \
    || { echo "FAIL tp 2 / tp 1 peak RSS ratio $ratio > 0.6"; fail=1; }
rm -rf "$tmp/big"
exit $fail
