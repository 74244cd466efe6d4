"""tests/service/test_adapter_show.py BUILD REPO GOLDEN TMP - the coordinator and the CLI with the
two kinds of bank (DESIGN §4), independently of the trainer: the jobs run tests/service/
fake_rank.py in place of melbo-rank, which uploads a bank written here (its --init file) as the
job's bank. An adapter bank (kind=adapter: lora_A / lora_B, completions under "adapters") is
shown as adapters with their rank, alpha and module, by ShowJob, ShowBank and ListBanks on the
wire and by `melbo show`, `melbo bank show`, `melbo bank ls` and `melbo ls`; a vector bank as
before, and a bank without `kind` (before adapters) as a vector bank. All of it survives a
restart of the coordinator (the job table and the catalog). `melbo watch` on a terminal (a pty)
shows the fake rank's log line, full of terminal escapes, escaped, and its rate in adapter-steps/s
for an adapter job. The coordinator refuses adapter
specs the ranks would refuse (--radius with --adapter-rank, rank 0, a rank above the model's
widths), even from a client that does not check."""
import json, os, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

build, repo, golden, tmp = sys.argv[1:5]
pb = mw.load_pb2(repo, os.path.join(tmp, "py"))
fake = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_rank.py")
co = mw.Coord(build, os.path.join(tmp, "run"), extra=["--rank-binary", fake])
melbo = os.path.join(build, "cli", "melbo")
fail = 0

def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what)
    fail |= not cond

