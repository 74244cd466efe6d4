#!/usr/bin/env bash
# tests/slurm/test_slurm_inject.sh BUILD_DIR GOLDEN_DIR TMPDIR
# Issue 20: under `--launcher slurm` every user value is data, never script text. The coordinator
# runs stub sbatch / squeue / scancel programs (slurm.sbatch= ... in coord.conf) that record their
# argv (NUL-separated), environment and the job.sbatch they were given:
#   1. hostile Slurm fields (--partition $'gpu\nid > FILE', --account 'a;touch FILE',
#      --constraint '$(touch FILE)', --time with a newline, --qos with a space, --name with an
#      escape sequence) are refused at submit naming the field; nothing is queued, sbatch never
#      runs, no FILE appears
#   2. two jobs with different partitions, accounts, QoS, constraints, time limits, names and
#      prompts render the same script (but for the job id): the settings reach sbatch as single
#      argv words (--partition=..., ...), the prompts reach neither the script nor sbatch's argv
#   3. sbatch's environment has no MELBO_TOKEN (the coordinator was started with it)
set -u
bin=$1 golden=$2 tmp=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../service/lib.sh"
expect() { # DESC STATUS NEEDLE CMD...
    local what=$1 want=$2 needle=$3; shift 3
    out=$("$@" 2>&1); st=$?
    if [ "$st" = "$want" ] && grep -qF -- "$needle" <<<"$out"; then ok "$what (exit $st): $(head -c 150 <<<"$out")"
    else bad "$what: exit $st (want $want): $out"; fi
}
coord_init
stub="$tmp/stub"
mkdir -p "$stub"
cat > "$stub/sbatch" <<EOF
#!/bin/bash
# records argv, environment and the script; answers like sbatch --parsable
n=\$(( \$(ls "$stub" | grep -c '^argv\.') + 100 ))
printf '%s\0' "\$@" > "$stub/argv.\$n"
env > "$stub/env.\$n"
cp "\${@: -1}" "$stub/script.\$n"
echo "\$n"
EOF
cat > "$stub/squeue" <<EOF
#!/bin/bash
for f in "$stub"/argv.*; do [ -e "\$f" ] && echo "\${f##*.}|PENDING|Priority"; done
exit 0
EOF
printf '#!/bin/bash\nexit 0\n' > "$stub/scancel"
chmod +x "$stub"/*
printf 'slurm.sbatch=%s\nslurm.squeue=%s\nslurm.scancel=%s\n' "$stub/sbatch" "$stub/squeue" "$stub/scancel" \
    >> "$tmp/state/coord.conf"
serve_args=(--launcher slurm)
coord_start   # with MELBO_TOKEN in its environment (coord_init exports it)

# ---- 1. hostile fields refused at submit ----
pw="$tmp/pwned"
b=(--model "$model" --prompt-ids "$ids" --source-layer 1 --target-layer 4 --radius 4 --steps 2)
expect "--partition with a newline and a command" 1 "--partition 'gpu\\x0aid > $pw'" melbo submit "${b[@]}" --partition $'gpu\nid > '"$pw"
expect "--account with ';'" 1 "--account" melbo submit "${b[@]}" --account "a;touch $pw"
expect "--constraint with \$(...)" 1 "--constraint" melbo submit "${b[@]}" --constraint "\$(touch $pw)"
expect "--time with a newline" 1 "--time" melbo submit "${b[@]}" --time $'10:00\n#SBATCH --wrap=id'
expect "--qos with a space" 1 "--qos" melbo submit "${b[@]}" --qos "high prio"
expect "--name with an escape sequence" 1 "--name 'x\\x1b[2J'" melbo submit "${b[@]}" --name $'x\e[2J'
sleep 1
[ ! -e "$pw" ] && ok "no command of a hostile value ran" || bad "$pw exists"
[ -z "$(ls "$stub" | grep '^argv\.')" ] && ok "sbatch never ran for a refused job" || bad "sbatch ran: $(ls "$stub")"
[ "$(melbo ls --json)" = "[]" ] && ok "nothing was queued" || bad "queued: $(melbo ls)"

# ---- 2. the script does not change with user values ----
ja=$(melbo submit --model "$model" --prompt "PROMPT-A" --source-layer 1 --target-layer 4 --radius 4 --steps 2 \
     --partition gpu --account labA --qos normal --constraint 'a100|h100' --time 30:00 --name 'run one') || bad "submit A"
jb=$(melbo submit --model "$model" --prompt "PROMPT-B 'q' \$(id) @RANK_ARGS@" --source-layer 1 --target-layer 4 \
     --radius 4 --steps 2 --partition debug,gpu --account labB --qos high --constraint h100 --time 1-00:00:00 \
     --name 'two (b)' --gpus 0) || bad "submit B"
for _ in $(seq 100); do [ -e "$stub/script.101" ] && break; sleep 0.1; done
if [ -e "$stub/script.100" ] && [ -e "$stub/script.101" ]; then
    sa=$(sed "s|jobs/$ja\b|jobs/ID|g; s|MELBO_JOB_ID=$ja\b|MELBO_JOB_ID=ID|" "$stub/script.100")
    sb=$(sed "s|jobs/$jb\b|jobs/ID|g; s|MELBO_JOB_ID=$jb\b|MELBO_JOB_ID=ID|" "$stub/script.101")
    [ "$sa" = "$sb" ] && ok "jobs $ja and $jb: the same script but for the job id" \
        || bad "the scripts differ: $(diff <(echo "$sa") <(echo "$sb"))"
    grep -qE 'PROMPT|labA|labB|a100|normal|30:00|run one|#SBATCH' "$stub/script.100" "$stub/script.101" \
        && bad "a user value is in a script: $(grep -nE 'PROMPT|labA|labB|a100|normal|30:00|run one|#SBATCH' "$stub"/script.*)" \
        || ok "no user value and no #SBATCH line in the scripts"
    mapfile -d '' av < "$stub/argv.100"
    want=("--partition=gpu" "--account=labA" "--qos=normal" "--constraint=a100|h100" "--time=30:00"
          "--job-name=melbo-$ja" "--parsable")
    miss=0
    for w in "${want[@]}"; do printf '%s\n' "${av[@]}" | grep -qxF -- "$w" || { miss=1; echo "  missing argv word: $w"; }; done
    [ $miss = 0 ] && [ "${av[-1]}" = job.sbatch ] && ok "sbatch argv: ${av[*]}" || bad "sbatch argv: ${av[*]}"
    tr '\0' '\n' < "$stub/argv.101" | grep -qxF -- "--partition=debug,gpu" && ok "job $jb: --partition=debug,gpu, one word" \
        || bad "argv of B: $(tr '\0' ' ' < "$stub/argv.101")"
    grep -qF PROMPT "$stub/argv.100" "$stub/argv.101" && bad "a prompt is on sbatch's command line" \
        || ok "no prompt on sbatch's command line"
    grep -qF "PROMPT-B 'q' \$(id) @RANK_ARGS@" "$tmp/state/jobs/$jb/rank.args" && [ "$(stat -c %a "$tmp/state/jobs/$jb/rank.args")" = 600 ] \
        && ok "the prompt is in the job's 0600 rank.args, verbatim" || bad "rank.args of $jb"
    grep -q '^MELBO_TOKEN=' "$stub/env.100" && bad "sbatch's environment has MELBO_TOKEN" \
        || ok "sbatch's environment has no MELBO_TOKEN ($(wc -l < "$stub/env.100") variables kept)"
else
    bad "sbatch was not run for both jobs: $(ls "$stub"); $(tail -3 "$tmp/serve.log")"
fi
wait_state "$ja" QUEUED 10 && ok "job $ja is QUEUED in Slurm" || bad "job $ja: $(melbo ls)"
melbo cancel "$ja" >/dev/null; melbo cancel "$jb" >/dev/null
exit $fail
