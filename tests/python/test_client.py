"""tests/python/test_client.py BUILD REPO GOLDEN TMP - the Python package as a user installs it
(`pip install` of a copy of python/ + proto/, into TMP/site) drives a real coordinator
(melbo-coord init + serve on a free loopback port; jobs run under mpirun):

- the message classes melbo/_proto.py builds from proto/melbo.proto at import have exactly the
  descriptor Debian's protoc makes of the same file (when protoc is installed);
- melbo.Client: a wrong token is refused (ERROR_AUTH), a job the ranks would refuse is refused at
  submit (ERROR_INVALID, the ranks' message); a job submitted with options by name is watched to
  DONE (events numbered 1..n, one STEP event per step with every vector's objective, a BANK event),
  listed, shown, fetched in chunks (sha256 = the catalog's), and the file opens with melbo.Bank:
  its objective curves are the STEP events' values, bit for bit; fetch by bank id gives the same
  bytes; the catalog lists and shows the bank; an unknown job is ERROR_NOT_FOUND;
- submit(prompts=FILE, init=FILE): the client sends the prompts as their text and uploads the
  init file (the coordinator opens no user path), the job is DONE with both prompts; a missing
  prompts file and a directory as init are refused before anything is sent;
- an adapter job (adapter_rank=4) the same way, its bank an adapter bank.

Needs PyPI protobuf: when the python3 running this lacks it, it is installed into TMP/pydeps
(exit 77, skipped, only when PyPI cannot be reached).
"""
import hashlib
import os
import shutil
import subprocess
import sys

build, repo, golden, tmp = sys.argv[1:5]
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)
fail = checks = 0


def check(cond, what):
    global fail, checks
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    fail += not cond
    checks += 1


def pip(*args):
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


# PyPI protobuf, for this test only when missing
try:
    import google.protobuf  # noqa: F401
except ImportError:
    deps = os.path.join(tmp, "pydeps")
    r = pip("--target", deps, "protobuf")
    if r.returncode != 0:
        print("skipped: PyPI protobuf is not installed and pip could not fetch it:\n" + r.stderr[-600:])
        sys.exit(77)
    sys.path.insert(0, deps)
    import google.protobuf  # noqa: F401

