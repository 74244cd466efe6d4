#!/usr/bin/python3
"""tests/service/fake_rank.py train [options] - a stand-in for melbo-rank that trains nothing: the
coordinator launches it (melbo-coord serve --rank-binary) as it would the ranks, and it plays
rank 0's side of the protocol (DESIGN §4) with the official Python protobuf runtime: RankHello
with the job's secret, a RUNNING state event and one STEP event, then uploads the file given as
--init verbatim as the job's bank, and RankDone. So a test decides byte for byte which bank the
coordinator stores (an adapter bank, a vector bank, a bank from before `kind` existed) without
depending on the trainer. Exits 0 once the coordinator acknowledged the end, 1 otherwise."""
import hashlib, os, sys
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

def main():
    if len(sys.argv) < 2 or sys.argv[1] != "train":
        print("fake_rank: only `train` is played", file=sys.stderr)
        return 2
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pb = mw.load_pb2(repo, os.path.join(os.getcwd(), "fake_rank_py"))
    bank = open(arg("--init"), "rb").read()
    k = int(arg("--vectors", "32"))
    secret = open(os.environ["MELBO_JOB_SECRET_FILE"]).read().strip()
    c = mw.Conn(pb, os.environ["MELBO_COORD_ADDR"])
    rep = c.call(rank_hello=pb.RankHello(protocol_version=1, job_id=int(os.environ["MELBO_JOB_ID"]),
                                         secret=secret, world_size=1))
    if rep.WhichOneof("body") != "rank_hello_ok":
        print(f"fake_rank: hello refused: {rep.error.message}", file=sys.stderr)
        return 1
    seq = rep.rank_hello_ok.last_seq
    events = [pb.JobEvent(kind=pb.JobEvent.STATE, state=pb.RUNNING, detail="fake rank"),
              pb.JobEvent(kind=pb.JobEvent.STEP, step=pb.StepInfo(
                  wave=0, n_waves=1, step=1, steps=1, first_vector=0, n_vectors=k,
                  total_vectors=k, objective=[float(i) for i in range(k)]))]
    for ev in events:
        seq += 1
        c.send(pb.Envelope(rank_event=pb.RankEvent(seq=seq, event=ev)))
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
