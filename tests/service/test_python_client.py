"""tests/service/test_python_client.py BUILD REPO GOLDEN TMP - a real client: Python code generated
from proto/melbo.proto with Debian's protoc, the official protobuf runtime, our own 4-byte framing.
Authenticates (and is refused with a wrong token), submits a job (options by name), lists jobs,
and watches the job to DONE: proof that the wire format is standard protobuf. Then the same job in
protocol 1's spelling (one JobSpec field per option, as melbo 0.1 clients send it) gives the same
vectors. An adapter job (--adapter-rank) is shown with its adapters and its bank's kind."""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

build, repo, golden, tmp = sys.argv[1:5]
pb = mw.load_pb2(repo, os.path.join(tmp, "py"))
co = mw.Coord(build, os.path.join(tmp, "run"))
fail = 0
def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what)
    fail |= not cond
try:
    bad = mw.Conn(pb, co.addr)
    rep = bad.call(hello=pb.Hello(protocol_version=1, token="not-a-token"))
    check(rep.WhichOneof("body") == "error" and rep.error.code == pb.ERROR_AUTH,
          f"wrong token refused: {rep.error.message!r}")
    old = mw.Conn(pb, co.addr)
    rep = old.call(hello=pb.Hello(protocol_version=99, token=co.token))
    check(rep.error.code == pb.ERROR_VERSION, f"unknown protocol version refused: {rep.error.message!r}")
    c = mw.Conn(pb, co.addr)
    ok = c.hello(co.token)
    check(ok.hello_ok.user != "", f"authenticated as {ok.hello_ok.user!r}")
    rep = c.call(submit=pb.SubmitRequest(spec=mw.job_spec(pb, golden, vectors=2, steps=10, max_new_tokens=2)))
    job = rep.submitted.job_id
    check(job > 0, f"submitted job {job}")
    rep = c.call(list_jobs=pb.ListJobsRequest())
    check(any(j.job_id == job for j in rep.jobs.jobs), f"list jobs: {[(j.job_id, pb.JobState.Name(j.state)) for j in rep.jobs.jobs]}")
    def watch(job):
        c.next_id += 1
        c.send(pb.Envelope(id=c.next_id, watch=pb.WatchRequest(job_id=job, from_event=1, follow=True)))
        events = []
        while True:
            env = c.recv()
            kind = env.WhichOneof("body")
            if kind == "event":
                events.append(env.event)
            elif kind == "watch_end":
                return events
            else:
                raise RuntimeError(f"unexpected {kind}")
    events = watch(job)
    steps = [e for e in events if e.kind == pb.JobEvent.STEP]
    check([e.number for e in events] == list(range(1, len(events) + 1)), f"watched {len(events)} events in order")
    check(len(steps) == 10 and all(len(e.step.objective) == 2 for e in steps), "10 step events with 2 objectives each")
    check(pb.JobState.Name(events[-1].state) == "DONE", "job DONE")
    legacy = c.call(submit=pb.SubmitRequest(spec=mw.legacy_job_spec(pb, golden, vectors=2, steps=10,
                                                                   max_new_tokens=2))).submitted.job_id
    check(legacy > 0 and pb.JobState.Name(watch(legacy)[-1].state) == "DONE",
          f"protocol-1 spec (fields, no options) accepted and DONE as job {legacy}")
    rows = [[(v.index, v.objective, v.completion) for v in c.call(show_job=pb.ShowJobRequest(job_id=j)).job.vectors]
            for j in (job, legacy)]
    check(len(rows[0]) == 2 and rows[0] == rows[1], f"same vectors either way: {rows[0]} vs {rows[1]}")
    ajob = c.call(submit=pb.SubmitRequest(spec=mw.job_spec(pb, golden, radius=None, adapter_rank=4,
                                                           vectors=2, steps=3, max_new_tokens=2))).submitted.job_id
    check(ajob > 0 and pb.JobState.Name(watch(ajob)[-1].state) == "DONE", f"adapter job {ajob} DONE")
    s = c.call(show_job=pb.ShowJobRequest(job_id=ajob)).job
    check(s.job.adapter_rank == 4 and len(s.adapters) == 2 and not s.vectors and s.bank.kind == "adapter"
          and s.bank.adapter_rank == 4 and s.bank.adapter_module == "mlp.down_proj",
          f"ShowJob of the adapter job: {[(a.index, a.objective) for a in s.adapters]}, bank kind {s.bank.kind!r}")
finally:
    co.stop()
sys.exit(fail)
