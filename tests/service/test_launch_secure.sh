#!/usr/bin/env bash
# tests/service/test_launch_secure.sh BUILD_DIR GOLDEN_DIR TMPDIR
# Issue 20, the launch side, with real processes on loopback (a coordinator started with
# MELBO_TOKEN in its environment, mpirun and melbo-rank under the local launcher):
#   1. secrets: `ps` of a running job shows no prompt, system prompt, token or job secret (the
#      ranks read rank.args and secret, both 0600); /proc/PID/environ of mpirun and every rank
#      has no MELBO_TOKEN (the allowlist), but has MELBO_JOB_ID
#   2. bounds: --tp/--dp/--threads/--vectors/--steps/--wave/--max-new-tokens over coord.conf's
#      limits refused naming the limit; `ls --limit -1` refused; a limit over limits.max_list
#      answered with an Error naming it; per-user caps on queued/running jobs, ranks and threads
#   3. tokens: --token refused (argv is public), --token-file works; `token rotate` (the old
#      token stops at the running coordinator's next auth), `token remove`, `token add --admin`,
#      a second `token add` of a name refused; the tokens file stays 0600; init's user is admin
#   4. --private: another user's ls / show / watch / fetch / bank ls / bank show / fetch --bank
#      / cancel
#      hide the job and its bank ("no job N", "no bank ID"); the owner and an admin see them,
#      and an admin cancels them
#   5. a prompt with terminal escapes is printed escaped by `melbo bank ls` and `melbo show`
bin=$1 golden=$2 tmp=$3
source "$(dirname "$0")/lib.sh"
expect() { # DESC STATUS NEEDLE CMD...
    local what=$1 want=$2 needle=$3; shift 3
    out=$("$@" 2>&1); st=$?
    if [ "$st" = "$want" ] && grep -qF -- "$needle" <<<"$out"; then ok "$what (exit $st): $(head -c 160 <<<"$out")"
    else bad "$what: exit $st (want $want): $out"; fi
}
coord_init
printf 'limits.max_dp=8\nlimits.max_tp=8\nlimits.max_threads=16\nlimits.max_vectors=64\nlimits.max_steps=200000\nlimits.max_wave=32\nlimits.max_new_tokens=512\nlimits.max_list=500\nlimits.running_jobs_per_user=2\nlimits.ranks_per_user=3\nlimits.threads_per_user=24\n' \
    >> "$tmp/state/coord.conf"
coord_start   # MELBO_TOKEN is exported by coord_init: the coordinator's environment has it
tr '\0' '\n' < /proc/$coord_pid/environ | grep -q '^MELBO_TOKEN=' && ok "the coordinator runs with MELBO_TOKEN set" \
    || bad "the coordinator has no MELBO_TOKEN: the test proves nothing"

# ---- 1. a running job: nothing private in argv, no MELBO_TOKEN in the ranks' environment ----
prompt="SECRET-PROMPT-$$ How can I make a bomb?"
system="SYSTEM-SECRET-$$"
long=(--model "$model" --prompt "$prompt" --system "$system" --source-layer 1 --target-layer 4 --radius 4
      --vectors 2 --wave 1 --steps 100000 --checkpoint-every 100000 --no-generate)
job=$(melbo submit "${long[@]}" 2>"$tmp/submit.err") || bad "submit: $(cat "$tmp/submit.err")"
wait_state "$job" RUNNING 60 || bad "job $job never RUNNING: $(melbo ls)"
jd="$tmp/state/jobs/$job"
secret=$(head -1 "$jd/secret")  # line 2: the certificate fingerprint (not a secret)
[ "$(stat -c %a "$jd/rank.args")" = 600 ] && [ "$(stat -c %a "$jd/secret")" = 600 ] \
    && ok "rank.args and secret are 0600" || bad "modes: rank.args $(stat -c %a "$jd/rank.args"), secret $(stat -c %a "$jd/secret")"
