#!/usr/bin/env bash
# tests/gpu/train_compare.sh MELBO_RANK GOLDEN_DIR TMPDIR [options]
# `melbo-rank train` on device B against device A (default: CUDA against the CPU reference) on
# every golden tiny model (GOLDEN_DIR/models/*), with the settings of make_train_goldens.py's
# "2prompts" case (4 vectors x 25 steps, wave 1, orthogonal, s 1, t 4, R 4, p 2, q 1, the raw
# draws of train_p2q1.init.safetensors, the model's two golden prompts), plus greedy completions
# of 4 new tokens and one random baseline. Per model:
#   fp32    B --dtype fp32 vs A: vectors, objective, random vectors rel <= 1e-4, completions
#           identical
#   bf16    B --dtype bf16 vs A (fp32): every vector's cosine > 0.99
#   tp 2    mpirun -np 2 B --dtype fp32 --tp 2 (the two ranks share the device through the MPI
#           collectives) vs the tp 1 run of B: rel <= 1e-4, completions identical
# One `ok   ...` / `FAIL ...` line per check (tests/gpu/compare_banks.py), then a count. Models run
# in parallel (--jobs), their lines are printed in model order.
#
# Options:
#   --device-a DEV --device-b DEV   cpu, cuda, or default (no --device/--dtype flag at all: the
#                                   binary's own choice). Default: --device-a cpu --device-b cuda.
#                                   --dtype is passed only to cuda runs.
#   --mpiexec PATH                  (default: mpirun on PATH); --no-tp skips the tp 2 check
#   --models "m1 m2 ..."            (default: every directory in GOLDEN_DIR/models)
#   --jobs N                        models at a time (default: nproc / 4, at least 1)
# Environment:
#   MELBO_GPU_TP_ARGS  extra arguments of the tp 2 run. Unset: if `train --help` names an option
#                      on a line that mentions both MPI and NCCL (the collectives' choice), the
#                      script passes that option with the value `mpi`, since NCCL refuses two
#                      ranks on one GPU. The ranks also get MELBO_COLLECTIVES=mpi.
#   OMP_NUM_THREADS    (default 2)
# Exit status: 0 all passed, 1 a check failed, 77 a cuda device was asked for and `nvidia-smi -L`
# lists no GPU (ctest SKIP_RETURN_CODE), 2 bad usage.
set -u
if [ $# -lt 3 ]; then
    echo "usage: $0 MELBO_RANK GOLDEN_DIR TMPDIR [--device-a DEV] [--device-b DEV] [--mpiexec PATH] [--no-tp] [--models LIST] [--jobs N]" >&2
    exit 2
fi
rank=$1 golden=$2 tmp=$3
shift 3
dev_a=cpu dev_b=cuda mpiexec="" do_tp=1 models="" jobs=$(($(nproc) / 4))
[ "$jobs" -ge 1 ] || jobs=1
while [ $# -gt 0 ]; do
    case "$1" in
    --device-a) dev_a=$2; shift 2 ;;
    --device-b) dev_b=$2; shift 2 ;;
    --mpiexec) mpiexec=$2; shift 2 ;;
    --no-tp) do_tp=0; shift ;;
    --models) models=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
    esac
done
for dev in "$dev_a" "$dev_b"; do
    case "$dev" in cpu|cuda|default) ;; *) echo "$0: device must be cpu, cuda or default, not $dev" >&2; exit 2 ;; esac
