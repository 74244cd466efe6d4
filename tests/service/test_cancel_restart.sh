#!/usr/bin/env bash
# tests/service/test_cancel_restart.sh BUILD_DIR GOLDEN_DIR TMPDIR
# Cancel stops every rank within 10 s (state CANCELLED, no process of the job left); kill -9 of
# the coordinator in the middle of a job, then a restart on the same address: jobs, events and
# banks are intact, rank 0 reconnects and resends, the job completes DONE with its bank stored,
# and the event log has every step exactly once. A wrong job secret is refused.
bin=$1 golden=$2 tmp=$3
source "$(dirname "$0")/lib.sh"
coord_init
echo 'limits.max_steps=1000000' >> "$tmp/state/coord.conf"   # the long jobs below (default 100000)
coord_start
jobdir() { echo "$tmp/state/jobs/$1"; }

# 1. A finished job first (its bank must survive the kill -9 below).
first=$(melbo submit "${job_args[@]}" --vectors 2 --steps 5 --max-new-tokens 2)
melbo watch "$first" --json > "$tmp/first.jsonl" || bad "first job"
first_events=$(wc -l < "$tmp/first.jsonl")

# 2. Cancel: a long job, cancelled while RUNNING.
long=$(melbo submit "${job_args[@]}" --vectors 1 --steps 1000000 --no-generate)
wait_state "$long" RUNNING 30 || bad "long job never RUNNING"
t0=$(date +%s.%N)
melbo cancel "$long" 2>/dev/null || bad "cancel refused"
wait_state "$long" CANCELLED 10 && ok "cancelled within $(python3 -c "print(round($(date +%s.%N)-$t0,2))") s" || bad "not CANCELLED within 10 s"
sleep 0.5
left=$(pgrep -f -- "$(jobdir "$long")" | wc -l)
[ "$left" = 0 ] && ok "no orphan processes of the cancelled job" || bad "$left processes of job $long left"
melbo watch "$long" --json > /dev/null; st=$?
[ $st = 5 ] && ok "watch of a CANCELLED job exits 5" || bad "watch exit $st"

# 3. kill -9 of the coordinator mid-job, restart, the job completes.
addr=$MELBO_COORD
job=$(melbo submit "${job_args[@]}" --vectors 2 --wave 1 --steps 4000 --max-new-tokens 2)
wait_state "$job" RUNNING 30 || bad "job never RUNNING"
sleep 0.5
kill -9 "$coord_pid"
wait "$coord_pid" 2>/dev/null
sleep 1.5   # the ranks keep training and buffer their events
pgrep -f -- "$(jobdir "$job")" >/dev/null && ok "ranks survive the coordinator's kill -9" || bad "ranks died with the coordinator"
coord_start "$addr"
melbo watch "$job" --json > "$tmp/job.jsonl"; st=$?
[ $st = 0 ] && ok "job completes DONE after the restart" || bad "watch after restart: exit $st, $(tail -2 "$tmp/job.jsonl")"
grep -q "resend after [1-9]" "$tmp/serve.log" && ok "rank 0 reconnected and resent after the last stored event" \
    || bad "no reconnect in the log: $(grep 'rank 0' "$tmp/serve.log")"
python3 - "$tmp/job.jsonl" <<'PY' && ok "event log: numbers 1..N and every step of both waves exactly once" || bad "event log after restart"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert [e["event"] for e in ev] == list(range(1, len(ev) + 1)), "numbers"
steps = [(e["wave"], e["step"]) for e in ev if e["kind"] == "step"]
assert steps == [(w, s) for w in range(2) for s in range(1, 4001)], (len(steps), steps[:3])
assert ev[-1]["state"] == "DONE"
PY
melbo fetch "$job" -o "$tmp/job.bank.safetensors" 2>/dev/null && ok "bank of the recovered job fetched" || bad "fetch after restart"
melbo watch "$first" --json > "$tmp/first2.jsonl"
cmp -s "$tmp/first.jsonl" "$tmp/first2.jsonl" && ok "earlier job's $first_events events intact" || bad "earlier events changed"
melbo fetch "$first" -o "$tmp/first.bank.safetensors" 2>/dev/null && ok "earlier bank intact" || bad "earlier bank lost"

# 4. A job whose ranks die while the coordinator is down is FAILED after the restart.
job3=$(melbo submit "${job_args[@]}" --vectors 1 --steps 1000000 --no-generate)
wait_state "$job3" RUNNING 30 || bad "job3 never RUNNING"
kill -9 "$coord_pid"; wait "$coord_pid" 2>/dev/null
for p in $(pgrep -f -- "$(jobdir "$job3")"); do kill -9 "$p" 2>/dev/null; done
sleep 0.5
coord_start "$addr"
wait_state "$job3" FAILED 10 && ok "ranks dead during the outage: FAILED after restart" || bad "job3 not FAILED"

# 5. A rank connection with a wrong job secret is refused.
printf 'wrongsecret\n%s\n' "$MELBO_COORD_FINGERPRINT" > "$tmp/wrong.secret"  # the right pin
out=$(MELBO_COORD_ADDR=$addr MELBO_JOB_ID=$job3 MELBO_JOB_SECRET_FILE="$tmp/wrong.secret" \
      MELBO_LINK_FINISH_TIMEOUT=3 melbo-rank train "${job_args[@]}" --vectors 1 --steps 2 --no-generate \
      --out "$tmp/x.bank.safetensors" 2>&1)
grep -q "refused job" <<<"$out" && ok "wrong job secret refused: $(grep -o 'refused job.*' <<<"$out" | head -1)" \
    || bad "wrong secret: $out"
grep -q "wrong job secret" "$tmp/serve.log" && ok "coordinator logged the refusal" || bad "no refusal logged"
exit $fail
