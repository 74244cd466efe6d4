#!/usr/bin/env bash
# tests/external/test_llama_cpp_cvec.sh MELBO_RANK SOURCE_DIR TMPDIR
# A melbo control vector in llama.cpp itself (issue 18; label `external`, run by
# `tests/run --external`, not by CI): train a small bank on the demo model (SmolLM2-135M-Instruct
# Q4_1, deploy/fetch-default-model) at source layer 7, export vectors with
# `bank export --vector EXPR --format gguf-control-vector`, and compare llama.cpp's greedy tokens
# under each file (PyPI llama-cpp-python; llama_cpp_cvec.py reads the file as llama.cpp's loader
# does and applies it with llama_set_adapter_cvec) with `melbo-rank gen --vector EXPR` on the raw
# prompt "Hello". The agreement is printed (ctest -V shows it).
# Installs llama-cpp-python when it is missing: pip builds llama.cpp from source, 10-25 minutes on
# 2 cores. Exit 77 (skipped) when the model or the package cannot be downloaded (no network).
set -u
rank=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") src=$2 tmp=$3
here=$(cd "$(dirname "$0")" && pwd)
n=${MELBO_CVEC_TOKENS:-32}
prompt=Hello
rm -rf "$tmp" && mkdir -p "$tmp"

if ! python3 -c "import llama_cpp" 2>/dev/null; then
    echo "note installing PyPI llama-cpp-python (it builds llama.cpp from source: 10-25 min on 2 cores)"
    start=$(date +%s)
    pipi=(python3 -m pip install -q --disable-pip-version-check llama-cpp-python)
    export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
    if ! "${pipi[@]}" >"$tmp/pip.log" 2>&1 \
        && ! "${pipi[@]}" --break-system-packages >>"$tmp/pip.log" 2>&1; then
        offline="NewConnectionError|Temporary failure in name resolution|Network is unreachable"
        offline+="|ConnectTimeout|No matching distribution"
        if grep -qiE "$offline" "$tmp/pip.log"; then
            echo "SKIP PyPI llama-cpp-python cannot be downloaded: $(tail -1 "$tmp/pip.log")"
            exit 77
        fi
        echo "FAIL pip install llama-cpp-python:"; tail -20 "$tmp/pip.log"; exit 1
    fi
    echo "note llama-cpp-python installed in $(( $(date +%s) - start )) s"
fi

model=$("$src/deploy/fetch-default-model"); st=$?
[ "$st" = 2 ] && { echo "SKIP the demo model cannot be downloaded"; exit 77; }
[ "$st" = 0 ] || { echo "FAIL deploy/fetch-default-model (status $st)"; exit 1; }

bank="$tmp/hello.bank.safetensors"
"$rank" train --model "$model" --raw-prompt "$prompt" --source-layer 7 --target-layer 22 --radius 8 \
    --vectors 2 --steps 10 --no-generate --out "$bank" 2>"$tmp/train.log" \
    || { echo "FAIL train: $(tail -3 "$tmp/train.log")"; exit 1; }

# vector 0, vector 1 and the negation of vector 0, each its own control-vector file
exprs=(0 1 "-1*0") files=() gen=()
for i in "${!exprs[@]}"; do
    f="$tmp/cvec$i.gguf"
    "$rank" bank export "$bank" --vector "${exprs[$i]}" --format gguf-control-vector -o "$f" >/dev/null \
        || { echo "FAIL export --vector ${exprs[$i]}"; exit 1; }
    files+=("${exprs[$i]}=$f") gen+=(--vector "${exprs[$i]}")
done
"$rank" gen --model "$model" --bank "$bank" "${gen[@]}" --vector none --raw-prompt "$prompt" \
    --max-new-tokens "$n" --json >"$tmp/gen.jsonl" 2>"$tmp/gen.log" \
    || { echo "FAIL gen: $(tail -3 "$tmp/gen.log")"; exit 1; }

python3 "$here/llama_cpp_cvec.py" "$model" "$prompt" "$n" "$tmp/gen.jsonl" "${files[@]}"
