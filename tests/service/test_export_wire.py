"""tests/service/test_export_wire.py BUILD REPO GOLDEN TMP - bank exports and reports on the wire
(ExportRequest, ReportRequest, ExportChunk), against a coordinator whose melbo-rank is
tests/service/fake_rank.py: it logs the argv and process group it was started with, and plays
the real melbo-rank or a misbehaving one (slow, hanging, failing, writing big, odd or many-file
outputs), so that the coordinator's side can be checked where the real one cannot be made to go:

  - the argv is fixed: `bank export|report STATE/banks/ID.bank.safetensors`, every user value
    glued to its option (--vector=..., --format=..., --adapter=...), -o in a private directory
    under STATE/exports that is the working directory, in a process group of its own;
  - hostile values (an expression or a format that looks like options, path characters in the
    bank id, control characters, huge values) never make anything write outside that directory,
    and the ones the coordinator can judge never reach melbo-rank;
  - outputs of several chunks, directories in name order with an empty file, a symbolic link
    (refused, never followed), failures (melbo-rank's message and ERROR_INVALID for exit 1 and 2,
    ERROR_INTERNAL otherwise, a long stderr cut to its end);
  - the time limit, a client that goes away, and SIGTERM to the coordinator each kill the whole
    process group, and what melbo-rank leaves running when it exits is killed at once; one export
    per connection; at most two run at once, the others queue;
  - STATE/exports is empty after each of them, and emptied when `serve` starts."""
import hashlib, json, os, shutil, signal, socket, subprocess, sys, threading, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

build, repo, golden, tmp = (os.path.abspath(a) for a in sys.argv[1:5])
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)
pb = mw.load_pb2(repo, os.path.join(tmp, "py"))
here = os.path.dirname(os.path.abspath(__file__))
fake = os.path.join(here, "fake_rank.py")
real = os.path.join(build, "rank", "melbo-rank")
melbo = os.path.join(build, "cli", "melbo")
log, mode_file, canary = (os.path.join(tmp, n) for n in ("rank.log", "mode", "canary"))
TIMEOUT = 4
fail = 0

def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    fail |= not cond

def mode(m):
    open(mode_file, "w").write(m + "\n")

def records():
    return [json.loads(l) for l in open(log)] if os.path.exists(log) else []

def alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")

def gone(pids, within=3.0):
    end = time.time() + within
    while time.time() < end and any(alive(p) for p in pids):
        time.sleep(0.05)
    return not any(alive(p) for p in pids)

def wait_records(n, within=10.0):
    end = time.time() + within
    while time.time() < end and len(records()) < n:
        time.sleep(0.02)
    return records()

# Two real banks, written by melbo-rank train here and uploaded as jobs' banks by the fake rank.
env = dict(os.environ, OMP_NUM_THREADS="1")
model = os.path.join(golden, "models", "llama3")
common = ["--model", model, "--source-layer", "1", "--target-layer", "4", "--max-new-tokens", "4"]
vfile, afile = os.path.join(tmp, "v.bank.safetensors"), os.path.join(tmp, "a.bank.safetensors")
subprocess.run([real, "train", *common, "--prompt-ids", "492,403,287,109", "--radius", "4",
                "--vectors", "3", "--steps", "4", "--out", vfile], check=True, env=env,
               capture_output=True)
subprocess.run([real, "train", *common, "--prompt", "Hi", "--adapter-rank", "2", "--vectors", "2",
                "--steps", "2", "--out", afile], check=True, env=env, capture_output=True)
os.environ.update(FAKE_RANK_LOG=log, FAKE_RANK_MODE=mode_file, MELBO_REAL_RANK=real)
co = mw.Coord(build, os.path.join(tmp, "run"),
              extra=["--rank-binary", fake, "--export-timeout", str(TIMEOUT)])
exports_dir = os.path.join(co.state, "exports")

def local(bank_id, *args):
    """melbo-rank here on a copy of the bank named as the coordinator stores it."""
    src = {vid: vfile, aid: afile}[bank_id]
    named = os.path.join(tmp, f"{bank_id}.bank.safetensors")
    if not os.path.exists(named):
        shutil.copy(src, named)
    out = os.path.join(tmp, "local.out")
    shutil.rmtree(out, ignore_errors=True)
    if os.path.exists(out):
        os.remove(out)
    sub = ["report", named] if args[0] == "report" else ["export", named, *args]
    subprocess.run([real, "bank", *sub, "-o", out], check=True, capture_output=True)
    if os.path.isdir(out):
        return {n: open(os.path.join(out, n), "rb").read() for n in sorted(os.listdir(out))}
    return {"": open(out, "rb").read()}

def empty_exports(label):
    left = os.listdir(exports_dir)
    check(left == [], f"{label}: STATE/exports is empty {left}")

