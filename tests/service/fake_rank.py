#!/usr/bin/python3
"""tests/service/fake_rank.py train [options] - a stand-in for melbo-rank that trains nothing: the
coordinator launches it (melbo-coord serve --rank-binary) as it would the ranks, and it plays
rank 0's side of the protocol (DESIGN §4) with the official Python protobuf runtime: RankHello
with the job's secret, a RUNNING state event, a LOG event with terminal escapes and one STEP event
(then, with FAKE_RANK_PAUSE=S in its environment, S silent seconds), then uploads the file given as
--init verbatim as the job's bank, and RankDone. So a test decides byte for byte which bank the
coordinator stores (an adapter bank, a vector bank, a bank from before `kind` existed) without
depending on the trainer. Exits 0 once the coordinator acknowledged the end, 1 otherwise.

fake_rank.py bank export|report ... - what the coordinator runs for `melbo bank export|report`.
It appends {"argv", "cwd", "pid", "pgid", "time"} as a JSON line to $FAKE_RANK_LOG, then does
what the first line of the file $FAKE_RANK_MODE says (no file: "real"):
  real          exec $MELBO_REAL_RANK with the same arguments (the real export or report)
  sleep S       sleep S seconds, then exec the real one: a slow melbo-rank (queueing)
  hang          start a child `sleep 600` (its pid logged as "child") and sleep 600 seconds: a
                melbo-rank that never ends (time limits, kills of the whole process group)
  orphan        start a child `sleep 600` (logged as "child": it holds stderr open), then exec
                the real one: a melbo-rank that leaves something running behind
  big N         write N bytes (a fixed pattern) to the -o path: an output of many chunks
  dir           write a directory at -o: b.bin (300000 bytes), a.txt, empty (0 bytes)
  symlink       make -o a symbolic link to $FAKE_RANK_LOG (the coordinator must not follow it)
  status N      print a line to stderr and exit N
  noisy         print 100000 bytes to stderr and exit 1"""
import hashlib, json, os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

def arg(name, default=None):
    argv = sys.argv
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default

def pattern(n):
    """n bytes of a fixed pattern that no chunk boundary can hide."""
    return bytes((i * 7 + i // 251) & 0xFF for i in range(n))

def bank_tool():
    argv = sys.argv
    out = argv[argv.index("-o") + 1] if "-o" in argv else None
    rec = {"argv": argv[1:], "cwd": os.getcwd(), "pid": os.getpid(), "pgid": os.getpgid(0),
           "time": time.time()}
    mode_file = os.environ.get("FAKE_RANK_MODE", "")
    mode = open(mode_file).read().split() if mode_file and os.path.exists(mode_file) else []
    mode = mode or ["real"]
    if mode[0] in ("hang", "orphan"):
        rec["child"] = subprocess.Popen(["sleep", "600"]).pid
    if os.environ.get("FAKE_RANK_LOG"):
        with open(os.environ["FAKE_RANK_LOG"], "a") as f:
            f.write(json.dumps(rec) + "\n")
    if mode[0] in ("sleep", "hang"):
        time.sleep(float(mode[1]) if mode[0] == "sleep" else 600)
    if mode[0] in ("real", "sleep", "orphan"):
        real = os.environ["MELBO_REAL_RANK"]
        os.execv(real, [real] + argv[1:])
    if mode[0] == "big":
        open(out, "wb").write(pattern(int(mode[1])))
    elif mode[0] == "dir":
        os.mkdir(out)
        open(os.path.join(out, "b.bin"), "wb").write(pattern(300000))
        open(os.path.join(out, "a.txt"), "w").write("adapter\n")
        open(os.path.join(out, "empty"), "wb").close()
    elif mode[0] == "symlink":
        os.symlink(os.environ["FAKE_RANK_LOG"], out)
    elif mode[0] == "status":
        print("fake_rank: failing on purpose", file=sys.stderr)
        return int(mode[1])
    elif mode[0] == "noisy":
        sys.stderr.write("x" * 99990 + "\nlast line\n")
        return 1
    return 0

def main():
    if len(sys.argv) >= 4 and sys.argv[1:3] == ["train", "--args-file"]:
        # the coordinator passes the ranks' options in a 0600 file (NUL after each), not in argv
        words = open(sys.argv[3], "rb").read().split(b"\0")[:-1]
        sys.argv = sys.argv[:2] + [w.decode() for w in words] + sys.argv[4:]
    if len(sys.argv) >= 2 and sys.argv[1] == "bank":
        return bank_tool()
    if len(sys.argv) < 2 or sys.argv[1] != "train":
        print("fake_rank: only `train` is played", file=sys.stderr)
        return 2
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pb = mw.load_pb2(repo, os.path.join(os.getcwd(), "fake_rank_py"))
    bank = open(arg("--init"), "rb").read()
    k = int(arg("--vectors", "32"))
    # the secret file: the job's secret, then (TLS) the certificate's fingerprint to pin
    lines = open(os.environ["MELBO_JOB_SECRET_FILE"]).read().split("\n")
    secret, fp = lines[0].strip(), (lines[1].strip() if len(lines) > 1 else "")
    c = mw.Conn(pb, os.environ["MELBO_COORD_ADDR"], fingerprint=fp)
    rep = c.call(rank_hello=pb.RankHello(protocol_version=1, job_id=int(os.environ["MELBO_JOB_ID"]),
                                         secret=secret, world_size=1))
    if rep.WhichOneof("body") != "rank_hello_ok":
        print(f"fake_rank: hello refused: {rep.error.message}", file=sys.stderr)
        return 1
    seq = rep.rank_hello_ok.last_seq
    # a log line with terminal escapes, as a rank echoing user text could send: every reader
    # (melbo watch's live view) must show it escaped
    events = [pb.JobEvent(kind=pb.JobEvent.STATE, state=pb.RUNNING, detail="fake rank"),
              pb.JobEvent(kind=pb.JobEvent.LOG, state=pb.RUNNING,
                          log="fake rank says \x1b]0;pwned\x07\x1b[2J\u009b31m hi"),
              pb.JobEvent(kind=pb.JobEvent.STEP, step=pb.StepInfo(
                  wave=0, n_waves=1, step=1, steps=1, first_vector=0, n_vectors=k,
                  total_vectors=k, objective=[float(i) for i in range(k)]))]
    for ev in events:
        seq += 1
        c.send(pb.Envelope(rank_event=pb.RankEvent(seq=seq, event=ev)))
    # FAKE_RANK_PAUSE=S: a quiet job, silent for S seconds before its bank (keepalive tests)
    time.sleep(float(os.environ.get("FAKE_RANK_PAUSE", "0")))
    chunk = 1 << 20
    for off in range(0, max(len(bank), 1), chunk):
        last = off + chunk >= len(bank)
        up = pb.BankUpload(offset=off, data=bank[off:off + chunk], total_size=len(bank), last=last)
        if last:
            up.sha256 = hashlib.sha256(bank).hexdigest()
        c.send(pb.Envelope(bank_upload=up))
    c.send(pb.Envelope(rank_done=pb.RankDone(last_seq=seq)))
    while True:
        env = c.recv()
        kind = env.WhichOneof("body")
        if kind == "rank_ack" and env.rank_ack.done:
            return 0
        if kind == "error":
            print(f"fake_rank: {env.error.message}", file=sys.stderr)
            return 1

if __name__ == "__main__":
    sys.exit(main())
