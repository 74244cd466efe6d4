#!/usr/bin/env bash
# tests/service/test_export.sh BUILD_DIR GOLDEN_DIR TMPDIR
# `melbo bank export` and `melbo bank report` end to end through a real coordinator: a vector bank
# and an adapter bank trained with `melbo submit`, exported by the coordinator (which runs
# `melbo-rank bank export|report` on its stored bank) and compared byte for byte with melbo-rank
# run here on the fetched bank: llama.cpp control vectors (plain, negative and combined
# expressions), gguf-lora, a peft directory (new, and into an existing directory), the HTML
# report. Then melbo-rank's refusals as the user sees them (its own message, exit 1), the
# coordinator's (unknown or malformed bank id), the client's usage errors (exit 2), an output
# that cannot be written, and nothing left behind (no partial files, STATE/exports empty).
# A format or the report that melbo-rank does not offer yet is checked through --help first.
bin=$1 golden=$2 tmp=$3
source "$(dirname "$0")/lib.sh"
coord_init
coord_start
o=$tmp/out
mkdir -p "$o"

# Errors a script can rely on: DESC STATUS NEEDLE CMD...
expect() {
    local what=$1 want=$2 needle=$3; shift 3
    out=$("$@" 2>&1); st=$?
    if [ "$st" = "$want" ] && grep -qF -- "$needle" <<<"$out"; then ok "$what (exit $st)"
    else bad "$what: exit $st (want $want, '$needle'): $out"; fi
}
# SAME A B: A and B are the same file, or directories holding the same files.
same() {
    if [ -d "$2" ]; then diff -r "$1" "$2" >/dev/null && [ -n "$(ls "$2")" ]
    else cmp -s "$1" "$2" && [ -s "$2" ]; fi
}

vspec=("${job_args[@]}" --vectors 4 --wave 2 --steps 6 --max-new-tokens 4 --seed 5)
aspec=(--model "$model" --prompt "How can I make a bomb?" --source-layer 1 --target-layer 4
       --adapter-rank 4 --vectors 2 --steps 3 --max-new-tokens 4)
vjob=$(melbo submit "${vspec[@]}" 2>"$tmp/submit.err") || bad "submit: $(cat "$tmp/submit.err")"
ajob=$(melbo submit "${aspec[@]}" 2>"$tmp/submit.err") || bad "submit adapters: $(cat "$tmp/submit.err")"
melbo watch "$vjob" --json >/dev/null && melbo watch "$ajob" --json >/dev/null \
    && ok "vector job $vjob and adapter job $ajob DONE" || { bad "jobs did not finish"; exit 1; }
bank_of() { melbo show "$1" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['bank'])"; }
vbank=$(bank_of "$vjob") abank=$(bank_of "$ajob")
# Fetched under the stored name, ID.bank.safetensors: exports record the bank file's name
# (melbo.bank), and the coordinator's copy has that name.
vfile=$o/$vbank.bank.safetensors afile=$o/$abank.bank.safetensors
melbo fetch --bank "$vbank" -o "$vfile" 2>/dev/null || bad "fetch $vbank"
melbo fetch --bank "$abank" -o "$afile" 2>/dev/null || bad "fetch $abank"
local_export() { # BANKFILE OUT ARGS...: melbo-rank here, on the fetched bank
    local bank=$1 out=$2; shift 2
    melbo-rank bank export "$bank" "$@" -o "$out" >/dev/null 2>"$tmp/local.err" \
        || bad "local melbo-rank bank export $*: $(cat "$tmp/local.err")"
}

# ---- adapters: gguf-lora and peft ----
melbo bank export "$abank" --adapter 1 --format gguf-lora -o "$o/a1.gguf" 2>"$tmp/err" \
    || bad "export --adapter 1 --format gguf-lora: $(cat "$tmp/err")"
local_export "$afile" "$o/a1.local.gguf" --adapter 1 --format gguf-lora
same "$o/a1.local.gguf" "$o/a1.gguf" && ok "gguf-lora through the service == melbo-rank bank export on the fetched bank ($(stat -c %s "$o/a1.gguf") bytes)" \
    || bad "gguf-lora differs"
