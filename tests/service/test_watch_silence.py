"""tests/service/test_watch_silence.py BUILD REPO GOLDEN TMP - live connections (issue 22): the
coordinator sends keepalives (limits.keepalive_s = 1 here) and `melbo watch` notices silence
(MELBO_WATCH_TIMEOUT = 3 s here, 30 s by default).

  1. a quiet job (a stand-in rank that reports and then says nothing for 6 s) watched for its
     whole life: keepalives keep the watch connected, no reconnect;
  2. the coordinator frozen (SIGSTOP) for 8 s while `melbo watch --json` follows a running job:
     the watch says on stderr that it heard nothing for 3 s, reconnects with back-off once the
     coordinator is back and resumes; the coordinator then killed (kill -9) and started again on
     the same address: the watch reconnects again; at the end every event number appears
     exactly once, in order."""
import json, os, signal, subprocess, sys, threading, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

build, repo, golden, tmp = sys.argv[1:5]
os.makedirs(tmp, exist_ok=True)
port = mw.free_port()
quiet = os.path.join(tmp, "quiet_rank.sh")
with open(quiet, "w") as f:  # the fake rank, but silent for 6 s before it uploads its bank
    f.write("#!/bin/sh\nsleep 0.5\nexport FAKE_RANK_PAUSE=6\n"
            f"exec {sys.executable} {os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fake_rank.py')} \"$@\"\n")
os.chmod(quiet, 0o755)
co = mw.Coord(build, os.path.join(tmp, "run"), extra=["--listen", f"127.0.0.1:{port}"],
              conf=["limits.keepalive_s=1"])
melbo = os.path.join(build, "cli", "melbo")
model = os.path.abspath(os.path.join(golden, "models", "llama3"))
env = dict(os.environ, MELBO_COORD=co.addr, MELBO_TOKEN=co.token,
           MELBO_COORD_FINGERPRINT=co.fingerprint, MELBO_WATCH_TIMEOUT="3")
fail = 0


def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    fail |= not cond


def cli(*a):
    p = subprocess.run([melbo, *a], env=env, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout.strip(), p.stderr.strip()


try:
    # ---- 2. frozen, then killed and restarted, under a running job's watch -------------------
    st, job, err = cli("submit", "--model", model, "--prompt-ids", "492,403,287", "--source-layer",
                       "1", "--target-layer", "4", "--radius", "4", "--vectors", "2", "--wave", "1",
                       "--steps", "100000", "--checkpoint-every", "100000", "--no-generate")
    check(st == 0 and job.isdigit(), f"job {job} submitted {err}")
    w = subprocess.Popen([melbo, "watch", job, "--json"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    lines, errs = [], []  # read as they come: a watcher that stops reading is cut off (slow)
    readers = [threading.Thread(target=lambda: lines.extend(w.stdout)),
               threading.Thread(target=lambda: errs.extend(w.stderr))]
    [t.start() for t in readers]
    time.sleep(3)
    co.proc.send_signal(signal.SIGSTOP)
    time.sleep(8)
    co.proc.send_signal(signal.SIGCONT)
    end = time.time() + 60  # its back-off may be seconds long on a busy machine: wait for it
    while time.time() < end and not any("reconnected" in l for l in errs):
        time.sleep(0.1)
    time.sleep(1)
    co.restart()  # kill -9, serve again on the same --listen address
    time.sleep(4)
    cli("cancel", job)
    w.wait(timeout=120)
    [t.join() for t in readers]
    err = "".join(errs)
    nums = [json.loads(l)["event"] for l in lines if l.startswith("{")]
    check("no word from the coordinator for 3 s" in err and err.count("reconnected") >= 2,
          "the watch noticed the frozen coordinator and reconnected twice: "
          + " | ".join(l for l in err.splitlines() if "melbo:" in l)[:300])
    check(w.returncode == 5 and nums == list(range(1, len(nums) + 1)) and len(nums) > 3,
          f"every event exactly once, in order: 1..{nums[-1] if nums else 0} ({len(nums)} lines), "
          f"exit {w.returncode} (CANCELLED)")
finally:
    co.stop()

# ---- 1. a quiet job: keepalives, no reconnect ------------------------------------------------------
co = mw.Coord(build, os.path.join(tmp, "run1"), conf=["limits.keepalive_s=1"],
              extra=["--rank-binary", quiet])
env.update(MELBO_COORD=co.addr, MELBO_TOKEN=co.token, MELBO_COORD_FINGERPRINT=co.fingerprint)
try:
    bank = os.path.join(tmp, "init.safetensors")
    mw.write_safetensors(bank, {"vectors": ("F32", (1, 64), [0.01] * 64)},
                         {"format": "melbo-bank", "kind": "vector", "source_layer": "1"})
    pb = mw.load_pb2(repo, os.path.join(tmp, "py"))
    c = mw.Conn(pb, co.addr, fingerprint=co.fingerprint)
    c.hello(co.token)
    up = c.upload("init", bank)
    rep = c.call(submit=pb.SubmitRequest(spec=mw.job_spec(pb, golden, vectors=1, steps=1,
                                                          init=up)))
    qjob = str(rep.submitted.job_id)
    t0 = time.time()
    st, out, err = cli("watch", qjob, "--json")
    took = time.time() - t0
    check(st == 0 and took > 5 and "reconnect" not in err,
          f"a job silent for 6 s watched with a 3 s timeout: no reconnect ({took:.1f} s, exit {st})"
          f"{' ' + err if err else ''}")
finally:
    co.stop()
sys.exit(1 if fail else 0)