try:
    c = mw.Conn(pb, co.addr)
    c.hello(co.token)

    def submit(bank, **kw):  # the coordinator opens no user-named file: the bank is uploaded
        init = c.upload("init", bank)
        return c.call(submit=pb.SubmitRequest(spec=mw.job_spec(pb, golden, init=init, **kw))).submitted.job_id

    def watch(job):
        c.next_id += 1
        c.send(pb.Envelope(id=c.next_id, watch=pb.WatchRequest(job_id=job, from_event=1, follow=True)))
        last = None
        while True:
            e = c.recv()
            if e.WhichOneof("body") == "event":
                last = e.event
            elif e.WhichOneof("body") == "watch_end":
                return last

    jv = submit(vfile, vectors=3, steps=4)
    ja = submit(afile, radius=None, adapter_rank=2, vectors=2, steps=2)
    ev, ea = watch(jv), watch(ja)
    vid = hashlib.sha256(open(vfile, "rb").read()).hexdigest()[:16]
    aid = hashlib.sha256(open(afile, "rb").read()).hexdigest()[:16]
    check(ev.bank_id == vid and ea.bank_id == aid, f"two real banks stored: {vid} (vectors), {aid} (adapters)")
    stored = {b: os.path.join(co.state, "banks", f"{b}.bank.safetensors") for b in (vid, aid)}

    # ---- the real melbo-rank behind it, and the argv it gets ------------------------------------
    mode("real")
    x = c.export(bank_export=pb.ExportRequest(bank_id=aid, adapter=1, format="gguf-lora"))
    check(x.error is None and x.files == local(aid, "--adapter", "1", "--format", "gguf-lora"),
          f"gguf-lora: the bytes melbo-rank writes here ({x.chunks} chunk)")
    r = records()[-1]
    check(r["argv"] == ["bank", "export", stored[aid], "--format=gguf-lora", "--adapter=1", "-o",
                        os.path.join(r["cwd"], "export")]
          and os.path.dirname(r["cwd"]) == exports_dir and r["pgid"] == r["pid"],
          f"argv {r['argv'][:2]} BANK {r['argv'][3:5]} -o in its private directory, own process group")
    x = c.export(bank_export=pb.ExportRequest(bank_id=aid, adapter=0, format="peft"))
    check(x.error is None and x.directory and x.files == local(aid, "--adapter", "0", "--format", "peft"),
          f"peft: a directory of {sorted(x.files)}")
    x = c.export(bank_export=pb.ExportRequest(bank_id=vid, vector="-2*1+r0", format="gguf-control-vector"))
    check(x.error is None and x.files == local(vid, "--vector=-2*1+r0", "--format", "gguf-control-vector"),
          "control vector of '-2*1+r0' (an expression starting with '-')")
    check(records()[-1]["argv"][4] == "--vector=-2*1+r0", "the expression glued to --vector=")
    x = c.export(bank_report=pb.ReportRequest(bank_id=vid))
    check(x.error is None and x.files == local(vid, "report"), "report: the bytes melbo-rank writes here")
    check(records()[-1]["argv"][:4] == ["bank", "report", stored[vid], "-o"], "report argv")
    empty_exports("after four exports")

    # ---- hostile values -----------------------------------------------------------------------
    n_before = len(records())
    reach = [  # values melbo-rank itself must judge: one argument each, refused by it
        (dict(vector=f"--out={canary}", format="gguf-control-vector"), f"--vector=--out={canary}"),
        (dict(vector=f"0 -o {canary}", format="gguf-control-vector"), f"--vector=0 -o {canary}"),
    ]
    for kw, arg in reach:
        x = c.export(bank_export=pb.ExportRequest(bank_id=vid, **kw))
        check(x.error is not None and x.error.code == pb.ERROR_INVALID and "melbo-rank bank export" in x.error.message
              and arg in records()[-1]["argv"], f"{kw['vector']!r}: one argument, melbo-rank refuses: {x.error.message if x.error else ''}")
    n_reached = len(records())
    stop = [  # values the coordinator refuses before anything runs
        (dict(bank_id=vid, format=f"gguf-lora -o {canary}", adapter=0), pb.ERROR_INVALID, "is not a format name"),
        (dict(bank_id=vid, format=f"--out={canary}", adapter=0), pb.ERROR_INVALID, "is not a format name"),
        (dict(bank_id=vid, format="../../x", adapter=0), pb.ERROR_INVALID, "is not a format name"),
        (dict(bank_id="../../../etc/passwd", format="peft", adapter=0), pb.ERROR_INVALID, "is not a bank id"),
        (dict(bank_id="", format="peft", adapter=0), pb.ERROR_INVALID, "is not a bank id"),
        (dict(bank_id="0123abcd", format="peft", adapter=0), pb.ERROR_NOT_FOUND, "no bank 0123abcd"),
        (dict(bank_id=vid, format="gguf-control-vector", vector="0\n-o x"), pb.ERROR_INVALID, "printable ASCII"),
        (dict(bank_id=vid, format="gguf-control-vector", vector="1+" * 3000 + "1"), pb.ERROR_INVALID, "printable ASCII"),
        (dict(bank_id=aid, format="peft", adapter=-1), pb.ERROR_INVALID, "--adapter must be >= 0"),
        (dict(bank_id=aid, format="peft", adapter=0, vector="0"), pb.ERROR_INVALID, "not both"),
        (dict(bank_id=aid, adapter=0), pb.ERROR_INVALID, "which format"),
    ]
    for kw, code, needle in stop:
        x = c.export(bank_export=pb.ExportRequest(**kw))
        check(x.error is not None and x.error.code == code and needle in x.error.message,
              f"refused by the coordinator: {str(kw)[:70]}: {x.error.message[:80] if x.error else 'not refused'}")
    x = c.export(bank_report=pb.ReportRequest(bank_id="../x"))
    check(x.error is not None and x.error.code == pb.ERROR_INVALID, "report: a bank id with path characters")
    check(len(records()) == n_reached == n_before + 2, "only the two values for melbo-rank to judge ran it")
    check(not os.path.exists(canary) and not os.path.exists(os.path.join(exports_dir, "..", "x")),
          "nothing written at the paths the values name")
    empty_exports("after the hostile values")

    # ---- outputs of every shape ---------------------------------------------------------------
    fake_pattern = bytes((i * 7 + i // 251) & 0xFF for i in range(2621441))  # fake_rank.pattern
    mode("big 2621441")
    x = c.export(bank_export=pb.ExportRequest(bank_id=aid, adapter=0, format="gguf-lora"))
    check(x.error is None and x.chunks == 3 and x.files == {"": fake_pattern},
          f"a 2.5 MiB output in {x.chunks} chunks of at most 1 MiB")
    env_cli = dict(os.environ, MELBO_COORD=co.addr, MELBO_TOKEN=co.token)
    p = subprocess.run([melbo, "bank", "export", aid, "--adapter", "0", "--format", "gguf-lora", "-o",
                        os.path.join(tmp, "big.gguf")], env=env_cli, capture_output=True, text=True)
    check(p.returncode == 0 and open(os.path.join(tmp, "big.gguf"), "rb").read() == fake_pattern,
          f"melbo writes it whole: {p.stderr.strip()}")
    mode("dir")
    x = c.export(bank_export=pb.ExportRequest(bank_id=aid, adapter=0, format="peft"))
    want = {"a.txt": b"adapter\n", "b.bin": fake_pattern[:300000], "empty": b""}
    check(x.error is None and x.directory and list(x.files) == ["a.txt", "b.bin", "empty"]
          and x.files == want and x.chunks == 3, f"a directory: files in name order, an empty one ({x.chunks} chunks)")
    out_dir = os.path.join(tmp, "cli_dir")
    p = subprocess.run([melbo, "bank", "export", aid, "--adapter", "0", "--format", "peft", "-o", out_dir],
                       env=env_cli, capture_output=True, text=True)
    check(p.returncode == 0 and sorted(os.listdir(out_dir)) == sorted(want)
          and all(open(os.path.join(out_dir, n), "rb").read() == b for n, b in want.items()),
          f"melbo writes the directory: {p.stderr.strip()}")
    check(not [n for n in os.listdir(tmp) if ".part" in n], "no partial files next to it")
    mode("symlink")
    x = c.export(bank_export=pb.ExportRequest(bank_id=aid, adapter=0, format="peft"))
    check(x.error is not None and x.error.code == pb.ERROR_INTERNAL and "not a file" in x.error.message
          and os.path.exists(log), f"an output that is a symbolic link: refused, its target kept: {x.error.message if x.error else ''}")
    mode("status 1")
    x = c.export(bank_export=pb.ExportRequest(bank_id=aid, adapter=0, format="peft"))
    check(x.error is not None and x.error.code == pb.ERROR_INVALID and x.error.message == "fake_rank: failing on purpose",
          "exit 1: ERROR_INVALID with melbo-rank's stderr as it is")
    mode("status 3")
    x = c.export(bank_export=pb.ExportRequest(bank_id=aid, adapter=0, format="peft"))
    check(x.error is not None and x.error.code == pb.ERROR_INTERNAL and "exited with status 3: fake_rank" in x.error.message,
          f"exit 3: ERROR_INTERNAL: {x.error.message if x.error else ''}")
    mode("noisy")
    x = c.export(bank_export=pb.ExportRequest(bank_id=aid, adapter=0, format="peft"))
    check(x.error is not None and x.error.code == pb.ERROR_INVALID and len(x.error.message) <= 900
          and x.error.message.endswith("last line"), f"100 kB of stderr: the last {len(x.error.message) if x.error else 0} bytes")
    empty_exports("after odd outputs and failures")

    # ---- time limit, one per connection, a client that leaves, queueing ------------------------
    mode("hang")
    t0 = time.time()
    x = c.export(bank_export=pb.ExportRequest(bank_id=aid, adapter=0, format="peft"))
    took = time.time() - t0
    r = records()[-1]
    check(x.error is not None and x.error.code == pb.ERROR_INTERNAL and f"did not finish within {TIMEOUT} s" in x.error.message
          and TIMEOUT - 0.5 <= took < TIMEOUT + 3, f"time limit: stopped after {took:.1f} s: {x.error.message if x.error else ''}")
    check(gone([r["pid"], r["child"]]), "the time limit killed the whole process group (melbo-rank and its child)")
    empty_exports("after the time limit")
    mode("orphan")
    t0 = time.time()
    x = c.export(bank_export=pb.ExportRequest(bank_id=aid, adapter=0, format="gguf-lora"))
    took = time.time() - t0
    check(x.error is None and x.files == local(aid, "--adapter", "0", "--format", "gguf-lora") and took < TIMEOUT - 1,
          f"melbo-rank done, a child of it left holding stderr: answered after {took:.1f} s, not at the time limit")
    check(gone([records()[-1]["child"]]), "and what it left running is killed")

    mode("hang")
    c2 = mw.Conn(pb, co.addr)
    c2.hello(co.token)
    n = len(records())
    c2.send(pb.Envelope(id=1, bank_export=pb.ExportRequest(bank_id=aid, adapter=0, format="peft")))
    r = wait_records(n + 1)[-1]
    c2.send(pb.Envelope(id=2, bank_report=pb.ReportRequest(bank_id=aid)))
    e = c2.recv()
    check(e.id == 2 and e.WhichOneof("body") == "error" and e.error.code == pb.ERROR_STATE
          and "already in progress" in e.error.message, "a second export on the same connection: ERROR_STATE")
    c2.close()
    check(gone([r["pid"], r["child"]]), "the client went away: its melbo-rank's process group is killed")
    time.sleep(0.2)
    empty_exports("after the client went away")

    mode("sleep 1")
    n = len(records())
    results = [None] * 3
    def one(k):
        cc = mw.Conn(pb, co.addr)
        cc.hello(co.token)
        results[k] = cc.export(bank_export=pb.ExportRequest(bank_id=aid, adapter=k % 2, format="gguf-lora"))
        cc.close()
    threads = [threading.Thread(target=one, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    starts = sorted(r["time"] for r in records()[n:])
    check(all(x and x.error is None and x.files == local(aid, "--adapter", str(k % 2), "--format", "gguf-lora")
              for k, x in enumerate(results)), "three exports at once: each gets its own bytes")
    check(len(starts) == 3 and starts[1] - starts[0] < 0.8 and starts[2] - starts[0] >= 0.9,
          f"two run at once, the third waits: starts at +{[round(s - starts[0], 2) for s in starts]} s")
    empty_exports("after the queue")

    # ---- SIGTERM while an export runs; a restart empties STATE/exports -------------------------
    mode("hang")
    c3 = mw.Conn(pb, co.addr)
    c3.hello(co.token)
    n = len(records())
    c3.send(pb.Envelope(id=1, bank_report=pb.ReportRequest(bank_id=vid)))
    r = wait_records(n + 1)[-1]
    co.proc.send_signal(signal.SIGTERM)
    try:
        st = co.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        st = "still running"
    check(st == 0, f"SIGTERM during an export: the coordinator exits 0 (status {st})")
    check(gone([r["pid"], r["child"]]), "and the export's process group is killed")
    os.makedirs(os.path.join(exports_dir, "export-left", "export"))
    open(os.path.join(exports_dir, "export-left", "export", "f"), "w").write("x")
    os.symlink(log, os.path.join(exports_dir, "link"))
    co.restart()
    check(os.listdir(exports_dir) == [] and os.path.exists(log),
          "serve empties STATE/exports at start (a symbolic link removed, not followed)")
    mode("real")
    c = mw.Conn(pb, co.addr)
    c.hello(co.token)
    x = c.export(bank_report=pb.ReportRequest(bank_id=aid))
    check(x.error is None and x.files == local(aid, "report"), "after the restart: a report as before")
finally:
    co.stop()
sys.exit(fail)