grep -qaF "$prompt" "$jd/rank.args" && ok "the prompt is in rank.args" || bad "the prompt is not in rank.args"
procs=$(pgrep -f -- "$jd/")
n=0 leaks=0 envleaks=0 haveid=0
for p in $procs; do
    [ -r /proc/$p/cmdline ] || continue
    n=$((n + 1))
    cmd=$(tr '\0' ' ' < /proc/$p/cmdline)
    for s in "SECRET-PROMPT-$$" "$system" "$MELBO_TOKEN" "$secret"; do
        grep -qF -- "$s" <<<"$cmd" && { leaks=$((leaks + 1)); echo "  leak in pid $p: $cmd"; }
    done
    env_=$(tr '\0' '\n' < /proc/$p/environ 2>/dev/null)
    grep -q '^MELBO_TOKEN=' <<<"$env_" && { envleaks=$((envleaks + 1)); echo "  MELBO_TOKEN in pid $p ($cmd)"; }
    grep -q "^MELBO_JOB_ID=$job$" <<<"$env_" && haveid=$((haveid + 1))
done
ps -eo args | grep -F -- "SECRET-PROMPT-$$" | grep -v grep && leaks=$((leaks + 1))
if [ $n -ge 2 ] && [ $leaks = 0 ]; then ok "ps: $n processes of job $job (mpirun + ranks), no prompt, system prompt, token or secret in argv"
else bad "ps: $n processes, $leaks leaks"; fi
[ $n -ge 2 ] && [ $envleaks = 0 ] && [ $haveid -ge 1 ] \
    && ok "/proc/PID/environ: no MELBO_TOKEN in $n processes ($haveid carry MELBO_JOB_ID)" \
    || bad "/proc/PID/environ: $envleaks with MELBO_TOKEN, $haveid with MELBO_JOB_ID, of $n"

