#!/usr/bin/env bash
# tests/slurm/test_slurm.sh BUILD_DIR GOLDEN_DIR TMPDIR
# melbo-coord --launcher slurm against a real one-node Slurm (cluster.sh: slurmctld + slurmd,
# auth/none, loopback), started here and stopped at the end:
#   1. tp=2 and dp=2 jobs run under srun with 2 ranks, events reach `melbo watch`, DONE, and the
#      fetched bank is the same as the one the same ranks write under mpirun (local launcher)
#   1b. a gen job (issue 19) runs `melbo-rank gen` under srun (the template's @RANK_COMMAND@)
#   2. with the node busy, a job shows QUEUED with Slurm's reason in `melbo watch --json`
#   3. `melbo cancel` -> scancel -> CANCELLED, no ranks left
#   4. a rank that exits non-zero makes the job FAILED with the rank's error text in its events
#   5. the time limit's signal (USR1 to the batch shell, sent with scancel at a chosen step): the
#      job checkpoints, is resubmitted with --resume, goes on from the step it stopped at and
#      finishes with the same bank as an uninterrupted run
set -u
bin=$1 golden=$2 tmp=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../service/lib.sh"
cluster="$tmp-cluster"
stop_all() { cleanup; "$here/cluster.sh" stop "$cluster" >/dev/null 2>&1; }
trap stop_all EXIT
for t in slurmctld slurmd sbatch srun squeue scancel; do
    command -v $t >/dev/null || { echo "FAIL $t is not installed (deploy/setup installs Slurm)"; exit 1; }
done
eval "$("$here/cluster.sh" start "$cluster")" || { echo "FAIL cannot start the test cluster"; exit 1; }
mpirun_cmd=(mpirun --allow-run-as-root --oversubscribe --bind-to none)

coord_init
printf 'slurm.signal_lead=50\nslurm.time=00:10:00\n' >> "$tmp/state/coord.conf"
serve_args=(--launcher slurm)
coord_start
ok "coordinator with the slurm launcher on $MELBO_COORD"

# ---- 1. tp=2 and dp=2 under srun ----
for layout in "--tp 2" "--dp 2"; do
    spec=("${job_args[@]}" --vectors 4 --wave 2 --steps 6 --max-new-tokens 4 --random-baselines 1 $layout)
    job=$(melbo submit "${spec[@]}") || { bad "submit $layout"; continue; }
    timeout 240 melbo watch "$job" --json > "$tmp/w$job.jsonl" 2>&1
    st=$?
    steps=$(grep -c '"kind":"step"' "$tmp/w$job.jsonl")
    if [ $st = 0 ] && grep -q '"state":"DONE"' "$tmp/w$job.jsonl" && [ "$steps" -ge 12 ]; then
        ok "job $job ($layout) ran under Slurm: $steps step events, DONE ($(grep -o 'submitted to Slurm as job [0-9]*' "$tmp/w$job.jsonl" | head -1))"
    else
        bad "job $job ($layout): watch exit $st, $steps steps: $(tail -3 "$tmp/w$job.jsonl")"
    fi
    melbo fetch "$job" -o "$tmp/slurm$job.bank.safetensors" >/dev/null || bad "fetch $job"
    "${mpirun_cmd[@]}" -np 2 "$bin/rank/melbo-rank" train "${spec[@]}" --out "$tmp/local$job.bank.safetensors" \
        > "$tmp/local$job.log" 2>&1 || bad "local run: $(tail -2 "$tmp/local$job.log")"
    "$bin/rank/melbo-rank" bank "$tmp/slurm$job.bank.safetensors" --same-as "$tmp/local$job.bank.safetensors" >/dev/null \
        && ok "job $job: the bank from Slurm is the same bank as mpirun's" || bad "job $job: banks differ"
done

# ---- 1b. a gen job (issue 19) runs `melbo-rank gen` under srun: the text equals a local gen ----
bank_id=$(melbo show "$job" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['bank'])")
gen_out=$(timeout 120 melbo gen --bank "$bank_id" --vector 0 --prompt-ids 492,403,287 --max-new-tokens 4 --json 2>"$tmp/gen.err")
want=$("$bin/rank/melbo-rank" gen --model "$model" --bank "$tmp/slurm$job.bank.safetensors" --vector 0 \
       --prompt-ids 492,403,287 --max-new-tokens 4 --json 2>/dev/null | python3 -c "import json,sys; print([json.loads(l)['text'] for l in sys.stdin])")
got=$(python3 -c "import json,sys; print([e['text'] for e in map(json.loads, sys.stdin.read().splitlines()) if e['kind'] == 'completion'])" <<<"$gen_out")
if grep -q '"state":"DONE"' <<<"$gen_out" && [ "$got" = "$want" ] && grep -q "Slurm" <<<"$gen_out"; then
    ok "gen job under Slurm: its completion equals local melbo-rank gen's, DONE ($(grep -o 'submitted to Slurm as job [0-9]*' <<<"$gen_out" | head -1))"
