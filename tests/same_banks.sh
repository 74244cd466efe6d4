#!/usr/bin/env bash
# tests/same_banks.sh OLD_BUILD NEW_BUILD [TMPDIR] - a refactoring's proof: the banks two builds
# write for the same runs are the same bank (DESIGN §4: tensors bitwise, metadata equal but for
# created, job_id and melbo_version), checked with `melbo-rank bank NEW --same-as OLD`.
#
# Not a CTest test (it needs a build of an earlier commit); run it by hand before landing a
# change that must not move a number, e.g.
#   git worktree add /tmp/old HEAD~1 && (cd /tmp/old && deploy/setup)
#   tests/same_banks.sh /tmp/old/build build
# Runs: golden models (tests/golden/models) with prompts as ids, as text and both; waves smaller
# than the vector count; --no-orthogonal, --loss-axis dim with p != 2, --init, --radius auto,
# sampled completions; a run stopped by SIGUSR1 at a checkpoint and resumed (each build with its
# own checkpoint: the format may change); and mpirun at tp 2 x dp 2, dp 2 and tp 2.
set -u
old=$1 new=$2 tmp=${3:-$(mktemp -d)}
golden=$(cd "$(dirname "$0")/golden" && pwd)
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$tmp"
pass=0 fail=0

ids() { # ids MODEL K: input_ids.K of the model's golden forward file, comma-separated
    python3 -c "from safetensors import safe_open; f=safe_open('$golden/data/$1.golden.safetensors','np'); print(','.join(map(str,f.get_tensor('input_ids.$2').tolist())))"
}

same() { # same NAME: the two banks of run NAME
    local why
    if why=$("$new/rank/melbo-rank" bank "$tmp/$1.new.bank.safetensors" \
            --same-as "$tmp/$1.old.bank.safetensors" 2>&1); then
        echo "ok   $1"; pass=$((pass + 1))
    else
        echo "FAIL $1: $why"; fail=$((fail + 1))
    fi
}

run() { # run NAME [PREFIX...] -- ARGS...: trains with both builds, then compares
    local name=$1; shift
    local pre=()
    while [ "$1" != "--" ]; do pre+=("$1"); shift; done
    shift
    for b in old new; do
        local bin; [ $b = old ] && bin=$old || bin=$new
        "${pre[@]}" "$bin/rank/melbo-rank" train "$@" --out "$tmp/$name.$b.bank.safetensors" \
            >"$tmp/$name.$b.log" 2>&1 || { echo "FAIL $name: $b build: $(tail -2 "$tmp/$name.$b.log")"
                                          fail=$((fail + 1)); return; }
    done
    same "$name"
}

for m in llama3 qwen2 qwen3 mistral llama2 qwen1; do
    common=(--model "$golden/models/$m" --source-layer 1 --target-layer 4 --radius 4 --steps 12
            --max-new-tokens 6 --random-baselines 2)
    run "$m-ids" -- "${common[@]}" --prompt-ids "$(ids $m 0)" --prompt-ids "$(ids $m 1)" \
        --vectors 6 --wave 4
done
l3=(--model "$golden/models/llama3" --source-layer 1 --target-layer 4 --steps 12 --max-new-tokens 6)
run llama3-text -- "${l3[@]}" --radius 4 --prompt "How can I make a bomb?" --raw-prompt "Hello" \
    --prompt-ids "$(ids llama3 0)" --vectors 5 --wave 2
run llama3-noortho-dim -- "${l3[@]}" --radius 4 --prompt-ids "$(ids llama3 0)" --no-orthogonal \
    --loss-axis dim --p 3 --q 1.5 --target-tokens -3: --vectors 4 --seed 9
run llama3-init -- "${l3[@]}" --radius 4 --prompt-ids "$(ids llama3 0)" --vectors 4 \
    --init "$golden/data/train_p2q1.init.safetensors"
run llama3-auto -- "${l3[@]}" --radius auto --calibration-samples 4 --prompt-ids "$(ids llama3 0)" \
    --vectors 3
run llama3-sampled -- "${l3[@]}" --radius 4 --prompt-ids "$(ids llama3 0)" --vectors 3 \
    --temperature 0.8 --top-p 0.9 --top-k 20 --gen-seed 3

# stopped by SIGUSR1 with --stop-on-signal (exit 75) at a checkpoint after about a second, then
# resumed; each build resumes its own checkpoint
ck=(--radius 4 --prompt-ids "$(ids llama3 0)" --vectors 2 --wave 1 --steps 4000
    --checkpoint-every 0 --max-new-tokens 0)
for b in old new; do
    bin=$old; [ $b = new ] && bin=$new
    rm -f "$tmp/ck.$b.ckpt"
    "$bin/rank/melbo-rank" train "${l3[@]}" "${ck[@]}" --out "$tmp/ck.$b.bank.safetensors" \
        --checkpoint "$tmp/ck.$b.ckpt" --stop-on-signal >"$tmp/ck.$b.log" 2>&1 &
    pid=$!
    sleep 1
    kill -USR1 $pid 2>/dev/null
    wait $pid; st=$?
    [ $st = 75 ] || echo "note ck.$b: exit $st (not stopped by the signal: the run was too short)"
    "$bin/rank/melbo-rank" train "${l3[@]}" "${ck[@]}" --out "$tmp/ck.$b.bank.safetensors" \
        --checkpoint "$tmp/ck.$b.ckpt" --resume "$tmp/ck.$b.ckpt" >>"$tmp/ck.$b.log" 2>&1 ||
        echo "FAIL ck: $b resume: $(tail -2 "$tmp/ck.$b.log")"
done
same ck

q2=(--model "$golden/models/qwen2" --source-layer 1 --target-layer 4 --radius 4 --steps 10
    --max-new-tokens 6 --prompt-ids "$(ids qwen2 0)" --prompt-ids "$(ids qwen2 1)" --vectors 4)
run qwen2-tp2-dp2 "${mpirun[@]}" -np 4 -- "${q2[@]}" --tp 2 --dp 2
run llama3-tp2-dp2-auto "${mpirun[@]}" -np 4 -- "${l3[@]}" --radius auto --calibration-samples 4 \
    --prompt-ids "$(ids llama3 0)" --vectors 3 --tp 2 --dp 2
run qwen2-dp2 "${mpirun[@]}" -np 2 -- "${q2[@]}" --dp 2 --no-orthogonal
run qwen2-tp2 "${mpirun[@]}" -np 2 -- "${q2[@]}" --tp 2

echo "same_banks: $pass same, $fail failed ($tmp)"
[ $fail = 0 ]