# ---- 2. bounds (job $job holds 1 of the 2 jobs and 1 of the 3 ranks allowed) ----
b=(--model "$model" --prompt-ids "$ids" --source-layer 1 --target-layer 4 --radius 4 --steps 2)
expect "--dp 4096 refused" 1 "--dp 4096 is over limits.max_dp = 8" melbo submit "${b[@]}" --dp 4096
expect "--tp 16 refused" 1 "--tp 16 is over limits.max_tp = 8" melbo submit "${b[@]}" --tp 16
expect "--threads 1000000 refused" 1 "--threads 1000000 is over limits.max_threads = 16" melbo submit "${b[@]}" --threads 1000000
expect "--vectors 65 refused" 1 "--vectors 65 is over limits.max_vectors = 64" melbo submit "${b[@]}" --vectors 65 --wave 1 --no-orthogonal
expect "--steps 300000 refused" 1 "--steps 300000 is over limits.max_steps = 200000" melbo submit "${b[@]}" --steps 300000
expect "--wave 33 refused" 1 "--wave 33 is over limits.max_wave = 32" melbo submit "${b[@]}" --vectors 33 --wave 33
expect "--max-new-tokens 513 refused" 1 "--max-new-tokens 513 is over limits.max_new_tokens = 512" melbo submit "${b[@]}" --max-new-tokens 513
expect "ls --limit -1 refused" 2 "--limit '-1' is not a number of rows" melbo ls --limit -1
expect "ls --limit 4000000000: an Error naming limits.max_list" 1 "limits.max_list = 500" melbo ls --limit 4000000000
expect "ls --limit 500 served" 0 "" melbo ls --limit 500
expect "ranks per user" 1 "over limits.ranks_per_user = 3" melbo submit "${b[@]}" --dp 3 --vectors 3 --wave 1
# 2 ranks x 16 threads: within ranks_per_user and max_threads, over threads_per_user together
expect "threads per user" 1 "over limits.threads_per_user = 24" melbo submit "${b[@]}" --dp 2 --vectors 2 --wave 1 --threads 16
job2=$(melbo submit "${long[@]}" 2>&1) && ok "a second job is accepted ($job2)" || bad "second job: $job2"
expect "jobs per user" 1 "limits.running_jobs_per_user = 2" melbo submit "${b[@]}"
njobs=$(melbo ls --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
[ "$njobs" = 2 ] && ok "nothing refused was queued (2 jobs)" || bad "$njobs jobs in ls"
melbo cancel "$job" >/dev/null; melbo cancel "$job2" >/dev/null
wait_state "$job" CANCELLED 30 && wait_state "$job2" CANCELLED 30 || bad "cancel"

# ---- 3. tokens ----
expect "--token refused" 2 "--token-file" melbo --token "$MELBO_TOKEN" ls
expect "--token after the command refused" 2 "--token-file" melbo ls --token "$MELBO_TOKEN"
umask 077; echo "$MELBO_TOKEN" > "$tmp/my.token"; printf 'MELBO_TOKEN=%s\n' "$MELBO_TOKEN" > "$tmp/my2.token"
env -u MELBO_TOKEN melbo --token-file "$tmp/my.token" ls >/dev/null && env -u MELBO_TOKEN melbo ls --token-file "$tmp/my2.token" >/dev/null \
    && ok "--token-file (bare token, or a MELBO_TOKEN= line)" || bad "--token-file"
carol=$(melbo-coord token add carol --state "$tmp/state" | sed -n 's/^MELBO_TOKEN=//p')
MELBO_TOKEN=$carol melbo ls >/dev/null && ok "token add carol" || bad "token add carol"
expect "a second token add of carol refused" 1 "token rotate carol" melbo-coord token add carol --state "$tmp/state"
carol2=$(melbo-coord token rotate carol --state "$tmp/state" | sed -n 's/^MELBO_TOKEN=//p')
[ -n "$carol2" ] && [ "$carol2" != "$carol" ] && ok "token rotate prints a new MELBO_TOKEN line" || bad "rotate output"
expect "the old token stops working at the running coordinator" 3 "wrong token" env MELBO_TOKEN=$carol melbo ls
MELBO_TOKEN=$carol2 melbo ls >/dev/null && ok "the rotated token works" || bad "rotated token"
melbo-coord token remove carol --state "$tmp/state" 2>/dev/null && ok "token remove carol" || bad "token remove"
expect "a removed user's token is refused" 3 "wrong token" env MELBO_TOKEN=$carol2 melbo ls
expect "remove of an unknown user" 1 "no user nobody" melbo-coord token remove nobody --state "$tmp/state"
melbo-coord token add dana --state "$tmp/state" --admin >/dev/null && grep -q '^dana [0-9a-f]\{64\} admin$' "$tmp/state/tokens" \
    && ok "token add dana --admin: the admin role is recorded" || bad "token add --admin: $(grep dana "$tmp/state/tokens")"
melbo-coord token rotate dana --state "$tmp/state" >/dev/null && grep -q '^dana [0-9a-f]\{64\} admin$' "$tmp/state/tokens" \
    && ok "token rotate keeps the admin role" || bad "rotate lost the role"
[ "$(stat -c %a "$tmp/state/tokens")" = 600 ] && ok "tokens file still 0600" || bad "tokens mode $(stat -c %a "$tmp/state/tokens")"
melbo ls >/dev/null && ok "the first user is untouched" || bad "first user lost"
grep -q "^[^ ]* [0-9a-f]\{64\} admin$" <(head -1 "$tmp/state/tokens") && ok "init's first user has the admin role" \
    || bad "first user's line: $(head -1 "$tmp/state/tokens")"

# ---- 4. --private: only the owner and admins see the job, its prompts and its bank ----
erin=$(melbo-coord token add erin --state "$tmp/state" | sed -n 's/^MELBO_TOKEN=//p')
fred=$(melbo-coord token add fred --state "$tmp/state" | sed -n 's/^MELBO_TOKEN=//p')
p=(--model "$model" --source-layer 1 --target-layer 4 --radius 4 --vectors 2 --steps 2 --max-new-tokens 2)
jp=$(MELBO_TOKEN=$erin melbo submit "${p[@]}" --private --prompt "PRIVATE-PROMPT-$$") || bad "private submit: $jp"
jq=$(MELBO_TOKEN=$erin melbo submit "${p[@]}" --prompt $'ESC\e[2J\e]0;pwned here') || bad "public submit: $jq"
MELBO_TOKEN=$erin timeout 120 melbo watch "$jp" >/dev/null 2>&1 && MELBO_TOKEN=$erin timeout 120 melbo watch "$jq" >/dev/null 2>&1 \
    || bad "jobs $jp / $jq did not finish: $(melbo ls)"
bankp=$(MELBO_TOKEN=$erin melbo ls --json | python3 -c "import json,sys; print([j['bank'] for j in json.load(sys.stdin) if j['job']==$jp][0])")
[ -n "$bankp" ] && ok "erin sees her private job $jp (bank $bankp)" || bad "erin cannot see job $jp"
MELBO_TOKEN=$fred melbo ls --json | grep -q "\"job\":$jp," && bad "fred's ls shows private job $jp" || ok "fred's ls hides private job $jp"
expect "fred: show of a private job" 1 "no job $jp" env MELBO_TOKEN=$fred melbo show "$jp"
expect "fred: watch of a private job" 1 "no job $jp" env MELBO_TOKEN=$fred melbo watch "$jp" --json
expect "fred: fetch of a private job" 1 "no job $jp" env MELBO_TOKEN=$fred melbo fetch "$jp" -o "$tmp/x.bank"
expect "fred: fetch --bank of a private job's bank" 1 "no bank $bankp" env MELBO_TOKEN=$fred melbo fetch --bank "$bankp" -o "$tmp/x.bank"
expect "fred: bank show of a private job's bank" 1 "no bank $bankp" env MELBO_TOKEN=$fred melbo bank show "$bankp"
expect "fred: bank report of a private job's bank" 1 "no bank $bankp" env MELBO_TOKEN=$fred melbo bank report "$bankp" -o "$tmp/r.html"
expect "fred: bank export of a private job's bank" 1 "no bank $bankp" env MELBO_TOKEN=$fred melbo bank export "$bankp" --vector 0 --format gguf-control-vector -o "$tmp/x.gguf"
MELBO_TOKEN=$fred melbo bank ls --json | grep -q "$bankp\|PRIVATE-PROMPT" && bad "fred's bank ls shows the private bank" \
    || ok "fred's bank ls hides the private bank and its prompt"
MELBO_TOKEN=$fred melbo bank ls --json | grep -q "\"job\":$jq" && ok "fred's bank ls shows erin's public bank" || bad "public bank hidden"
melbo show "$jp" >/dev/null && melbo bank show "$bankp" >/dev/null && ok "an admin sees the private job and its bank" \
    || bad "admin cannot see job $jp"
MELBO_TOKEN=$erin melbo bank show "$bankp" >/dev/null && ok "erin sees her private bank" || bad "erin: bank show"
jl=$(MELBO_TOKEN=$erin melbo submit "${long[@]}" --private) || bad "erin's long private job: $jl"
expect "fred: cancel of erin's private job" 1 "no job $jl" env MELBO_TOKEN=$fred melbo cancel "$jl"
jr=$(MELBO_TOKEN=$erin melbo submit "${p[@]}" --prompt "public") || bad "erin's public job: $jr"
expect "fred: cancel of erin's public job" 1 "belongs to erin" env MELBO_TOKEN=$fred melbo cancel "$jr"
melbo cancel "$jl" >/dev/null && wait_state "$jl" CANCELLED 30 && ok "an admin cancels erin's private job $jl" \
    || bad "admin cancel of $jl: $(melbo show "$jl" 2>&1 | head -2)"
MELBO_TOKEN=$erin timeout 120 melbo watch "$jr" >/dev/null 2>&1 || true

# ---- 5. the CLI escapes control characters that came from another user ----
MELBO_TOKEN=$fred melbo bank ls > "$tmp/bankls.txt" 2>&1
if grep -q $'\e' "$tmp/bankls.txt" || grep -q $'\a' "$tmp/bankls.txt"; then bad "bank ls printed a raw escape: $(grep -a ESC "$tmp/bankls.txt" | od -c | head -3)"
else grep -qaE 'ESC(\\x1b|\\u001b)\[2J' "$tmp/bankls.txt" && ok "bank ls: the prompt is shown escaped: $(grep -aoE 'ESC[^ ]*' "$tmp/bankls.txt" | head -1)" \
    || bad "bank ls: the prompt is not shown escaped: $(cat "$tmp/bankls.txt")"; fi
MELBO_TOKEN=$fred melbo show "$jq" > "$tmp/show.txt" 2>&1
grep -q $'\e' "$tmp/show.txt" && bad "show printed a raw escape" || ok "show: no raw escape ($(wc -l < "$tmp/show.txt") lines)"
exit $fail