else
    bad "gen job under Slurm: $(tail -3 "$tmp/gen.err") $(tail -2 <<<"$gen_out")"
fi

# ---- 2. busy node: QUEUED with Slurm's reason; 3. cancel ----
blocker=$(sbatch --parsable --exclusive -o /dev/null --wrap "sleep 600")
for _ in $(seq 50); do [ "$(squeue -h -j "$blocker" -o %T)" = RUNNING ] && break; sleep 0.2; done
job=$(melbo submit "${job_args[@]}" --vectors 2 --steps 5 --max-new-tokens 2)
timeout 30 melbo watch "$job" --json > "$tmp/queued.jsonl" 2>&1 &
wpid=$!
for _ in $(seq 100); do grep -q '"reason"' "$tmp/queued.jsonl" && break; sleep 0.2; done
line=$(grep '"reason"' "$tmp/queued.jsonl" | head -1)
if grep -q '"state":"QUEUED"' <<<"$line"; then ok "job $job waits: $(grep -o '"detail":"[^"]*"' <<<"$line")"
else bad "no QUEUED event with a Slurm reason: $(cat "$tmp/queued.jsonl")"; fi
melbo cancel "$job" >/dev/null || bad "cancel $job"
wait_state "$job" CANCELLED 30 && ok "queued job $job cancelled" || bad "job $job not CANCELLED"
kill $wpid 2>/dev/null

# a running job cancelled: scancel ends its ranks
scancel "$blocker"
job=$(melbo submit "${job_args[@]}" --vectors 2 --wave 1 --steps 100000 --checkpoint-every 100000 --no-generate)
wait_state "$job" RUNNING 120 || bad "job $job never RUNNING"
t0=$SECONDS
melbo cancel "$job" >/dev/null || bad "cancel running $job"
if wait_state "$job" CANCELLED 30; then
    sleep 1
    left=$(pgrep -f -- "$tmp/state/jobs/$job/" | wc -l)
    [ "$left" = 0 ] && ok "running job $job CANCELLED in $((SECONDS - t0)) s, no ranks left" \
        || bad "job $job: $left processes left"
else bad "running job $job not CANCELLED: $(melbo ls)"; fi

# ---- 4. a rank that fails at run time ----
# The job waits behind a blocker; its rank.args (the ranks' options, written at sbatch time) is
# removed meanwhile, so melbo-rank exits non-zero when Slurm starts it.
blocker=$(sbatch --parsable --exclusive -o /dev/null --wrap "sleep 600")
for _ in $(seq 50); do [ "$(squeue -h -j "$blocker" -o %T)" = RUNNING ] && break; sleep 0.2; done
job=$(melbo submit "${job_args[@]}" --vectors 2 --steps 3) || bad "submit"
for _ in $(seq 100); do [ -e "$tmp/state/jobs/$job/rank.args" ] && break; sleep 0.1; done
rm -f "$tmp/state/jobs/$job/rank.args"
scancel "$blocker"
timeout 120 melbo watch "$job" --json > "$tmp/failed.jsonl" 2>&1
st=$?
err=$(grep -o '"error":"[^"]*"' "$tmp/failed.jsonl" | tail -1)
if [ $st = 4 ] && grep -q '"state":"FAILED"' "$tmp/failed.jsonl" && grep -q "rank.args\|cannot" <<<"$err"; then
    ok "a failing rank: job $job FAILED with the rank's text: $err"
else bad "job $job: watch exit $st: $(tail -2 "$tmp/failed.jsonl")"; fi

# ---- 5. time limit: USR1, checkpoint, resubmit, resume, same bank ----
# The coordinator asks Slurm (sbatch --signal=B:USR1@50, recorded in the job's sbatch.args) for USR1
# to the batch shell 50 s before the time limit. When Slurm sends it depends on slurmctld's timers (up to a minute early),
# and whether the job is still running then on the machine's speed, so the test does not wait for
# it: once the job has done step $sig_step of $long_steps (seconds of work left on any machine),
# it delivers the same signal the same way, `scancel --signal=USR1 --batch` (the batch shell
# only, as B: does). From there it is the time-limit path: the shell's trap passes USR1 to srun,
# the ranks agree at the end of the step, rank 0 checkpoints, they exit 75, the exit record says
# CHECKPOINTED and the coordinator resubmits with --resume. The job keeps its 2-minute limit; if
# Slurm's own signal comes too, that is one resubmission more.
ids60=$(python3 -c "print(','.join(str((i * 37 + 11) % 512) for i in range(60)))")
long_steps=8000 sig_step=200
long=(--model "$model" --prompt-ids "$ids60" --source-layer 1 --target-layer 4 --radius 4 --vectors 2
      --wave 2 --steps $long_steps --checkpoint-every 1000000 --no-generate)
"$bin/rank/melbo-rank" train "${long[@]}" --out "$tmp/uninterrupted.bank.safetensors" > "$tmp/unint.log" 2>&1 &
ref=$!
job=$(melbo submit "${long[@]}" --time 2) || bad "submit with --time 2"
timeout 300 melbo watch "$job" --json > "$tmp/timelimit.jsonl" 2>&1 &
wpid=$!
reached=0
for _ in $(seq 1200); do
    grep -q "\"kind\":\"step\".*\"step\":$sig_step," "$tmp/timelimit.jsonl" && { reached=1; break; }
    kill -0 $wpid 2>/dev/null || break
    sleep 0.1
done
slurm_id=$(grep -o -m1 'submitted to Slurm as job [0-9]*' "$tmp/timelimit.jsonl" | grep -o '[0-9]*$')
if [ $reached = 1 ] && [ -n "$slurm_id" ]; then
    limit=$(squeue -h -j "$slurm_id" -o %l)
    sig_line=$(grep -o -- '--signal=B:USR1@[0-9]*' "$tmp/state/jobs/$job/sbatch.args")
    if scancel --signal=USR1 --batch "$slurm_id"; then
        ok "job $job (Slurm job $slurm_id, time limit $limit, $sig_line) at step $sig_step of $long_steps: USR1 sent to its batch shell"
    else bad "scancel --signal=USR1 --batch $slurm_id failed"; fi
    [ "$limit" = 2:00 ] && [ "$sig_line" = "--signal=B:USR1@50" ] \
        || bad "job $job: Slurm's time limit '$limit' (want 2:00), sbatch's '$sig_line' (want --signal=B:USR1@50)"
else
    bad "time-limit job $job (Slurm job '$slurm_id') never reached step $sig_step: $(grep '"kind":"state"' "$tmp/timelimit.jsonl" | tail -3)"
fi
wait $wpid
st=$?
wait $ref || bad "uninterrupted run: $(tail -2 "$tmp/unint.log")"
resubmits=$(grep -c 'resubmitting with --resume' "$tmp/timelimit.jsonl")
if [ $st = 0 ] && [ "$resubmits" -ge 1 ] && grep -q '"state":"CHECKPOINTED"' "$tmp/timelimit.jsonl"; then
    ok "job $job checkpointed on USR1 and was resubmitted $resubmits time(s), then DONE"
else bad "time-limit job $job: watch exit $st, $resubmits resubmissions: $(grep '"kind":"state"' "$tmp/timelimit.jsonl" | tail -4)"; fi
# The resubmitted ranks went on from the checkpoint: the step after the one they stopped at.
resumed=$(python3 - "$tmp/timelimit.jsonl" "$sig_step" 2>&1 <<'EOF'
import json, re, sys
events = []
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        events.append(json.loads(line))
    except ValueError:
        pass
stop = next((i for i, e in enumerate(events) if "after SIGUSR1" in e.get("detail", "")), None)
if stop is None:
    sys.exit("no 'stopped ... after SIGUSR1' event")
k = int(re.search(r"step (\d+) of its wave", events[stop]["detail"]).group(1))
first = next((e["step"] for e in events[stop:] if e.get("kind") == "step"), None)
if k < int(sys.argv[2]) or first != k + 1:
    sys.exit(f"stopped at step {k}, the resubmitted job's first step is {first} (want {k + 1})")
print(f"stopped at step {k}, the resubmitted job went on at step {first}")
EOF
) && ok "job $job: $resumed" || bad "job $job did not resume where it stopped: $resumed"
melbo fetch "$job" -o "$tmp/resumed.bank.safetensors" >/dev/null || bad "fetch $job"
"$bin/rank/melbo-rank" bank "$tmp/resumed.bank.safetensors" --same-as "$tmp/uninterrupted.bank.safetensors" >/dev/null \
    && ok "the resumed job's bank is the same bank as an uninterrupted run's" || bad "resumed bank differs"

# ---- the coordinator picks Slurm jobs up again after a restart (reconciliation) ----
job=$(melbo submit "${job_args[@]}" --vectors 2 --wave 1 --steps 3000 --no-generate)
wait_state "$job" RUNNING 120 || bad "job $job never RUNNING"
kill -9 "$coord_pid"; sleep 1
coord_start "$MELBO_COORD"
timeout 240 melbo watch "$job" --json > "$tmp/reconcile.jsonl" 2>&1 \
    && ok "after a coordinator restart job $job was tracked in Slurm again and finished DONE" \
    || bad "job $job after restart: $(tail -2 "$tmp/reconcile.jsonl")"
grep -q "tracking Slurm job" "$tmp/serve.log" || bad "restart did not mention the Slurm job"
exit $fail