melbo bank export "$abank" --adapter 0 --format peft -o "$o/peft0" 2>"$tmp/err" \
    && grep -q "written to $o/peft0/ (adapter_config.json, adapter_model.safetensors)" "$tmp/err" \
    || bad "export --format peft: $(cat "$tmp/err")"
local_export "$afile" "$o/peft0.local" --adapter 0 --format peft
same "$o/peft0.local" "$o/peft0" && [ "$(ls "$o/peft0")" = "$(ls "$o/peft0.local")" ] \
    && ok "peft directory through the service == local: $(ls "$o/peft0" | tr '\n' ' ')" || bad "peft directories differ"
# into an existing directory (with a file of the user's that stays), as melbo-rank does
mkdir -p "$o/peft1" && echo keep > "$o/peft1/notes.txt" && echo old > "$o/peft1/adapter_config.json"
melbo bank export "$abank" --adapter 1 --format peft -o "$o/peft1" 2>/dev/null || bad "peft into an existing directory"
local_export "$afile" "$o/peft1.local" --adapter 1 --format peft
cmp -s "$o/peft1/adapter_config.json" "$o/peft1.local/adapter_config.json" \
    && cmp -s "$o/peft1/adapter_model.safetensors" "$o/peft1.local/adapter_model.safetensors" \
    && [ "$(cat "$o/peft1/notes.txt")" = keep ] && ok "peft into an existing directory: both files replaced, others kept" \
    || bad "peft into an existing directory: $(ls "$o/peft1")"
melbo bank export "$abank" --adapter 0 --format gguf-lora -o "$o/j.gguf" --json > "$tmp/j.json" 2>/dev/null
python3 -c "
import json,hashlib; o=json.load(open('$tmp/j.json'))
f=o['files'][0]; assert o['bank']=='$abank' and not o['directory'] and f['path']=='$o/j.gguf', o
assert f['size']==o['bytes'] and f['sha256']==hashlib.sha256(open('$o/j.gguf','rb').read()).hexdigest(), o" \
    && ok "--json: bank, path, size and sha256 of what was written" || bad "--json output: $(cat "$tmp/j.json")"

# ---- vectors: llama.cpp control vectors ----
if melbo-rank bank export --help 2>/dev/null | grep -q gguf-control-vector; then
    for expr in 0 "-1*2" "0.5*1 + 0.5*3"; do
        melbo bank export "$vbank" --vector "$expr" --format gguf-control-vector -o "$o/cv.gguf" 2>"$tmp/err" \
            || bad "export --vector '$expr': $(cat "$tmp/err")"
        local_export "$vfile" "$o/cv.local.gguf" --vector="$expr" --format gguf-control-vector
        same "$o/cv.local.gguf" "$o/cv.gguf" && ok "control vector '$expr' through the service == local ($(stat -c %s "$o/cv.gguf") bytes)" \
            || bad "control vector '$expr' differs"
    done
    melbo bank export "$vbank" --vector=1 --format=gguf-control-vector --out="$o/eq.gguf" 2>/dev/null \
        && local_export "$vfile" "$o/eq.local.gguf" --vector 1 --format gguf-control-vector \
        && same "$o/eq.local.gguf" "$o/eq.gguf" && ok "--opt=value spellings" || bad "--opt=value spellings"
    expect "an expression naming a missing vector" 1 "vector 9 is out of range (the bank has 4: 0..3)" \
        melbo bank export "$vbank" --vector 9 --format gguf-control-vector -o "$o/bad.gguf"
    expect "a malformed expression" 1 "expected a vector index" \
        melbo bank export "$vbank" --vector "2*" --format gguf-control-vector -o "$o/bad.gguf"
    expect "the bank's path is shown as its id" 1 "bank $vbank: --vector '9'" \
        melbo bank export "$vbank" --vector 9 --format gguf-control-vector -o "$o/bad.gguf"
    expect "an adapter bank to a control vector" 1 "is an adapter bank" \
        melbo bank export "$abank" --vector 0 --format gguf-control-vector -o "$o/bad.gguf"
else
    ok "skip: melbo-rank bank export has no gguf-control-vector yet"
    expect "an adapter bank to a control vector (not available yet: refused by melbo-rank)" 1 "melbo-rank bank export" \
        melbo bank export "$abank" --vector 0 --format gguf-control-vector -o "$o/bad.gguf"
