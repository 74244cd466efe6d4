#!/usr/bin/env bash
# tests/fuzz/test_misaligned_bank.sh MELBO_RANK GOLDEN_DIR CORPUS TMP - banks whose tensor data is
# not 4-byte aligned in the file (a header padded with one space: corpus/bank/*.pad1.*, written
# by make_corpus.py from the golden banks) read exactly like their aligned twins: `bank`, `bank
# --json`, `bank --same-as`, `bank report`, `bank export` of vectors and adapters and `gen --bank`
# give the same output. Under the sanitizer build (tests/run) UBSan makes any misaligned float
# load fatal, which is what this test is for there.
set -u
rank=$1 golden=$2 corpus=$3 tmp=$4
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
rm -rf "$tmp" && mkdir -p "$tmp"
export OMP_NUM_THREADS=1

same() { # DESCRIPTION COMMAND... with @BANK@ replaced by the aligned, then the misaligned bank
  local what=$1 a b
  shift
  a=$("$rank" "${@//@BANK@/$aligned}" 2>&1) || { bad "$what (aligned): $a"; return; }
  b=$("$rank" "${@//@BANK@/$misaligned}" 2>&1) || { bad "$what (misaligned): $b"; return; }
  a=${a//$aligned/BANK} b=${b//$misaligned/BANK}
  a=$(grep -v 'tokens/s' <<<"$a") b=$(grep -v 'tokens/s' <<<"$b")  # gen's speed lines
  [ "$a" = "$b" ] && ok "$what" || bad "$what differs: $(diff <(echo "$a") <(echo "$b") | head -5)"
}

for kind in steer_llama3 steer_qwen3_adapter; do
  aligned=$corpus/$kind.bank.safetensors misaligned=$corpus/$kind.bank.pad1.safetensors
  off=$(python3 -c "import struct,sys; print((8 + struct.unpack('<Q', open(sys.argv[1],'rb').read(8))[0]) % 4)" "$misaligned")
  [ "$off" != 0 ] || bad "$misaligned: its data is 4-byte aligned (regenerate with make_corpus.py)"
  same "$kind: bank" bank @BANK@
  same "$kind: bank --json" bank @BANK@ --json
  "$rank" bank "$misaligned" --same-as "$aligned" >/dev/null 2>&1 && ok "$kind: --same-as its twin" ||
    bad "$kind: --same-as"
  for b in aligned misaligned; do
    "$rank" bank report "${!b}" -o "$tmp/$kind.$b.html" >/dev/null 2>&1 || bad "$kind: report ($b)"
  done
  cmp -s "$tmp/$kind.aligned.html" "$tmp/$kind.misaligned.html" && ok "$kind: report" ||
    bad "$kind: the reports differ"
done

kind=steer_llama3 aligned=$corpus/steer_llama3.bank.safetensors
misaligned=$corpus/steer_llama3.bank.pad1.safetensors
for b in aligned misaligned; do
  "$rank" bank export "${!b}" --vector "0.5*1 - 2*r1 + 3" --format gguf-control-vector \
    -o "$tmp/cv.$b.gguf" >/dev/null 2>&1 || bad "export vector ($b)"
done
# the metadata names the bank file and its sha256; the vector (d = 64 floats) ends the file
cmp -s <(tail -c 256 "$tmp/cv.aligned.gguf") <(tail -c 256 "$tmp/cv.misaligned.gguf") &&
  ok "export --vector" || bad "exported vectors differ"
same "gen --bank --vector" gen --model "$golden/models/llama3" --bank @BANK@ --vector "2*1-r0" \
  --prompt-ids 492,403,287 --max-new-tokens 4

kind=steer_qwen3_adapter aligned=$corpus/$kind.bank.safetensors
misaligned=$corpus/$kind.bank.pad1.safetensors
for b in aligned misaligned; do
  "$rank" bank export "${!b}" --adapter 1 --format gguf-lora -o "$tmp/lora.$b.gguf" >/dev/null 2>&1 ||
    bad "export adapter ($b)"
done
cmp -s "$tmp/lora.aligned.gguf" "$tmp/lora.misaligned.gguf" && ok "export --adapter" || bad "exported adapters differ"
[ $fail = 0 ] && echo "misaligned banks: all ok"
exit $fail
