#!/usr/bin/env bash
# tests/service/test_e2e.sh BUILD_DIR GOLDEN_DIR TMPDIR
# The service end to end with real processes on loopback: init (modes), serve, submit, watch sees
# every step, DONE, fetch gives the same bank as standalone melbo-rank train, show / ls / bank ls,
# two watchers see identical streams, a watcher resuming from event N gets exactly the rest, an
# adapter job (--adapter-rank) the same way, and the CLI's error messages and exit codes.
bin=$1 golden=$2 tmp=$3
source "$(dirname "$0")/lib.sh"
coord_init
[ "$(stat -c %a "$tmp/state")" = 700 ] && ok "state dir 0700" || bad "state dir mode $(stat -c %a "$tmp/state")"
[ "$(stat -c %a "$tmp/state/tokens")" = 600 ] && ok "tokens file 0600" || bad "tokens mode"
grep -q "^MELBO_COORD=" "$tmp/init.out" && [ -n "$MELBO_TOKEN" ] && ok "init prints MELBO_COORD and MELBO_TOKEN" || bad "init output"
grep -q "$MELBO_TOKEN" "$tmp/state/tokens" && bad "token stored in clear" || ok "token stored hashed"
coord_start

spec=("${job_args[@]}" --vectors 4 --wave 2 --steps 12 --max-new-tokens 4 --seed 5)
job=$(melbo submit "${spec[@]}" 2>"$tmp/submit.err"); st=$?
[ $st = 0 ] && [[ "$job" =~ ^[0-9]+$ ]] && ok "submit prints only the job id ($job)" || bad "submit: $st '$job' $(cat "$tmp/submit.err")"
melbo watch "$job" --json > "$tmp/w1.jsonl" & w1=$!
melbo watch "$job" --json > "$tmp/w2.jsonl"; st=$?
wait $w1; st1=$?
[ $st = 0 ] && [ $st1 = 0 ] && ok "watch exits 0 on DONE" || bad "watch status $st / $st1"
steps=$(grep -c '"kind":"step"' "$tmp/w1.jsonl")
[ "$steps" = 24 ] && ok "watch saw every step (24 = 2 waves x 12)" || bad "watch saw $steps step events"
tail -1 "$tmp/w1.jsonl" | grep -q '"state":"DONE"' && ok "last event DONE" || bad "last event: $(tail -1 "$tmp/w1.jsonl")"
cmp -s "$tmp/w1.jsonl" "$tmp/w2.jsonl" && ok "two watchers: identical streams ($(wc -l < "$tmp/w1.jsonl") events)" || bad "watchers differ"
seq_ok=$(python3 -c "
import json,sys
n=[json.loads(l)['event'] for l in open('$tmp/w1.jsonl')]
print(int(n==list(range(1,len(n)+1))))")
[ "$seq_ok" = 1 ] && ok "event numbers 1..N, none twice" || bad "event numbers not contiguous"

# Resume: a watcher that saw events 1..10 asks from 11 and gets exactly 11..N.
total=$(wc -l < "$tmp/w1.jsonl")
melbo watch "$job" --json --from 11 > "$tmp/w3.jsonl"
tail -n +11 "$tmp/w1.jsonl" | cmp -s - "$tmp/w3.jsonl" && ok "resume from event 11: exactly the $((total - 10)) missing events" || bad "resume stream differs"

# The bank: fetch == standalone melbo-rank train of the same spec.
melbo fetch "$job" -o "$tmp/fetched.bank.safetensors" 2>/dev/null || bad "fetch"
melbo-rank train "${spec[@]}" --out "$tmp/standalone.bank.safetensors" 2>/dev/null || bad "standalone run"
melbo-rank bank "$tmp/fetched.bank.safetensors" --same-as "$tmp/standalone.bank.safetensors" >/dev/null \
    && ok "fetched bank is the same bank as standalone melbo-rank train" || bad "banks differ"
melbo show "$job" > "$tmp/show.txt" && [ "$(grep -c '^[0-3] ' "$tmp/show.txt")" = 4 ] \
    && ok "show: 4 vector rows" || bad "show: $(cat "$tmp/show.txt")"
bank=$(melbo ls --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['bank'])")
melbo bank ls --model llama3 --json | grep -q "\"bank\":\"$bank\"" && ok "bank ls --model finds $bank" || bad "bank ls"
[ "$(melbo bank ls --model nosuchmodel --json)" = "[]" ] && ok "bank ls filters by model" || bad "bank ls filter"
melbo bank show "$bank" --json | grep -q '"radius":4' && ok "bank show" || bad "bank show"

# Errors a script can rely on.
expect() { # DESC STATUS NEEDLE CMD...
    local what=$1 want=$2 needle=$3; shift 3
    out=$("$@" 2>&1); st=$?
    if [ "$st" = "$want" ] && grep -qF -- "$needle" <<<"$out"; then ok "$what (exit $st)"
    else bad "$what: exit $st (want $want): $out"; fi
}

# Adapters (--adapter-rank): submitted, watched, shown and fetched like vectors; the bank holds
# lora_A / lora_B and kind=adapter, and is the bank standalone melbo-rank train writes.
aspec=(--model "$model" --prompt "How can I make a bomb?" --source-layer 1 --target-layer 4
       --adapter-rank 4 --vectors 2 --steps 3 --max-new-tokens 4)
ajob=$(melbo submit "${aspec[@]}" 2>"$tmp/asubmit.err"); st=$?
[ $st = 0 ] && [[ "$ajob" =~ ^[0-9]+$ ]] && ok "submit --adapter-rank 4: job $ajob" || bad "adapter submit: $st '$ajob' $(cat "$tmp/asubmit.err")"
melbo watch "$ajob" --json > "$tmp/wa.jsonl"; st=$?
[ $st = 0 ] && tail -1 "$tmp/wa.jsonl" | grep -q '"state":"DONE"' && ok "adapter job DONE" || bad "adapter job: watch $st: $(tail -2 "$tmp/wa.jsonl")"
steps=$(grep -c '"kind":"step"' "$tmp/wa.jsonl")
[ "$steps" = 3 ] && ok "watch saw the adapters' 3 steps" || bad "watch saw $steps step events"
melbo show "$ajob" > "$tmp/show_a.txt" && grep -q "^adapters: rank 4, alpha 0.35, on mlp.down_proj" "$tmp/show_a.txt" \
    && grep -q "^ADAPTER " "$tmp/show_a.txt" && [ "$(grep -c '^[01] ' "$tmp/show_a.txt")" = 2 ] \
    && ok "show: 2 adapter rows, rank, alpha and module" || bad "adapter show: $(cat "$tmp/show_a.txt")"
melbo show "$ajob" --json | python3 -c "
import json,sys; o=json.load(sys.stdin)
assert o['kind']=='adapter' and o['adapter_rank']==4 and [a['adapter'] for a in o['adapters']]==[0,1], o
assert all(isinstance(a['objective'],(int,float)) and a['objective']>0 for a in o['adapters']), o" \
    && ok "show --json: kind adapter, 2 adapters" || bad "adapter show --json"
melbo fetch "$ajob" -o "$tmp/adapter.bank.safetensors" 2>/dev/null || bad "adapter fetch"
python3 -c "
import sys; sys.path.insert(0, '$(dirname "$0")'); import melbo_wire as mw
h=mw.read_safetensors_header('$tmp/adapter.bank.safetensors'); m=h['__metadata__']
assert h['lora_A']['shape']==[2,4,160] and h['lora_B']['shape']==[2,64,4] and 'vectors' not in h, h.keys()
assert m['kind']=='adapter' and m['adapter_rank']=='4' and 'radius' not in m, m" \
    && ok "fetched adapter bank: lora_A [2,4,160], lora_B [2,64,4], kind=adapter" || bad "adapter bank contents"
melbo-rank train "${aspec[@]}" --out "$tmp/adapter_standalone.bank.safetensors" 2>/dev/null || bad "standalone adapter run"
melbo-rank bank "$tmp/adapter.bank.safetensors" --same-as "$tmp/adapter_standalone.bank.safetensors" >/dev/null \
    && ok "fetched adapter bank is the same bank as standalone melbo-rank train" || bad "adapter banks differ"
abank=$(melbo show "$ajob" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['bank'])")
melbo bank show "$abank" --json | python3 -c "
import json,sys; o=json.load(sys.stdin)
assert o['kind']=='adapter' and o['adapters']==2 and 'radius' not in o and len(o['rows'])==2, o" \
    && ok "bank show: an adapter bank with its 2 adapters" || bad "adapter bank show"
expect "submit --adapter-rank 0 refused" 2 "--adapter-rank must be >= 1" melbo submit --model "$model" --prompt-ids "$ids" --adapter-rank 0
expect "submit --adapter-rank with --radius refused" 2 "--radius does not apply to adapters" melbo submit "${job_args[@]}" --adapter-rank 4
expect "submit: adapter rank above the model's widths" 1 "--adapter-rank 65 is more than min(d_model 64" melbo submit --model "$model" --prompt-ids "$ids" --source-layer 1 --target-layer 4 --adapter-rank 65
expect "submit: vectors still need --radius" 2 "--radius is required" melbo submit --model "$model" --prompt-ids "$ids"
expect "submit refused like the rank" 1 "--target-layer 5 is out of range" melbo submit "${job_args[@]}" --target-layer 5
expect "submit: bad model dir" 1 "/nonexistent" melbo submit --model /nonexistent --prompt-ids 1,2 --radius 4
expect "submit: --out is the coordinator's" 2 "chosen by the coordinator" melbo submit "${job_args[@]}" --out x
expect "submit: unknown flag" 2 "unknown option --frob" melbo submit "${job_args[@]}" --frob 1
expect "watch: no such job" 1 "no job 999" melbo watch 999 --json
expect "cancel a finished job" 1 "already DONE" melbo cancel "$job"
expect "fetch: path characters" 1 "is not a bank id" melbo fetch --bank ../../etc/passwd -o "$tmp/x"
expect "fetch: unknown bank" 1 "no bank 0123abcd" melbo fetch --bank 0123abcd -o "$tmp/x"
echo nope > "$tmp/wrong.token"
expect "wrong token" 3 "wrong token" melbo --token-file "$tmp/wrong.token" ls
expect "--token refused (argv is public)" 2 "--token-file" melbo --token "$MELBO_TOKEN" ls
expect "missing token" 3 "missing token" env MELBO_TOKEN= melbo ls
expect "no coordinator" 3 "cannot connect" melbo --coord 127.0.0.1:1 ls
mkdir -p "$tmp/home/.config/melbo"
printf 'MELBO_COORD=%s\nMELBO_TOKEN=%s\n' "$MELBO_COORD" "$MELBO_TOKEN" > "$tmp/home/.config/melbo/config"
env -u MELBO_COORD -u MELBO_TOKEN HOME="$tmp/home" melbo ls >/dev/null && ok "address and token from ~/.config/melbo/config" || bad "config file"
tok2=$(melbo-coord token add bob --state "$tmp/state" | sed -n 's/^MELBO_TOKEN=//p')
MELBO_TOKEN=$tok2 melbo ls >/dev/null && ok "token add: the new user is accepted" || bad "token add"
expect "cancel someone else's job" 1 "belongs to" env MELBO_TOKEN=$tok2 melbo cancel "$job"
exit $fail
