"""tests/service/test_keep_bank.py BUILD REPO GOLDEN TMP - no bank is ever lost (issue 22), with
real processes: the coordinator frozen (SIGSTOP) while a job trains, so that rank 0 writes its
bank into the job's directory with nobody to take it, then killed (kill -9) and kept down for
8 s - longer than the 5 s finish timeout these tests configure (MELBO_LINK_FINISH_TIMEOUT).

  1. rank 0 keeps the bank (MELBO_LINK_KEEP_BANK = 60 s, a day by default): the coordinator
     started again receives it, the job is DONE and its bank, byte for byte the file in the job
     directory, is in the catalog;
  2. rank 0 gives up first (MELBO_LINK_KEEP_BANK = 2 s): the coordinator started again finds the
     finished bank in the job's directory and adopts it: DONE, catalogued, the same bytes."""
import hashlib, json, os, signal, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

build, repo, golden, tmp = sys.argv[1:5]
melbo = os.path.join(build, "cli", "melbo")
model = os.path.abspath(os.path.join(golden, "models", "llama3"))
fail = 0


def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    fail |= not cond


def scenario(name, keep_s):
    os.environ["MELBO_LINK_KEEP_BANK"] = str(keep_s)
    os.environ["MELBO_LINK_FINISH_TIMEOUT"] = "5"
    co = mw.Coord(build, os.path.join(tmp, name), extra=["--listen", f"127.0.0.1:{mw.free_port()}"])
    env = dict(os.environ, MELBO_COORD=co.addr, MELBO_TOKEN=co.token,
               MELBO_COORD_FINGERPRINT=co.fingerprint)
    cli = lambda *a: subprocess.run([melbo, *a], env=env, capture_output=True, text=True,
                                    timeout=120)
    try:
        job = cli("submit", "--model", model, "--prompt-ids", "492,403,287", "--source-layer", "1",
                  "--target-layer", "4", "--radius", "4", "--vectors", "2", "--steps", "3000",
                  "--max-new-tokens", "2").stdout.strip()
        jdir = os.path.join(co.state, "jobs", job)
        end = time.time() + 60
        while time.time() < end and not os.path.exists(os.path.join(jdir, "secret")):
            time.sleep(0.02)
        time.sleep(0.3)
        co.proc.send_signal(signal.SIGSTOP)  # training goes on; nobody will take the bank
        bank = os.path.join(jdir, "out.bank.safetensors")
        end = time.time() + 120
        while time.time() < end and not os.path.exists(bank):
            time.sleep(0.05)
        check(os.path.exists(bank), f"{name}: rank 0 wrote the bank into the job directory first")
        co.proc.send_signal(signal.SIGKILL)
        time.sleep(8)  # down longer than the 5 s finish timeout
        co.proc.send_signal(signal.SIGCONT)
        co.restart()
        env["MELBO_COORD"] = co.addr
        end = time.time() + 60
        state = ""
        while time.time() < end and state != "DONE":
            rows = {j["job"]: j for j in json.loads(cli("ls", "--json").stdout or "[]")}
            state = rows.get(int(job), {}).get("state", "")
            time.sleep(0.2)
        shown = json.loads(cli("show", job, "--json").stdout)
        got = os.path.join(tmp, name + ".bank.safetensors")
        cli("fetch", job, "-o", got)
        same = os.path.exists(got) and hashlib.sha256(open(got, "rb").read()).digest() == \
            hashlib.sha256(open(bank, "rb").read()).digest()
        listed = any(b["bank"] == shown.get("bank") for b in json.loads(cli("bank", "ls", "--json").stdout))
        log = open(co.log_path).read()
        how = "adopted" if f"job {job}: adopted bank" in log else "uploaded by rank 0"
        return state, same and listed, how
    finally:
        co.stop()


st, ok, how = scenario("keep", 60)
check(st == "DONE" and ok and how == "uploaded by rank 0",
      f"rank 0 kept its bank through the outage: job {st}, bank catalogued, the same bytes ({how})")
st, ok, how = scenario("adopt", 2)
check(st == "DONE" and ok and how == "adopted",
      f"rank 0 gave up: the coordinator adopted the bank from the job directory: job {st}, "
      f"catalogued, the same bytes ({how})")
sys.exit(1 if fail else 0)
