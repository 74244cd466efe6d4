"""tests/service/test_exactly_once.py BUILD REPO GOLDEN TMP - exactly-once submit (issue 22): the
client's request id makes a retried submit return the job it made, whatever was lost.

  1. on the wire: a SubmitRequest whose reply is never read (the connection closed at once),
     then the same request on a new connection: the same job (SubmitReply.existing), one job;
  2. two connections sending the same request at the same moment: one job;
  3. the CLI: `melbo submit --request-id RID` twice prints the same id (the second says so on
     stderr); another user's request with the same id is another job; a malformed id is refused;
  4. the coordinator frozen (SIGSTOP) then killed while `melbo submit` waits, and started again on
     the same address: the CLI sends the request again and prints the one job;
  5. Ctrl-C while `melbo submit` waits: it prints the request id and how to find the job; the
     same command with --request-id then gives exactly one job."""
import json, os, signal, subprocess, sys, threading, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

build, repo, golden, tmp = sys.argv[1:5]
pb = mw.load_pb2(repo, os.path.join(tmp, "py"))
port = mw.free_port()
co = mw.Coord(build, os.path.join(tmp, "run"), extra=["--listen", f"127.0.0.1:{port}"])
melbo = os.path.join(build, "cli", "melbo")
model = os.path.abspath(os.path.join(golden, "models", "llama3"))
args = ["--model", model, "--prompt-ids", "492,403,287", "--source-layer", "1", "--target-layer",
        "4", "--radius", "4", "--vectors", "2", "--steps", "2", "--max-new-tokens", "2"]
fail = 0


def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    fail |= not cond


def env_for(token):
    return dict(os.environ, MELBO_COORD=co.addr, MELBO_TOKEN=token,
                MELBO_COORD_FINGERPRINT=co.fingerprint)


def cli(*a, token=None):
    p = subprocess.run([melbo, *a], env=env_for(token or co.token), capture_output=True, text=True,
                       timeout=120)
    return p.returncode, p.stdout.strip(), p.stderr.strip()


def n_jobs():
    return len(json.loads(cli("ls", "--json")[1]))


def submit_wire(rid, read_reply=True):
    c = mw.Conn(pb, co.addr, fingerprint=co.fingerprint)
    c.hello(co.token)
    spec = mw.job_spec(pb, golden, vectors=2, steps=2, max_new_tokens=2)
    if not read_reply:
        c.send(pb.Envelope(id=7, submit=pb.SubmitRequest(spec=spec, request_id=rid)))
        c.close()
        return None
    rep = c.call(submit=pb.SubmitRequest(spec=spec, request_id=rid))
    c.close()
    return rep.submitted if rep.WhichOneof("body") == "submitted" else rep.error


try:
    # ---- 1. a lost reply ---------------------------------------------------------------------
    before = n_jobs()
    submit_wire("lost-reply-0000000001", read_reply=False)
    time.sleep(0.5)
    r = submit_wire("lost-reply-0000000001")
    check(getattr(r, "existing", False) and n_jobs() == before + 1,
          f"reply lost, request sent again: job {getattr(r, 'job_id', r)} (existing), one job")

    # ---- 2. the same request twice at once -----------------------------------------------------
    before = n_jobs()
    out = []
    ts = [threading.Thread(target=lambda: out.append(submit_wire("concurrent-000000000002")))
          for _ in range(2)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    ids = {getattr(r, "job_id", None) for r in out}
    check(len(ids) == 1 and None not in ids and n_jobs() == before + 1
          and sorted(bool(r.existing) for r in out) == [False, True],
          f"two connections, one request id: one job {ids}")

    # ---- 3. the CLI ------------------------------------------------------------------------
    st1, j1, e1 = cli("submit", *args, "--request-id", "cli-request-00000003")
    st2, j2, e2 = cli("submit", *args, "--request-id", "cli-request-00000003")
    check(st1 == st2 == 0 and j1 == j2 and j1.isdigit() and "submitted before" in e2,
          f"melbo submit --request-id twice: job {j1} both times ({e2!r})")
    other = subprocess.run([os.path.join(build, "coord", "melbo-coord"), "token", "add", "olga",
                            "--state", co.state], capture_output=True, text=True).stdout
    otok = [l.split("=", 1)[1] for l in other.splitlines() if l.startswith("MELBO_TOKEN=")][0]
    st3, j3, _ = cli("submit", *args, "--request-id", "cli-request-00000003", token=otok)
    check(st3 == 0 and j3 != j1, f"another user, the same request id: another job ({j3})")
    st4, _, e4 = cli("submit", *args, "--request-id", "short")
    check(st4 != 0 and "request_id must be 16 to 64" in e4, f"a malformed request id: {e4!r}")

    # ---- 4. the coordinator frozen, killed and started again while the CLI waits ----------------
    before = n_jobs()
    co.proc.send_signal(signal.SIGSTOP)
    p = subprocess.Popen([melbo, "submit", *args], env=env_for(co.token), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    co.proc.send_signal(signal.SIGCONT)
    co.restart()  # kill -9 and serve again: the same --listen address
    out, err = p.communicate(timeout=120)
    check(p.returncode == 0 and out.strip().isdigit() and n_jobs() == before + 1,
          f"coordinator frozen then killed mid-submit: the CLI sent the request again, job "
          f"{out.strip()}, one job ({err.strip().splitlines()[-1] if err.strip() else ''!r})")

    # ---- 5. Ctrl-C while waiting ---------------------------------------------------------------
    before = n_jobs()
    co.proc.send_signal(signal.SIGSTOP)
    p = subprocess.Popen([melbo, "submit", *args], env=env_for(co.token), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    co.proc.send_signal(signal.SIGCONT)
    rid = err.split("--request-id ")[1].split()[0] if "--request-id " in err else ""
    check(p.returncode == 130 and rid and "may have reached the coordinator" in err,
          f"Ctrl-C while waiting: exit {p.returncode}, the hint names request {rid}")
    st, j5, _ = cli("submit", *args, "--request-id", rid)
    st6, j6, _ = cli("submit", *args, "--request-id", rid)
    check(st == st6 == 0 and j5 == j6 and n_jobs() == before + 1,
          f"the same command with --request-id {rid}: job {j5}, once")
finally:
    co.stop()
sys.exit(1 if fail else 0)
