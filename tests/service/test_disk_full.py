"""tests/service/test_disk_full.py BUILD REPO GOLDEN TMP - a full disk under the coordinator
(issue 22), made with the failwrite shim (tests/faults: LD_PRELOAD into melbo-coord only; writes
under its state directory fail with ENOSPC while a control file exists). A job trains while the
disk is full from soon after its start until 2 s after its bank is written in the job directory
- so its events (SQLite, the event log) and its bank upload (the bank store) are refused - and
then the disk has room again.

  - while full: `melbo show` says the job's events cannot be stored; a submit is refused with
    its reason and nothing is queued (memory and database agree: `melbo ls` before = after);
    rank 0 backs off (the coordinator's log stays short: no reconnect storm);
  - once free: the job ends DONE, every event it sent is stored once (numbers 1..n, each step
    of the run once), its bank is catalogued with the bytes rank 0 wrote, and `melbo-coord
    fsck` finds nothing wrong;
  - limits.disk_reserve_mb: a coordinator whose disk would keep less free refuses a submit,
    naming the limit."""
import hashlib, json, os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

build, repo, golden, tmp = sys.argv[1:5]
os.makedirs(tmp, exist_ok=True)
shim = os.path.join(build, "tests", "faults", "failwrite.so")
if not os.path.exists(shim):
    print(f"skipped: {shim} is not built")
    sys.exit(77)
coord_bin = os.path.join(build, "coord", "melbo-coord")
if "libasan" in subprocess.run(["ldd", coord_bin], capture_output=True, text=True).stdout:
    print("skipped: an ASan build (its runtime must come first; a preloaded shim cannot)")
    sys.exit(77)
full = os.path.join(tmp, "disk-full")
if os.path.exists(full):
    os.remove(full)
melbo = os.path.join(build, "cli", "melbo")
model = os.path.abspath(os.path.join(golden, "models", "llama3"))
args = ["--model", model, "--prompt-ids", "492,403,287", "--source-layer", "1", "--target-layer",
        "4", "--radius", "4", "--vectors", "2", "--max-new-tokens", "2"]
fail = 0


def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    fail |= not cond


run = os.path.join(tmp, "run")
os.environ.update(LD_PRELOAD=shim, MELBO_FAIL_WRITE_DIR=os.path.join(run, "state"),
                  MELBO_FAIL_WRITE_WHEN=full)
os.makedirs(os.path.join(run, "state"), exist_ok=True)  # the shim resolves the directory at load
co = mw.Coord(build, run)
for k in ("LD_PRELOAD", "MELBO_FAIL_WRITE_DIR", "MELBO_FAIL_WRITE_WHEN"):
    os.environ.pop(k)  # the shim is the coordinator's only (its launcher drops it for the ranks)
env = dict(os.environ, MELBO_COORD=co.addr, MELBO_TOKEN=co.token,
           MELBO_COORD_FINGERPRINT=co.fingerprint)


def cli(*a):
    return subprocess.run([melbo, *a], env=env, capture_output=True, text=True, timeout=120)


try:
    job = cli("submit", *args, "--steps", "4000").stdout.strip()
    jdir = os.path.join(co.state, "jobs", job)
    end = time.time() + 60
    while time.time() < end and json.loads(cli("show", job, "--json").stdout)["state"] != "RUNNING":
        time.sleep(0.05)
    open(full, "w").close()  # the disk is full
    time.sleep(1.0)
    shown = json.loads(cli("show", job, "--json").stdout)
    check("cannot store this job's events" in shown.get("error", ""),
          f"while full, show says so: {shown.get('error', '')!r}")
    n_before = len(json.loads(cli("ls", "--json").stdout))
    r = cli("submit", *args, "--steps", "3")
    check(r.returncode != 0 and "cannot record the job" in r.stderr
          and len(json.loads(cli("ls", "--json").stdout)) == n_before,
          f"a submit while full is refused, nothing queued: {r.stderr.strip()!r}")
    bank = os.path.join(jdir, "out.bank.safetensors")
    end = time.time() + 120
    while time.time() < end and not os.path.exists(bank):
        time.sleep(0.05)
    time.sleep(2.0)  # the upload is refused too
    check(json.loads(cli("show", job, "--json").stdout)["state"] == "RUNNING",
          "the bank is written in the job directory; the job is not DONE while the store is full")
    os.remove(full)  # room again
    st = subprocess.run([melbo, "watch", job, "--json"], env=env, capture_output=True, text=True,
                        timeout=180)
    events = [json.loads(l) for l in st.stdout.splitlines()]
    steps = [e["step"] for e in events if e["kind"] == "step"]
    check(st.returncode == 0 and events[-1]["state"] == "DONE"
          and [e["event"] for e in events] == list(range(1, len(events) + 1))
          and steps == list(range(1, 4001)),
          f"room again: DONE, events 1..{len(events)} once, each of the 4000 steps once")
    got = os.path.join(tmp, "got.bank.safetensors")
    cli("fetch", job, "-o", got)
    check(open(got, "rb").read() == open(bank, "rb").read(),
          "the catalogued bank is the one rank 0 wrote, byte for byte")
    lines = open(co.log_path).read().splitlines()
    closes = [l for l in lines if "closing" in l and "job" not in l]
    check(len(lines) < 300, f"the coordinator's log stays short: {len(lines)} lines "
          f"({len([l for l in lines if 'cannot store' in l])} about storage)")
    fs = subprocess.run([os.path.join(build, "coord", "melbo-coord"), "fsck", "--state",
                         co.state], capture_output=True, text=True)
    check(fs.returncode == 0, f"fsck after: {fs.stdout.strip().splitlines()[-1]}")
finally:
    co.stop()
    if os.path.exists(full):
        os.remove(full)

co = mw.Coord(build, os.path.join(tmp, "reserve"), conf=["limits.disk_reserve_mb=1000000000000"])
env.update(MELBO_COORD=co.addr, MELBO_TOKEN=co.token, MELBO_COORD_FINGERPRINT=co.fingerprint)
try:
    r = cli("submit", *args, "--steps", "3")
    check(r.returncode != 0 and "limits.disk_reserve_mb" in r.stderr,
          f"under the disk reserve a submit is refused: {r.stderr.strip()!r}")
finally:
    co.stop()
sys.exit(1 if fail else 0)
