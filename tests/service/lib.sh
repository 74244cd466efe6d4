# tests/service/lib.sh - shared by the service tests: a coordinator on a free loopback port in a
# fresh state directory under the build tree, and cleanup of everything the test started.
# Source it, then call coord_init and coord_start. Needs $bin (the build dir) and $tmp.
set -u
fail=0
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    # ranks of this test's jobs (their command lines name the state directory)
    for p in $(pgrep -f -- "$tmp/state/jobs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT
export PATH="$bin/cli:$bin/coord:$bin/rank:$PATH"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive MELBO_LINK_FINISH_TIMEOUT=60
unset MELBO_COORD MELBO_TOKEN MELBO_COORD_FINGERPRINT
ok()   { echo "ok   $*"; }
bad()  { echo "FAIL $*"; fail=1; }
coord_init() { # creates $tmp/state, sets MELBO_TOKEN and MELBO_COORD_FINGERPRINT (every client
               # speaks TLS 1.3 and pins it: the CLI, rank 0's link, melbo_wire.py)
    rm -rf "$tmp" && mkdir -p "$tmp"
    melbo-coord init --state "$tmp/state" --listen 127.0.0.1:0 > "$tmp/init.out" 2> "$tmp/init.err" \
        || { bad "init: $(cat "$tmp/init.err")"; exit 1; }
    export MELBO_TOKEN=$(sed -n 's/^MELBO_TOKEN=//p' "$tmp/init.out")
    export MELBO_COORD_FINGERPRINT=$(sed -n 's/^MELBO_COORD_FINGERPRINT=//p' "$tmp/init.out")
    # jobs may name only models under an admin's roots (coord/models.h): the golden models
    [ -n "${golden:-}" ] && echo "model_root=$golden/models" >> "$tmp/state/coord.conf"
    return 0
}
coord_start() { # [LISTEN] starts serve in the background, sets MELBO_COORD and coord_pid
    local listen=${1:-127.0.0.1:0}
    rm -f "$tmp/state/address"
    melbo-coord serve --state "$tmp/state" --listen "$listen" "${serve_args[@]}" >> "$tmp/serve.log" 2>&1 &
    coord_pid=$!
    pids+=("$coord_pid")
    for _ in $(seq 100); do [ -s "$tmp/state/address" ] && break; sleep 0.05; done
    [ -s "$tmp/state/address" ] || { bad "serve did not start: $(tail -3 "$tmp/serve.log")"; exit 1; }
    export MELBO_COORD=$(cat "$tmp/state/address")
}
serve_args=()
model="$golden/models/llama3"
ids="492,403,287,109,129,38,286"
job_args=(--model "$model" --prompt-ids "$ids" --source-layer 1 --target-layer 4 --radius 4)
wait_state() { # JOB STATE SECONDS: polls melbo ls --json until JOB is in STATE
    local end=$((SECONDS + $3))
    while [ $SECONDS -lt $end ]; do
        melbo ls --json 2>/dev/null | grep -q "\"job\":$1,[^}]*\"state\":\"$2\"" && return 0
        sleep 0.1
    done
    return 1
}
