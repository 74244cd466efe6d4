#!/usr/bin/env bash
# tests/deploy/test_install.sh BUILD SRC TMP - deploy/install --prefix into a scratch prefix,
# then: the files are where an admin expects them, coord.conf lists every setting of
# `melbo-coord serve --help` commented out (and serve accepts every one of them uncommented),
# the systemd unit is hardened and passes `systemd-analyze verify` (skipped with a message where
# systemd-analyze is missing), and the installed binaries work from the prefix: melbo-coord init
# and serve on a state directory, melbo ls and melbo-rank through it.
set -u
bin=$1 src=$2 tmp=$3
fail=0
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
rm -rf "$tmp" && mkdir -p "$tmp"
prefix=$tmp/prefix

BUILD_DIR=$bin "$src/deploy/install" --prefix "$prefix" > "$tmp/install.out" 2>&1 ||
  { cat "$tmp/install.out"; bad "deploy/install --prefix failed"; exit 1; }
ok "deploy/install --prefix $prefix"
for f in bin/melbo-coord bin/melbo bin/melbo-rank share/melbo/train.sbatch.in etc/melbo/coord.conf \
         lib/systemd/system/melbo-coord.service; do
  [ -f "$prefix/$f" ] || bad "missing $f"
done
[ -x "$prefix/bin/melbo-coord" ] && ok "installed files"
# --prefix writes files only: no user, no systemctl
if grep -q 'created the system user\|enabled melbo-coord' "$tmp/install.out"; then
  bad "--prefix touched the system: $(cat "$tmp/install.out")"
fi

# coord.conf: every limit and Slurm key of the binary, each commented out with its default
conf=$prefix/etc/melbo/coord.conf
n_help=$("$prefix/bin/melbo-coord" serve --help 2>&1 | grep -c '^  limits\.')
n_conf=$(grep -c '^#limits\.[a-z_]*=[0-9]' "$conf")
[ "$n_help" -gt 0 ] && [ "$n_help" = "$n_conf" ] && ok "coord.conf: $n_conf limits, as serve --help lists" ||
  bad "coord.conf has $n_conf limits, serve --help $n_help"
for k in $("$prefix/bin/melbo-coord" serve --help 2>&1 | grep -o 'slurm\.[a-z_]*=' | sort -u); do
  grep -q "^#$k" "$conf" || bad "coord.conf lacks $k"
done
grep -q '^[a-z]' "$conf" && bad "coord.conf sets something: $(grep '^[a-z]' "$conf" | head -3)"

# the unit: hardened, and valid for systemd
unit=$prefix/lib/systemd/system/melbo-coord.service
for want in "User=melbo" "ProtectSystem=strict" "NoNewPrivileges=yes" "StateDirectory=melbo" \
            "PrivateTmp=yes" "CapabilityBoundingSet=" "ExecStart=$prefix/bin/melbo-coord serve"; do
  grep -q "^$want" "$unit" || bad "unit lacks $want"
done
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify resolves User= against this machine's users: melbo exists only after a real install
  sed 's/^User=melbo/User=root/; s/^Group=melbo/Group=root/' "$unit" > "$tmp/melbo-coord.service"
  if systemd-analyze verify "$tmp/melbo-coord.service" > "$tmp/verify.out" 2>&1 &&
     ! grep -qi 'melbo-coord.service:' "$tmp/verify.out"; then
    ok "systemd-analyze verify"
  else
    bad "systemd-analyze verify: $(cat "$tmp/verify.out")"
  fi
else
  echo "skip systemd-analyze verify: systemd-analyze is not installed (apt-get install systemd)"
fi

# the installed binaries, from the prefix only
export PATH="$prefix/bin:/usr/bin:/bin"
unset MELBO_COORD MELBO_TOKEN MELBO_COORD_FINGERPRINT
state=$tmp/state
melbo-coord init --state "$state" --listen 127.0.0.1:0 > "$tmp/init.out" 2> "$tmp/init.err" ||
  { bad "init: $(cat "$tmp/init.err")"; exit 1; }
export MELBO_TOKEN=$(sed -n 's/^MELBO_TOKEN=//p' "$tmp/init.out")
export MELBO_COORD_FINGERPRINT=$(sed -n 's/^MELBO_COORD_FINGERPRINT=//p' "$tmp/init.out")
# the installed coord.conf as the state's, every limit and Slurm default uncommented: serve
# must accept each line the installer wrote
{ grep '^listen=' "$state/coord.conf"; sed -n 's/^#\(limits\.[a-z_]*=.*\)/\1/p; s/^#\(slurm\.[a-z_]*=..*\)/\1/p' "$conf"; } \
  > "$tmp/coord.conf"
mv "$tmp/coord.conf" "$state/coord.conf"
melbo-coord serve --state "$state" > "$tmp/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$state/address" ] && break; sleep 0.05; done
if [ -s "$state/address" ]; then
  ok "installed melbo-coord serves with every coord.conf setting at its default"
  export MELBO_COORD=$(cat "$state/address")
  if melbo ls > "$tmp/ls.out" 2>&1; then ok "installed melbo ls"; else bad "melbo ls: $(cat "$tmp/ls.out")"; fi
  if melbo bank ls > "$tmp/bank.out" 2>&1; then ok "installed melbo bank ls"; else bad "melbo bank ls: $(cat "$tmp/bank.out")"; fi
else
  bad "serve did not start: $(tail -5 "$tmp/serve.log")"
fi
melbo-rank --help > /dev/null 2>&1 && ok "installed melbo-rank" || bad "melbo-rank --help"
[ $fail = 0 ] && echo "tests/deploy: all ok"
exit $fail
