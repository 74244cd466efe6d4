#!/usr/bin/env bash
# tests/fuzz/run.sh - the two kinds of fuzz test (tests/fuzz/CMakeLists.txt).
#
#   run.sh build SUBBUILD CMAKE ARGS...   configure SUBBUILD with CMAKE ARGS... (once) and build
#                                         its melbo_fuzzers target
#   run.sh fuzz FUZZER SEEDS WORK SECONDS  run FUZZER for SECONDS (env MELBO_FUZZ_SECONDS wins;
#                                         MELBO_FUZZ_SEED: libFuzzer's -seed, 1, 0 = random)
#                                         on WORK (new inputs land there) and SEEDS (read only);
#                                         prints "fuzz: NAME: N executions in S s, C inputs";
#                                         a crash leaves its input in WORK/crash-* and fails
set -euo pipefail
mode=$1
shift
case "$mode" in
build)
  sub=$1
  shift
  if [ ! -f "$sub/CMakeCache.txt" ]; then
    "$@" >"${sub}.configure.log" 2>&1 || { cat "${sub}.configure.log"; exit 1; }
  fi
  exec "$1" --build "$sub" --target melbo_fuzzers -j "$(nproc)"
  ;;
fuzz)
  fuzzer=$1 seeds=$2 work=$3 seconds=${MELBO_FUZZ_SECONDS:-$4}
  name=$(basename "$fuzzer")
  mkdir -p "$work" "$work/../tmp"
  log="$work/../$name.log"
  export TMPDIR=$(cd "$work/../tmp" && pwd)  # the targets' scratch files, in the build tree
  # -rss_limit_mb: the parsers cap what they allocate, so 1 GB is plenty; -timeout: one input
  # taking over 10 s is a hang; -seed: the same mutations on every run of a commit, so a CI
  # result can be reproduced (MELBO_FUZZ_SEED=0: a random seed, for longer runs by hand).
  # ASan aborts on an error so the crash input is kept; leaks are reported by libFuzzer.
  rc=0
  ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -max_len=65536 \
      -seed="${MELBO_FUZZ_SEED:-1}" -print_final_stats=1 -artifact_prefix="$work/" \
      "$work" "$seeds" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  echo "fuzz: $name: ${runs:-?} executions in ${seconds} s (${secs:-?}/s), $(ls "$work" | grep -cv '^crash-\|^leak-\|^timeout-\|^oom-' || true) inputs in the corpus"
  if [ "$rc" != 0 ]; then
    tail -n 60 "$log"
    echo "fuzz: $name failed (exit $rc); reproducer: $(ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null | head -1)"
    exit 1
  fi
  ;;
*)
  echo "usage: run.sh build|fuzz ..." >&2
  exit 2
  ;;
esac
