"""bench/service/bench_latency.py BUILD REPO GOLDEN [WATCHERS] - latency from a rank's event to its
arrival at each of N watchers (default 200) on loopback. A real job (golden tiny model under
mpirun) produces step events; each event carries rank_time (when rank 0 produced it); every
watcher records arrival - rank_time for every step event. Watchers are spread over 4 processes
(selectors, one thread each) so that the Python side is not the bottleneck. Targets: p50 <= 5 ms,
p99 <= 50 ms. Prints the distribution and exits 1 if a target is missed.

The job's pace is about 100 steps/s (long prompt, wave of 8), so 200 watchers receive ~20,000
frames/s."""
import multiprocessing as mp, os, selectors, struct, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "service"))
import melbo_wire as mw

def watch_group(addr, token, job_v, go, n, outdir, q):
    pb = mw.load_pb2(sys.argv[2], outdir)
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(n):
        c = mw.Conn(pb, addr, timeout=60)
        c.hello(token)
        conns.append(c)
    q.put("ready")
    go.wait()
    for c in conns:  # watching before the job's first event: every delivery is live
        c.send(pb.Envelope(id=5, watch=pb.WatchRequest(job_id=job_v.value, from_event=1, follow=True)))
        c.s.setblocking(False)
        sel.register(c.s, selectors.EVENT_READ, c)
    lat, ended = [], 0
    while ended < n:
        for key, _ in sel.select(timeout=60):
            c = key.data
            now = time.time()
            chunk = c.s.recv(1 << 20)
            if not chunk:
                sel.unregister(c.s); ended += 1; continue
            c.buf += chunk
            while len(c.buf) >= 4:
                m = struct.unpack(">I", c.buf[:4])[0]
                if len(c.buf) < 4 + m:
                    break
                env = pb.Envelope(); env.ParseFromString(c.buf[4:4 + m]); c.buf = c.buf[4 + m:]
                b = env.WhichOneof("body")
                if b == "event" and env.event.kind == pb.JobEvent.STEP and env.event.HasField("rank_time"):
                    lat.append(now - env.event.rank_time)
                elif b == "watch_end":
                    sel.unregister(c.s); ended += 1
    q.put(lat)

def main():
    build, repo, golden = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    tmp = os.path.join(build, "bench", "service_tmp")
    pb = mw.load_pb2(repo, os.path.join(tmp, "py"))
    co = mw.Coord(build, os.path.join(tmp, "run"))
    try:
        c = mw.Conn(pb, co.addr); c.hello(co.token)
        spec = mw.job_spec(pb, golden, vectors=8, wave=8, steps=400, max_new_tokens=1)
        del spec.id_prompts[:]
        spec.id_prompts.add(ids=[(i * 37) % 500 for i in range(96)])
        # the watchers connect first; the job is submitted when all are authenticated
        job_v, go, q = mp.Value("i", 0), mp.Event(), mp.Queue()
        groups = int(os.environ.get("MELBO_BENCH_PROCS", "4"))
        ps = [mp.Process(target=watch_group, args=(co.addr, co.token, job_v, go, n // groups,
                                                   os.path.join(tmp, f"py{g}"), q)) for g in range(groups)]
        for p in ps: p.start()
        for _ in ps: assert q.get() == "ready"
        job_v.value = c.call(submit=pb.SubmitRequest(spec=spec)).submitted.job_id
        go.set()
        lat = []
        for _ in ps: lat += q.get()
        for p in ps: p.join()
        lat.sort()
        pct = lambda x: lat[min(len(lat) - 1, int(x * len(lat)))] * 1e3
        print(f"watchers {n}, step-event deliveries {len(lat)}")
        print(f"latency rank event -> watcher: p50 {pct(0.5):.2f} ms  p90 {pct(0.9):.2f} ms  "
              f"p99 {pct(0.99):.2f} ms  max {lat[-1] * 1e3:.2f} ms")
        ok = pct(0.5) <= 5 and pct(0.99) <= 50
        print("targets p50 <= 5 ms, p99 <= 50 ms:", "met" if ok else "MISSED")
        return 0 if ok else 1
    finally:
        co.stop()

if __name__ == "__main__":
    sys.exit(main())