# the package as pip installs it, from a copy of the two folders it is built from (pip's build
# writes into its source folder)
src = os.path.join(tmp, "src")
shutil.copytree(os.path.join(repo, "python"), os.path.join(src, "python"),
                ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
os.makedirs(os.path.join(src, "proto"))
shutil.copy(os.path.join(repo, "proto", "melbo.proto"), os.path.join(src, "proto"))
site = os.path.join(tmp, "site")
r = pip("--no-deps", "--no-build-isolation", "--target", site, os.path.join(src, "python"))
if r.returncode != 0:  # no setuptools in this python: let pip fetch it
    r = pip("--no-deps", "--target", site, os.path.join(src, "python"))
check(r.returncode == 0 and os.path.isfile(os.path.join(site, "melbo", "melbo.proto")),
      "pip install of python/ (melbo.proto copied into the package)"
      + ("" if r.returncode == 0 else ": " + r.stderr[-600:]))
if r.returncode != 0:
    sys.exit(1)
sys.path.insert(0, site)
import melbo  # noqa: E402
from melbo import _proto  # noqa: E402

check(melbo.__file__.startswith(site) and _proto.proto_path().startswith(site),
      f"import melbo from the installed copy ({os.path.relpath(melbo.__file__, tmp)}, "
      f"protobuf {google.protobuf.__version__})")
with open(os.path.join(repo, "proto", "melbo.proto"), encoding="utf-8") as f:
    mine = _proto.parse(f.read())
protoc = shutil.which("protoc")
if protoc:
    from google.protobuf import descriptor_pb2
    ds = os.path.join(tmp, "melbo.desc")
    subprocess.run([protoc, f"--descriptor_set_out={ds}", f"-I{repo}",
                    os.path.join(repo, "proto", "melbo.proto")], check=True)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(ds, "rb") as f:
        fds.ParseFromString(f.read())
    theirs = fds.file[0]
    theirs.ClearField("syntax")  # newer protoc spells out "proto2"
    check(theirs == mine, f"descriptor of melbo.proto = protoc's ({len(mine.message_type)} "
          f"messages, {len(mine.enum_type)} enums)")
else:
    print("note: no protoc here; the descriptor comparison skipped")

sys.path.insert(0, os.path.join(repo, "tests", "service"))
import melbo_wire as mw  # noqa: E402

co = mw.Coord(build, os.path.join(tmp, "run"))
os.environ["MELBO_COORD_FINGERPRINT"] = co.fingerprint  # melbo.Client pins it (TLS 1.3)
ids = [492, 403, 287, 109, 129, 38, 286]
model = os.path.abspath(os.path.join(golden, "models", "llama3"))
try:
    try:
        melbo.Client(co.addr, "not-a-token")
        check(False, "a wrong token is refused")
    except melbo.ClientError as e:
        check(e.code == "ERROR_AUTH", f"a wrong token is refused: {e}")
    try:
        melbo.Client("127.0.0.1:1", co.token, timeout=5)
        check(False, "no coordinator: UNREACHABLE")
    except melbo.ClientError as e:
        check(e.code == "UNREACHABLE", f"no coordinator: {e}")
    c = melbo.Client(co.addr, co.token)
    check(c.user != "", f"authenticated as {c.user!r} (coordinator {c.server_version})")
    try:
        c.submit(model=model, prompt_ids=ids, source_layer=1, target_layer=9, radius=4)
        check(False, "a job the ranks would refuse is refused")
    except melbo.ClientError as e:
        check(e.code == "ERROR_INVALID" and "target" in e.message, f"refused at submit: {e}")

    job = c.submit(model=model, prompt_ids=ids, source_layer=1, target_layer=4, radius=4,
                   vectors=2, steps=10, max_new_tokens=2, random_baselines=1, name="from python")
    check(job > 0, f"submitted job {job} (options by name)")
    events = list(c.watch(job))
    steps = [e for e in events if e.kind == "STEP"]
    banks = [e for e in events if e.kind == "BANK"]
    check([e.number for e in events] == list(range(1, len(events) + 1)),
          f"watched {len(events)} events, numbered 1..{len(events)}: "
          + ", ".join(sorted({e.kind for e in events})))
    check(len(steps) == 10 and all(len(e.step.objective) == 2 for e in steps)
          and [e.step.step for e in steps] == list(range(1, 11)),
          f"10 STEP events with 2 objectives each (last {steps[-1].step.objective if steps else None})")
    check(events[-1].state == "DONE" and len(banks) == 1 and banks[0].bank_id,
          f"the iterator ends at DONE; BANK event {banks[0].bank_id if banks else None}")
    check(c.wait(job).state == "DONE", "wait(job) returns the last event (DONE)")
    again = list(c.watch(job, from_event=3, follow=False))
    check([e.number for e in again] == list(range(3, len(events) + 1)) and again == events[2:],
          "watch(from_event=3, follow=False) of a finished job: the same events from 3")
    listed = [j for j in c.jobs() if j.job_id == job]
    check(len(listed) == 1 and listed[0].state == "DONE" and listed[0].name == "from python",
          f"jobs(): {dict(listed[0]) if listed else None}")
    shown = c.job(job)
    check(len(shown.vectors) == 2 and shown.bank.bank_id == banks[0].bank_id
          and shown.spec.options[0].name == "model",
          f"job(): {len(shown.vectors)} vector rows, bank {shown.bank.bank_id}")
    out = c.fetch(job, os.path.join(tmp, "job.bank.safetensors"))
    with open(out, "rb") as f:
        data = f.read()
    info = c.bank(banks[0].bank_id)
    check(hashlib.sha256(data).hexdigest() == info.sha256 and len(data) == info.size,
          f"fetch: {len(data)} bytes, sha256 = the catalog's")
    check(not [x for x in os.listdir(tmp) if ".part" in x], "no partial file left")
    b = melbo.Bank(out)
    obj = [list(map(float, b.objectives[:, k])) for k in range(10)]
    check(b.n == 2 and b.objectives.shape == (2, 10) and b.n_random == 1
          and obj == [list(e.step.objective) for e in steps] and b.prompt_ids == [ids]
          and b.settings["job_id"] == str(job),
          "melbo.Bank opens it: 2 vectors, objective curves = the STEP events' values bitwise, "
          f"job_id {b.settings['job_id']}")
    check([round(float(b.objectives[k, -1]), 5) for k in range(2)]
          == [round(v.objective, 5) for v in shown.vectors],
          "final objectives = job()'s rows")
    out2 = c.fetch(bank_id=banks[0].bank_id, out=os.path.join(tmp, "byid.bank.safetensors"))
    with open(out2, "rb") as f:
        check(f.read() == data, "fetch(bank_id=...) gives the same bytes")
    lst = c.banks(model="llama3")
    check(any(x.bank_id == banks[0].bank_id for x in lst) and info.vectors == 2
          and len(info.rows) == 2 and info.source_layer == 1,
          f"banks(model='llama3'): {[x.bank_id for x in lst]}; bank(): {info.vectors} vectors, "
          f"{len(info.rows)} rows")
    try:
        c.fetch(999999, os.path.join(tmp, "none.bank.safetensors"))
        check(False, "fetch of an unknown job refused")
    except melbo.ClientError as e:
        check(e.code == "ERROR_NOT_FOUND" and not os.path.exists(os.path.join(tmp, "none.bank.safetensors")),
              f"fetch of an unknown job: {e}")

    # files are read (prompts) and uploaded (init) by the client, as `melbo submit` does: the
    # coordinator opens no path a user names
    init = os.path.join(tmp, "init.safetensors")
    mw.write_safetensors(init, {"vectors": ("F32", (2, 64), [0.01 * (i % 7) for i in range(128)])},
                         {})
    prompts = os.path.join(tmp, "p.jsonl")
    with open(prompts, "w") as f:
        f.write('{"text": "The capital of France is"}\n{"prompt": "Say hi"}\n')
    fjob = c.submit(model=model, prompts=prompts, init=init, source_layer=1, target_layer=4,
                    radius=4, vectors=2, steps=2, random_baselines=0, no_generate=True)
    fin = c.wait(fjob)
    fspec = {o.name: o.value for o in c.job(fjob).spec.options}
    fb = melbo.Bank(c.fetch(fjob, os.path.join(tmp, "files.bank.safetensors"))) \
        if fin.state == "DONE" else None
    check(fin.state == "DONE" and fspec.get("init") == "upload:init"
          and "The capital of France is" in fspec.get("prompts-jsonl", "")
          and fb is not None and len(fb.prompt_ids) == 2,
          f"submit(prompts=FILE, init=FILE): job {fjob} {fin.state}, init sent as "
          f"{fspec.get('init')!r}, prompts as their text, bank of {len(fb.prompt_ids) if fb else 0} "
          "prompts")
    for kw, code in ((dict(prompts=os.path.join(tmp, "nope.jsonl")), "ERROR_INVALID"),
                     (dict(init=tmp), "ERROR_INVALID")):
        try:
            c.submit(model=model, prompt_ids=ids, source_layer=1, target_layer=4, radius=4, **kw)
            check(False, f"submit({kw}) refused")
        except melbo.ClientError as e:
            check(e.code == code, f"submit({list(kw)[0]}=bad path): {e}")

    again = c.submit(model=model, prompts=prompts, init=init, source_layer=1, target_layer=4,
                     radius=4, vectors=2, steps=2, random_baselines=0, no_generate=True)
    same = c.submit(model=model, prompt_ids=ids, source_layer=1, target_layer=4, radius=4,
                    vectors=2, steps=2, request_id="python-retry-000000000001")
    same2 = c.submit(model=model, prompt_ids=ids, source_layer=1, target_layer=4, radius=4,
                     vectors=2, steps=2, request_id="python-retry-000000000001")
    check(same == same2 and again != fjob, f"the same options again: a new job ({again}); "
          f"submit(request_id=...) twice: job {same} once (exactly-once submit)")
    c.wait(again), c.wait(same)

    ajob = c.submit(model=model, prompt_ids=ids, source_layer=1, target_layer=4, adapter_rank=4,
                    vectors=2, steps=3, max_new_tokens=2)
    last = c.wait(ajob)
    check(last.state == "DONE", f"adapter job {ajob} DONE")
    ab = melbo.Bank(c.fetch(ajob, os.path.join(tmp, "adapter.bank.safetensors")))
    check(ab.kind == "adapter" and ab.rank == 4 and ab.lora_A.shape[0] == 2
          and c.job(ajob).bank.kind == "adapter",
          f"its bank: {ab!r}, lora_A {ab.lora_A.shape}")
    c.close()
finally:
    co.stop()
print(f"{checks - fail} of {checks} checks passed")
sys.exit(1 if fail else 0)