done
if [ "$dev_a" = cuda ] || [ "$dev_b" = cuda ]; then
    if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
        echo "skip: a cuda device was asked for and nvidia-smi -L lists no GPU"
        exit 77
    fi
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
compare=(python3 "$here/compare_banks.py")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
rm -rf "$tmp" && mkdir -p "$tmp"
if [ -z "$models" ]; then
    for d in "$golden"/models/*/; do models="$models $(basename "$d")"; done
fi
init="$golden/data/train_p2q1.init.safetensors"

# dev_args DEVICE DTYPE: the flags that select the backend
dev_args() {
    case "$1" in
    cpu) echo "--device cpu" ;;
    cuda) echo "--device cuda --dtype $2" ;;
    default) echo "" ;;
    esac
}
compared() { # compared OUTPUT STATUS: compare_banks.py's lines, and a FAIL if it failed silently
    cat "$1"
    if [ "$2" != 0 ] && ! grep -q '^FAIL ' "$1"; then echo "FAIL compare_banks.py status $2"; fi
}
train() { # train LOG OUT ARGS...: runs melbo-rank train; the error of a failed run
    local log=$1 out=$2; shift 2
    if "$rank" "$@" --out "$out" > "$log" 2>&1 && [ -s "$out" ]; then return 0; fi
    echo "     $(tail -3 "$log" | tr '\n' ' ')"
    return 1
}

# the tp 2 run must use the MPI collectives: NCCL refuses two ranks on one GPU
tp_extra=()
if [ -n "${MELBO_GPU_TP_ARGS+x}" ]; then
    read -r -a tp_extra <<<"$MELBO_GPU_TP_ARGS"
else
    opt=$("$rank" train --help 2>&1 | grep -i nccl | grep -i mpi | grep -oE -- '--[a-z][a-z-]*' | head -1)
    [ -n "$opt" ] && tp_extra=("$opt" mpi)
fi
head_lines=()
if [ $do_tp = 1 ]; then
    [ -n "$mpiexec" ] || mpiexec=$(command -v mpirun || command -v mpiexec || true)
    if [ -z "$mpiexec" ]; then
        head_lines+=("FAIL no mpirun/mpiexec on PATH for the tp 2 check")
        do_tp=0
    else
        mpirun=("$mpiexec" --allow-run-as-root --oversubscribe --bind-to none -x MELBO_COLLECTIVES=mpi
                -x OMP_NUM_THREADS)
        echo "     tp 2 runs: ${mpirun[*]} -np 2 ... --tp 2 ${tp_extra[*]:-(no collectives option found in train --help)}"
    fi
fi
echo "     A = $dev_a, B = $dev_b; settings: 4 vectors x 25 steps, wave 1, s 1, t 4, R 4, p 2, q 1, 2 prompts; $jobs model(s) at a time"
for l in "${head_lines[@]}"; do echo "$l"; done

one_model() { # one_model NAME: every check of one model, its lines on stdout
    local m=$1 mdir="$golden/models/$1" ids0="" ids1="" g f lab msg
    # the model's golden prompts; a variant (llama3_bf16, qwen3_sharded) uses its base model's
    for g in "$m" "${m%%_*}"; do
        f="$golden/data/$g.golden.safetensors"
        if [ -f "$f" ]; then
            ids0=$("${compare[@]}" --ids "$f" input_ids.0) && ids1=$("${compare[@]}" --ids "$f" input_ids.1) && break
        fi
    done
    if [ -z "$ids0" ] || [ -z "$ids1" ]; then
        echo "FAIL $m: no golden prompts (data/$m.golden.safetensors or data/${m%%_*}.golden.safetensors)"
        return
    fi
    # (target tokens: the default, all; never an argument ":", which mpirun takes for its MPMD
    # separator)
    local args=(train --model "$mdir" --prompt-ids "$ids0" --prompt-ids "$ids1" --source-layer 1
                --target-layer 4 --radius 4 --p 2 --q 1 --loss-axis token --steps 25 --vectors 4
                --wave 1 --orthogonal --init "$init" --max-new-tokens 4 --temperature 0
                --random-baselines 1)
    local a="$tmp/$m.a.fp32.bank.safetensors" b="$tmp/$m.b.fp32.bank.safetensors"
    local c="$tmp/$m.b.bf16.bank.safetensors" t2="$tmp/$m.b.fp32.tp2.bank.safetensors"
    # shellcheck disable=SC2046
    if ! train "$tmp/$m.a.log" "$a" "${args[@]}" $(dev_args "$dev_a" fp32); then
        echo "FAIL $m: the $dev_a (A) fp32 run failed"
        return
    fi
    # shellcheck disable=SC2046
    if train "$tmp/$m.b.log" "$b" "${args[@]}" $(dev_args "$dev_b" fp32); then
        "${compare[@]}" "$a" "$b" --rel 1e-4 --tokens-identical --label "$m fp32 $dev_b vs $dev_a" \
            > "$tmp/$m.cmp-fp32.txt" 2>&1
        compared "$tmp/$m.cmp-fp32.txt" $?
    else
        echo "FAIL $m: the $dev_b fp32 run failed"
        b=""
    fi
    # shellcheck disable=SC2046
    if train "$tmp/$m.c.log" "$c" "${args[@]}" $(dev_args "$dev_b" bf16); then
        lab="$m bf16 $dev_b vs fp32 $dev_a"
        [ "$dev_b" = cuda ] || lab="$lab (no --dtype off cuda: fp32 again)"
        "${compare[@]}" "$a" "$c" --cosine 0.99 --label "$lab" > "$tmp/$m.cmp-bf16.txt" 2>&1
        compared "$tmp/$m.cmp-bf16.txt" $?
    else
        echo "FAIL $m: the $dev_b bf16 run failed"
    fi
    [ $do_tp = 1 ] || return
    # shellcheck disable=SC2046
    if "${mpirun[@]}" -np 2 "$rank" "${args[@]}" $(dev_args "$dev_b" fp32) --tp 2 "${tp_extra[@]}" \
           --out "$t2" > "$tmp/$m.tp2.log" 2>&1 && [ -s "$t2" ]; then
        if [ -n "$b" ]; then
            "${compare[@]}" "$b" "$t2" --rel 1e-4 --tokens-identical \
                --label "$m fp32 $dev_b tp 2 vs tp 1" > "$tmp/$m.cmp-tp2.txt" 2>&1
        else # no tp 1 bank of B: against A
            "${compare[@]}" "$a" "$t2" --rel 1e-4 --tokens-identical \
                --label "$m fp32 $dev_b tp 2 vs $dev_a" > "$tmp/$m.cmp-tp2.txt" 2>&1
        fi
        compared "$tmp/$m.cmp-tp2.txt" $?
    else
        msg=$(grep -m1 -E 'melbo-rank train:|^melbo: rank [0-9]+ on ' "$tmp/$m.tp2.log" || tail -3 "$tmp/$m.tp2.log")
        echo "     $(tr '\n' ' ' <<<"$msg")"
        echo "FAIL $m: the tp 2 run ($dev_b, 2 ranks) failed"
    fi
}

outs=()
for m in $models; do
    if [ ! -f "$golden/models/$m/config.json" ]; then
        echo "FAIL $m: no $golden/models/$m/config.json" > "$tmp/$m.out"
        outs+=("$tmp/$m.out")
        continue
    fi
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    one_model "$m" > "$tmp/$m.out" 2>&1 &
    outs+=("$tmp/$m.out")
done
wait
n_ok=0 n_fail=${#head_lines[@]}
for f in "${outs[@]}"; do
    cat "$f"
    n_ok=$((n_ok + $(grep -c '^ok ' "$f")))
    n_fail=$((n_fail + $(grep -c '^FAIL ' "$f")))
done
echo "train_compare: $n_ok ok, $n_fail FAIL (logs and banks in $tmp)"
[ "$n_fail" -eq 0 ] && [ "$n_ok" -gt 0 ]