def cli(*args):
    env = dict(os.environ, MELBO_COORD=co.addr, MELBO_TOKEN=co.token)
    p = subprocess.run([melbo, *args], env=env, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr

D, DMLP, R, K, STEPS = 8, 16, 4, 2, 3
common = {"format": "melbo-bank", "format_version": "1", "model_name": "llama3",
          "model_fingerprint": "f00d", "architecture": "LlamaForCausalLM", "d_model": str(D),
          "n_layers": "6", "source_layer": "1", "target_layer": "4", "p": "2", "q": "2",
          "steps": str(STEPS), "prompts": json.dumps(["<prompt>"])}
prompt_tensors = {"prompt_ids": ("I32", [1, 2], [1, 7]), "prompt_lengths": ("I32", [1], [2])}

def objective(k):  # F per vector / adapter and step; the final values are 10 * (i + 1)
    return ("F32", [k, STEPS], [float(10 * (i + 1) * (s + 1) / STEPS) for i in range(k)
                                for s in range(STEPS)])

adapter_bank = os.path.join(tmp, "adapter.bank.safetensors")
mw.write_safetensors(adapter_bank, {
    "lora_A": ("F32", [K, R, DMLP], [0.5] * (K * R * DMLP)),
    "lora_B": ("F32", [K, D, R], [0.25] * (K * D * R)),
    "objective": objective(K), **prompt_tensors},
    {**common, "kind": "adapter", "adapter_rank": str(R), "adapter_alpha": "0.349999994",
     "adapter_module": "mlp.down_proj", "d_mlp": str(DMLP), "orthogonal": "false",
     "completions": json.dumps({"adapters": [["Olá, dois mais dois\nsecond line"], ["Hola"]],
                                "unsteered": ["Two plus two"], "random": [["noise"]]})})
vector_bank = os.path.join(tmp, "vector.bank.safetensors")
mw.write_safetensors(vector_bank, {
    "vectors": ("F32", [3, D], [0.1] * (3 * D)), "objective": objective(3), **prompt_tensors},
    {**common, "kind": "vector", "radius": "4",
     "completions": json.dumps({"vectors": [["v0"], ["v1\nmore"], ["v2"]], "unsteered": ["u"]})})
legacy_bank = os.path.join(tmp, "legacy.bank.safetensors")
mw.write_safetensors(legacy_bank, {
    "vectors": ("F32", [1, D], [0.1] * D), "objective": objective(1), **prompt_tensors},
    {**common, "radius": "2.5", "completions": json.dumps({"vectors": [["old"]]})})

try:
    c = mw.Conn(pb, co.addr)
    c.hello(co.token)

    def submit(**kw):
        if "init" in kw:  # the coordinator opens no user-named file: the bank is uploaded
            kw["init"] = c.upload("init", kw["init"])
        rep = c.call(submit=pb.SubmitRequest(spec=mw.job_spec(pb, golden, **kw)))
        return rep.submitted.job_id if rep.WhichOneof("body") == "submitted" else rep.error

    def watch(job):
        c.next_id += 1
        c.send(pb.Envelope(id=c.next_id, watch=pb.WatchRequest(job_id=job, from_event=1, follow=True)))
        last = None
        while True:
            env = c.recv()
            if env.WhichOneof("body") == "event":
                last = env.event
            elif env.WhichOneof("body") == "watch_end":
                return pb.JobState.Name(last.state) if last else "none"
            else:
                raise RuntimeError(f"unexpected {env.WhichOneof('body')}: {env}")

    # ---- refusals: the ranks' own checks, at submit -----------------------------------------
    for kw, needle in [(dict(adapter_rank=4), "--radius does not apply to adapters"),
                       (dict(adapter_rank=0, radius=None), "--adapter-rank"),
                       (dict(adapter_rank=100000, radius=None), "--adapter-rank 100000 is more than"),
                       (dict(adapter_rank=4, radius=None, orthogonal=True), "--orthogonal"),
                       (dict(adapter_alpha=0, adapter_rank=4, radius=None), "--adapter-alpha")]:
        e = submit(**kw)
        check(not isinstance(e, int) and e.code == pb.ERROR_INVALID and needle in e.message,
              f"submit {kw} refused: {getattr(e, 'message', e)!r}")

    # ---- three jobs, three banks ------------------------------------------------------------
    ja = submit(adapter_rank=R, radius=None, vectors=K, steps=STEPS, init=adapter_bank)
    jv = submit(vectors=3, steps=STEPS, init=vector_bank)
    jl = submit(vectors=1, steps=STEPS, init=legacy_bank)
    check(all(isinstance(j, int) for j in (ja, jv, jl)), f"submitted jobs {ja}, {jv}, {jl}")
    for j in (ja, jv, jl):
        check(watch(j) == "DONE", f"job {j} DONE (fake rank uploaded its bank)")

    def verify(label):
        s = c.call(show_job=pb.ShowJobRequest(job_id=ja)).job
        rows = [(a.index, round(a.objective, 4), a.completion) for a in s.adapters]
        check(s.job.adapter_rank == R and len(s.vectors) == 0 and rows ==
              [(0, 10.0, "Olá, dois mais dois"), (1, 20.0, "Hola")],
              f"{label}ShowJob of the adapter job: {len(rows)} adapters {rows}")
        b = s.bank
        check(b.kind == "adapter" and b.adapter_rank == R and abs(b.adapter_alpha - 0.35) < 1e-6
              and b.adapter_module == "mlp.down_proj" and b.d_mlp == DMLP and b.vectors == K
              and not b.HasField("radius"),
              f"{label}its bank: kind {b.kind}, r {b.adapter_rank}, alpha {b.adapter_alpha:.3g}, "
              f"{b.adapter_module}, d_mlp {b.d_mlp}, {b.vectors} adapters, no radius")
        sb = c.call(show_bank=pb.ShowBankRequest(bank_id=b.bank_id)).bank
        check(sb.kind == "adapter" and [r.completion for r in sb.rows] == ["Olá, dois mais dois", "Hola"],
              f"{label}ShowBank: {len(sb.rows)} adapter rows")
        s = c.call(show_job=pb.ShowJobRequest(job_id=jv)).job
        check(s.job.adapter_rank == 0 and len(s.adapters) == 0 and s.bank.kind == "vector"
              and s.bank.radius == 4 and [v.completion for v in s.vectors] == ["v0", "v1", "v2"]
              and s.vectors[2].objective == 30.0,
              f"{label}ShowJob of the vector job: 3 vectors, kind vector, radius 4")
        s = c.call(show_job=pb.ShowJobRequest(job_id=jl)).job
        check(s.bank.kind == "vector" and s.bank.radius == 2.5 and len(s.vectors) == 1
              and len(s.adapters) == 0, f"{label}a bank without kind is a vector bank")
        banks = {x.job_id: x for x in c.call(list_banks=pb.ListBanksRequest()).banks.banks}
        check(banks[ja].kind == "adapter" and banks[jv].kind == "vector" and not banks[ja].rows,
              f"{label}ListBanks: kinds {[(j, banks[j].kind) for j in sorted(banks)]}")
        return b.bank_id

    bank = verify("")

    # ---- the CLI ----------------------------------------------------------------------------
    st, out, err = cli("show", str(ja))
    check(st == 0 and "adapters: rank 4, alpha 0.35, on mlp.down_proj" in out and "ADAPTER" in out
          and sum(l.split()[:1] in (["0"], ["1"]) for l in out.splitlines()) == 2,
          f"melbo show: adapter table\n{out}{err}")
    st, out, err = cli("show", str(ja), "--json")
    o = json.loads(out) if st == 0 else {}
    check(o.get("kind") == "adapter" and o.get("adapter_rank") == R and o.get("adapter_module") ==
          "mlp.down_proj" and [a["adapter"] for a in o.get("adapters", [])] == [0, 1]
          and o["adapters"][1]["completion"] == "Hola" and "vectors" not in o,
          f"melbo show --json: {out.strip()}{err}")
    st, out, err = cli("show", str(jv), "--json")
    o = json.loads(out) if st == 0 else {}
    check(o.get("kind") == "vector" and [v["vector"] for v in o.get("vectors", [])] == [0, 1, 2],
          f"melbo show --json of a vector job: {out.strip()}{err}")
    st, out, err = cli("bank", "show", bank, "--json")
    o = json.loads(out) if st == 0 else {}
    check(o.get("kind") == "adapter" and o.get("adapters") == K and "radius" not in o
          and o.get("adapter_rank") == R and len(o.get("rows", [])) == K,
          f"melbo bank show --json: {out.strip()}{err}")
    st, out, err = cli("bank", "show", bank)
    check(st == 0 and any('"kind":' in l and '"adapter"' in l for l in out.splitlines())
          and "ADAPTER" in out, f"melbo bank show\n{out}{err}")
    st, out, err = cli("bank", "ls")
    check(st == 0 and "lora r=4" in out and "vec R=4" in out, f"melbo bank ls\n{out}{err}")
    st, out, err = cli("ls", "--json")
    jobs = {j["job"]: j for j in json.loads(out)} if st == 0 else {}
    check(jobs.get(ja, {}).get("kind") == "adapter" and jobs[ja].get("adapters") == K
          and jobs[ja].get("adapter_rank") == R and jobs.get(jv, {}).get("kind") == "vector"
          and jobs[jv].get("vectors") == 3, f"melbo ls --json: kinds and counts")
    st, out, err = cli("ls")
    check(st == 0 and any(l.split()[:1] == [str(ja)] and "adapter" in l for l in out.splitlines()),
          f"melbo ls: the adapter job's KIND\n{out}{err}")

    # ---- melbo watch's live view (a terminal): texts escaped, the rate in the job's unit -----
    def watch_tty(job):
        import pty
        master, slave = pty.openpty()
        env = dict(os.environ, MELBO_COORD=co.addr, MELBO_TOKEN=co.token)
        p = subprocess.Popen([melbo, "watch", str(job)], env=env, stdout=slave, stderr=slave)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        return p.wait(timeout=60), out
    st, out = watch_tty(ja)
    check(st == 0 and b"\x1b]0;" not in out and b"\xc2\x9b" not in out
          and b"\\x1b]0;pwned\\x07\\x1b[2J\\u009b31m" in out and b"adapter-steps/s" in out,
          f"watch on a terminal: the rank's log line escaped, the rate in adapter-steps/s "
          f"({out[-160:]!r})")
    st, out = watch_tty(jv)
    check(st == 0 and b"vector-steps/s" in out and b"\x1b]0;" not in out,
          "watch of a vector job: vector-steps/s, no raw escape")

    # ---- a restart keeps it all (job table and catalog from the database) --------------------
    c.close()
    co.restart()
    c = mw.Conn(pb, co.addr)
    c.hello(co.token)
    verify("after restart: ")
finally:
    co.stop()
sys.exit(fail)