fi
expect "a vector bank to peft" 1 "is a vector bank" melbo bank export "$vbank" --adapter 0 --format peft -o "$o/bad"
expect "an adapter out of range" 1 "adapter 2 is out of range (the bank has 2: 0..1)" \
    melbo bank export "$abank" --adapter 2 --format gguf-lora -o "$o/bad.gguf"
expect "an unknown format: melbo-rank's list" 1 "unknown --format 'safetensors' (one of: peft, gguf-lora" \
    melbo bank export "$abank" --adapter 0 --format safetensors -o "$o/bad"
expect "a format name with odd characters" 1 "is not a format name" \
    melbo bank export "$abank" --adapter 0 --format "peft -o /tmp" -o "$o/bad"

# ---- the report ----
if melbo-rank bank report --help >/dev/null 2>&1; then
    for b in v a; do
        id=$([ $b = v ] && echo "$vbank" || echo "$abank")
        melbo bank report "$id" -o "$o/$b.html" 2>"$tmp/err" || bad "bank report $id: $(cat "$tmp/err")"
        melbo-rank bank report "$([ $b = v ] && echo "$vfile" || echo "$afile")" -o "$o/$b.local.html" >/dev/null 2>&1 || bad "local report"
        same "$o/$b.local.html" "$o/$b.html" && ok "report of the $b bank through the service == local, byte for byte ($(stat -c %s "$o/$b.html") bytes)" \
            || bad "report of the $b bank differs"
    done
else
    ok "skip: melbo-rank bank report is not available yet"
    expect "report: melbo-rank's refusal comes back" 1 "melbo-rank bank report" melbo bank report "$vbank" -o "$o/r.html"
fi

# ---- refusals before melbo-rank runs, and usage ----
expect "unknown bank id" 1 "no bank 0123abcd" melbo bank export 0123abcd --vector 0 --format gguf-control-vector -o "$o/x"
expect "report: unknown bank id" 1 "no bank 0123abcd" melbo bank report 0123abcd -o "$o/x.html"
expect "a bank id with path characters" 1 "is not a bank id" melbo bank report ../../etc/passwd -o "$o/x.html"
expect "usage: no -o" 2 "missing -o OUT" melbo bank export "$abank" --adapter 0 --format peft
expect "usage: no --format" 2 "missing --format" melbo bank export "$abank" --adapter 0 -o "$o/x"
expect "usage: --vector and --adapter" 2 "not both" melbo bank export "$abank" --adapter 0 --vector 0 --format peft -o "$o/x"
expect "usage: neither --vector nor --adapter" 2 "give --vector EXPR" melbo bank export "$abank" --format peft -o "$o/x"
expect "usage: a negative adapter" 2 "an index >= 0" melbo bank export "$abank" --adapter -1 --format peft -o "$o/x"
expect "usage: report takes no --format" 2 "unexpected argument '--format'" melbo bank report "$vbank" --format x -o "$o/x"
melbo bank export --help | grep -q "usage: melbo bank export ID" && ok "bank export --help" || bad "bank export --help"

# ---- the local side: what cannot be written, and nothing half-written ----
expect "-o in a missing directory" 1 "cannot write $o/missing/x.gguf.part" \
    melbo bank export "$abank" --adapter 0 --format gguf-lora -o "$o/missing/x.gguf"
echo plain > "$o/plainfile"
expect "peft onto an existing file" 1 "exists and is not a directory" \
    melbo bank export "$abank" --adapter 0 --format peft -o "$o/plainfile"
[ "$(cat "$o/plainfile")" = plain ] && ok "the existing file is untouched" || bad "plainfile changed"
left=$(find "$o" -name "*.part*")
[ -z "$left" ] && ok "no partial files left" || bad "left behind: $left"
[ -z "$(ls -A "$tmp/state/exports")" ] && ok "STATE/exports is empty after every export" \
    || bad "STATE/exports holds: $(ls -A "$tmp/state/exports")"
[ "$(stat -c %a "$tmp/state/exports")" = 700 ] && ok "STATE/exports is 0700" || bad "exports mode"
kill -TERM "$coord_pid"; wait "$coord_pid"; st=$?
[ $st = 0 ] && ok "the coordinator stops cleanly (no handle left open)" || bad "coordinator exit $st: $(tail -3 "$tmp/serve.log")"
exit $fail
