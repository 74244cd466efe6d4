"""tests/service/test_fsck_backup.py BUILD REPO GOLDEN TMP - the admin's tools (issue 22):

  1. `melbo-coord backup` while a job runs, then `restore` into a fresh state directory and
     `serve` it: the same jobs (the running one FAILED "lost", as after any restart without its
     ranks), the same banks byte for byte, the same users;
  2. `melbo-coord fsck` on the live state: clean (exit 0);
  3. damage - a bank file deleted, a temporary upload left behind, a FAILED job with a finished
     bank waiting in its directory: fsck names each (exit 1); `fsck --repair` (coordinator
     stopped) removes the temporary file, adopts the waiting bank (the job DONE) and reports the
     missing file, which it cannot fix (exit 1)."""
import hashlib, json, os, shutil, signal, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

build, repo, golden, tmp = sys.argv[1:5]
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)
coord_bin = os.path.join(build, "coord", "melbo-coord")
melbo = os.path.join(build, "cli", "melbo")
model = os.path.abspath(os.path.join(golden, "models", "llama3"))
base = ["--model", model, "--prompt-ids", "492,403,287", "--source-layer", "1", "--target-layer",
        "4", "--radius", "4", "--vectors", "2", "--max-new-tokens", "2"]
fail = 0


def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    fail |= not cond


def tool(*a):
    p = subprocess.run([coord_bin, *a], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


co = mw.Coord(build, os.path.join(tmp, "run"))
env = dict(os.environ, MELBO_COORD=co.addr, MELBO_TOKEN=co.token,
           MELBO_COORD_FINGERPRINT=co.fingerprint)


def cli(*a, e=None):
    return subprocess.run([melbo, *a], env=e or env, capture_output=True, text=True, timeout=120)


try:
    done = cli("submit", *base, "--steps", "5").stdout.strip()
    cli("watch", done, "--json")
    running = cli("submit", *base, "--steps", "100000", "--wave", "1", "--checkpoint-every",
                  "100000", "--no-generate").stdout.strip()
    time.sleep(1.5)
    bk = os.path.join(tmp, "backup")
    st, out = tool("backup", bk, "--state", co.state)
    check(st == 0 and "banks" in out, f"backup while job {running} runs: {out.strip()}")
    st, out = tool("fsck", "--state", co.state)
    check(st == 0 and "0 problem(s)" in out, f"fsck of the live state: {out.strip()}")
    jobs_before = {j["job"]: j for j in json.loads(cli("ls", "--json").stdout)}
    banks_before = {b["bank"]: b for b in json.loads(cli("bank", "ls", "--json").stdout)}
    cli("cancel", running)

    # ---- restore into a fresh state and serve it ----------------------------------------------
    new = os.path.join(tmp, "restored")
    st, out = tool("restore", bk, "--state", new)
    check(st == 0, f"restore: {out.strip()}")
    log = open(os.path.join(tmp, "restored.log"), "w")
    p = subprocess.Popen([coord_bin, "serve", "--state", new, "--listen", "127.0.0.1:0"],
                         stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        if os.path.exists(os.path.join(new, "address")):
            break
        time.sleep(0.05)
    e2 = dict(env, MELBO_COORD=open(os.path.join(new, "address")).read().strip())
    jobs_after = {j["job"]: j for j in json.loads(cli("ls", "--json", e=e2).stdout)}
    banks_after = {b["bank"]: b for b in json.loads(cli("bank", "ls", "--json", e=e2).stdout)}
    got = os.path.join(tmp, "restored.bank.safetensors")
    cli("fetch", done, "-o", got, e=e2)
    orig = os.path.join(co.state, "banks", jobs_before[int(done)]["bank"] + ".bank.safetensors")
    check(set(jobs_after) == set(jobs_before) and jobs_after[int(done)]["state"] == "DONE"
          and jobs_after[int(running)]["state"] == "FAILED" and set(banks_after) == set(banks_before)
          and open(got, "rb").read() == open(orig, "rb").read(),
          f"restored and served: jobs {sorted(jobs_after)} (job {running} "
          f"{jobs_after.get(int(running), {}).get('state')}), {len(banks_after)} bank(s), "
          "the bank byte for byte")
    p.kill()
    p.wait()

    # ---- damage, fsck, --repair ----------------------------------------------------------------
    bad_init = os.path.join(tmp, "bad.safetensors")
    mw.write_safetensors(bad_init, {"vectors": ("F32", (2, 3), [0.0] * 6)}, {})
    failed = cli("submit", *base, "--steps", "3", "--init", bad_init).stdout.strip()
    cli("watch", failed, "--json")
    check(json.loads(cli("show", failed, "--json").stdout)["state"] == "FAILED",
          f"job {failed} FAILED (an --init of the wrong shape)")
    co.stop()
    shutil.copy(orig, os.path.join(co.state, "jobs", failed, "out.bank.safetensors"))
    open(os.path.join(co.state, "banks", ".upload-99.tmp"), "w").write("partial")
    st, out = tool("fsck", "--state", co.state)
    check(st == 1 and "temporary upload" in out and f"job {failed} is not DONE" in out,
          "fsck names the damage:\n" + "\n".join("    " + l for l in out.splitlines()))
    st, out = tool("fsck", "--state", co.state, "--repair")
    st2, out2 = tool("fsck", "--state", co.state)
    check(st == 0 and "repaired:" in out and st2 == 0
          and not os.path.exists(os.path.join(co.state, "banks", ".upload-99.tmp")),
          "fsck --repair: the temporary upload removed, the waiting bank adopted; fsck clean after: "
          + out2.strip().splitlines()[-1])
    os.remove(orig)
    st, out = tool("fsck", "--state", co.state, "--repair")
    check(st == 1 and "is missing" in out, "a deleted bank file: reported, not repairable: "
          + [l for l in out.splitlines() if "missing" in l][0])
    co2 = subprocess.Popen([coord_bin, "serve", "--state", co.state, "--listen", "127.0.0.1:0"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    e3 = dict(env, MELBO_COORD=open(os.path.join(co.state, "address")).read().strip())
    shown = json.loads(cli("show", failed, "--json", e=e3).stdout or "{}")
    co2.kill()
    check(shown.get("state") == "DONE" and shown.get("bank"),
          f"after --repair job {failed} is DONE with bank {shown.get('bank')}")
finally:
    co.stop()
sys.exit(1 if fail else 0)
