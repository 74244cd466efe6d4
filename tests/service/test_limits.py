"""tests/service/test_limits.py BUILD REPO GOLDEN TMP - the coordinator's connection limits
(coord.conf limits.*, coord/server.c) against unauthenticated and authenticated floods, with real
processes on loopback. Attackers connect from other loopback addresses (127.0.N.M: other peers
to the coordinator) than the legitimate client (127.0.0.1), which runs as its own process (no GIL
shared with the attackers): a fresh connection, Hello and ListJobs every 20 ms, timed from
connect to answer. Each attack checks that every probe during it was answered within
PROBE_BOUND_MS and that the coordinator's RSS stayed under the bound stated with it.

  idle flood      5,000 idle connections from 50 addresses (100 each, 2,000 a second): at most
                  limits.connections_per_address (64) per address stay, at most
                  limits.connections (1024) in all (the oldest unauthenticated ones make room),
                  and every one is closed at limits.auth_timeout_ms. (A flood from many
                  addresses faster than limits.connections per MELBO_COORD_EVICT_GRACE_S, 4,096 a
                  second here, finds no connection old enough to close and is refused, with
                  legitimate clients among it, until it slows down.)
  pre-auth frames 100 connections announcing a 16 MiB - 1 frame and trickling it: each refused
                  as soon as the length arrives (limits.preauth_frame_bytes); 100 more trickling
                  a frame under that limit: closed at the authentication deadline
  wrong tokens    a flood of wrong tokens from one address: after
                  limits.auth_failures_per_minute failures its attempts wait a second and are
                  refused unchecked, with one log line, not one per attempt
  idle timeout    an authenticated connection silent for limits.idle_timeout_s is closed; a
                  watcher is not
  replay          200 non-reading watchers replaying a 32 MB event log: the slowest are cut off
                  (limits.output_bytes = 4 MiB), RSS stays under the baseline + 4 MiB + 24 MB,
                  and a reading watcher still gets the whole log

`test_limits.py probe ADDR TOKEN REPO PYDIR` is the legitimate client (prints one latency in ms
per line until its stdin closes); `test_limits.py rank` is the job's stand-in rank (sleeps: the
test itself speaks for rank 0)."""
import os, resource, select, socket, struct, subprocess, sys, threading, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

PROBE_BOUND_MS = 100.0
CONF = ["limits.connections=1024", "limits.connections_per_address=64",
        "limits.auth_timeout_ms=1500", "limits.preauth_frame_bytes=65536",
        "limits.idle_timeout_s=3", "limits.auth_failures_per_minute=20",
        "limits.output_bytes=4194304"]
OUTPUT_CAP_MB = 4.0

def probe_main(addr, token, repo, pydir):
    pb = mw.load_pb2(repo, pydir)
    stop = [False]
    threading.Thread(target=lambda: (sys.stdin.read(), stop.__setitem__(0, True)),
                     daemon=True).start()
    while not stop[0]:
        t0 = time.monotonic()
        try:
            c = mw.Conn(pb, addr, timeout=5, source="127.0.0.1")
            t1 = time.monotonic()
            c.hello(token)
            t2 = time.monotonic()
            ok = c.call(list_jobs=pb.ListJobsRequest()).WhichOneof("body") == "jobs"
            c.close()
            t3 = time.monotonic()
            ms = (t3 - t0) * 1e3
            if ms > PROBE_BOUND_MS:  # where the time went: connect, hello, request
                print(f"slow connect {(t1 - t0) * 1e3:.1f} hello {(t2 - t1) * 1e3:.1f} "
                      f"request {(t3 - t2) * 1e3:.1f} ms", file=sys.stderr, flush=True)
            print(f"{ms:.2f}" if ok else "error", flush=True)
        except Exception as e:  # noqa: BLE001 - a probe that failed is reported, not raised
            print(f"fail {e!r}", flush=True)
        time.sleep(0.02)

if len(sys.argv) > 1 and sys.argv[1] == "probe":
    probe_main(*sys.argv[2:6])
    sys.exit(0)
if len(sys.argv) > 1 and sys.argv[1] == "rank":
    time.sleep(600)
    sys.exit(0)

build, repo, golden, tmp = sys.argv[1:5]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 6000:
    print("skip: RLIMIT_NOFILE cannot be raised to 6000", flush=True)
    sys.exit(0)
os.makedirs(tmp, exist_ok=True)
rank = os.path.join(tmp, "rank.sh")
with open(rank, "w") as f:  # its command line names the job directory (Coord.stop kills it)
    f.write(f"#!/bin/sh\nexec {sys.executable} {os.path.abspath(__file__)} rank \"$@\"\n")
os.chmod(rank, 0o755)
pb = mw.load_pb2(repo, os.path.join(tmp, "py"))
co = mw.Coord(build, os.path.join(tmp, "run"), extra=["--rank-binary", rank], conf=CONF,
              tls=False)  # raw sockets (SO_RCVBUF, MSG_PEEK): plaintext on loopback
host, port = co.addr.rsplit(":", 1)
port = int(port)
fail = 0
def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    fail |= not cond

def log_text():
    return open(co.log_path).read()

class Probe:
    """The legitimate client, a process of its own, for the length of a with block."""
    def __enter__(self):
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "probe", co.addr,
                                   co.token, repo, os.path.join(tmp, "py")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines = []
        self.t = threading.Thread(target=lambda: self.lines.extend(self.p.stdout), daemon=True)
        self.t.start()
        while not self.lines:
            time.sleep(0.01)
        self.rss_max = co.rss_kb()
        self.sampling = True
        def sample():
            while self.sampling:
                self.rss_max = max(self.rss_max, co.rss_kb())
                time.sleep(0.02)
        self.s = threading.Thread(target=sample, daemon=True)
        self.s.start()
        self.start = len(self.lines)
        return self
    def __exit__(self, *a):
        self.sampling = False
        self.s.join()
        self.p.stdin.close()
        self.p.wait()
        self.t.join()
    def report(self, what):
        got = [l.strip() for l in self.lines[self.start:]]
        lat = sorted(float(l) for l in got if l[0].isdigit())
        bad = [l for l in got if not l[0].isdigit()]
        check(lat and not bad and lat[-1] <= PROBE_BOUND_MS,
              f"{what}: legitimate client served {len(lat)} times, p50 {lat[len(lat) // 2]:.1f} "
              f"ms, max {lat[-1]:.1f} ms (<= {PROBE_BOUND_MS:.0f}; slowest {lat[-5:]})"
              + (f"; failed: {bad[:3]}" if bad else "") if lat else f"{what}: no probe: {bad[:3]}")

def open_from(src, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((src, 0))
    s.connect((host, port))
    return s

def closed_by_server(socks, wait):
    """The sockets among socks the server closed (EOF or reset) within wait seconds."""
    closed, end = set(), time.monotonic() + wait
    live = list(socks)
    while live and time.monotonic() < end:
        for chunk in range(0, len(live), 500):  # select() takes fds < 1024 only: use poll
            p = select.poll()
            for s in live[chunk:chunk + 500]:
                p.register(s, select.POLLIN | select.POLLERR | select.POLLHUP)
            for fd, ev in p.poll(10):
                s = next(x for x in live if x.fileno() == fd)
                try:
                    while True:
                        d = s.recv(65536, socket.MSG_DONTWAIT)
                        if not d:
                            closed.add(s)
                            break
                except BlockingIOError:
                    pass
                except OSError:
                    closed.add(s)
        live = [s for s in live if s not in closed]
    return closed

def coord_cpu_s():
    f = open(f"/proc/{co.proc.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def coord_fds():
    return len(os.listdir(f"/proc/{co.proc.pid}/fd"))

def read_frames(s, wait):
    """Envelopes s receives within wait seconds (until EOF)."""
    data, end = b"", time.monotonic() + wait
    s.settimeout(0.05)
    while time.monotonic() < end:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not d:
            break
        data += d
    out = []
    while len(data) >= 4:
        n = struct.unpack(">I", data[:4])[0]
        if len(data) < 4 + n:
            break
        env = pb.Envelope()
        env.ParseFromString(data[4:4 + n])
        out.append(env)
        data = data[4 + n:]
    return out

# warm-up: allocator, SQLite cache, the first probes
with Probe() as pr:
    time.sleep(0.5)
fd0 = coord_fds()
rss0 = co.rss_kb()
print(f"baseline: RSS {rss0 / 1024:.1f} MB, {fd0} descriptors", flush=True)

# ---- 5,000 idle connections from 50 addresses ---------------------------------------------
with Probe() as pr:
    socks, per = [], {}
    t0 = time.monotonic()
    for i in range(5000):  # at most 2,000 a second (see the note at the top)
        while time.monotonic() - t0 < i / 2000:
            time.sleep(0.001)
        src = f"127.0.1.{1 + i % 50}"
        s = open_from(src)
        socks.append(s)
        per.setdefault(src, []).append(s)
    t_open = time.monotonic() - t0
    time.sleep(0.3)
    held = coord_fds() - fd0
    closed = closed_by_server(socks, 0.3)
    still = [s for s in socks if s not in closed]
    per_max = max(sum(1 for s in v if s not in closed) for v in per.values())
    rss1 = pr.rss_max
    check(held <= 1024 and len(still) <= 1024 and per_max <= 64,
          f"5,000 idle connections in {t_open:.1f} s: the coordinator holds {held} more "
          f"descriptors, {len(still)} still open (<= limits.connections 1024), at most "
          f"{per_max} from one address (<= limits.connections_per_address 64)")
    t1 = time.monotonic()
    closed2 = closed_by_server(still, 3.0)
    check(len(closed2) == len(still),
          f"all {len(still)} left closed at the authentication deadline "
          f"(limits.auth_timeout_ms 1500): {len(closed2)} within {time.monotonic() - t1:.1f} s")
    for s in socks:
        s.close()
pr.report("idle flood")
# ---- 500 connections from one address -------------------------------------------------------
with Probe() as pr:
    socks = [open_from("127.0.1.200") for _ in range(500)]
    closed = closed_by_server(socks, 0.3)
    check(500 - len(closed) == 64,
          f"500 connections from one address: {500 - len(closed)} stay open, the rest closed at "
          f"once (limits.connections_per_address 64)")
    for s in socks:
        s.close()
pr.report("one-address flood")
check((rss1 - rss0) / 1024 < 24, f"idle flood: RSS {rss0 / 1024:.1f} -> max {rss1 / 1024:.1f} MB "
      f"(growth < 24 MB)")

# ---- pre-authentication frames ----------------------------------------------------------------
time.sleep(0.5)
rss0 = co.rss_kb()
with Probe() as pr:
    big = [open_from(f"127.0.2.{1 + i % 4}") for i in range(100)]
    small = [open_from(f"127.0.3.{1 + i % 4}") for i in range(100)]
    t0 = time.monotonic()
    for s in big:
        s.sendall(struct.pack(">I", 16 * 1024 * 1024 - 1) + b"\x0a")
    for s in small:
        s.sendall(struct.pack(">I", 60000) + b"\x0a")
    got_err, live_big, live_small = 0, list(big), list(small)
    end = time.monotonic() + 2.5
    while time.monotonic() < end:  # trickle: one byte per connection every 20 ms
        for s in live_big + live_small:
            try:
                s.send(b"x")
            except OSError:
                pass
        time.sleep(0.02)
    closed_big = closed_by_server(big, 0.1)
    closed_small = closed_by_server(small, 0.5)
    rss1 = pr.rss_max
check(len(closed_big) == 100,
      f"100 connections announcing a 16 MiB - 1 frame before authenticating: {len(closed_big)} "
      f"refused (limits.preauth_frame_bytes 65536)")
check(len(closed_small) == 100,
      f"100 connections trickling a 60,000-byte frame: {len(closed_small)} closed by the "
      f"authentication deadline (limits.auth_timeout_ms 1500)")
check((rss1 - rss0) / 1024 < 16, f"pre-auth frames: RSS {rss0 / 1024:.1f} -> max "
      f"{rss1 / 1024:.1f} MB (growth < 16 MB)")
s = open_from("127.0.2.9")
s.sendall(struct.pack(">I", 16 * 1024 * 1024 - 1))
errs = [e for e in read_frames(s, 1.0) if e.WhichOneof("body") == "error"]
check(errs and "limits.preauth_frame_bytes" in errs[0].error.message,
      f"the refusal names the limit: {errs[0].error.message if errs else None!r}")
s.close()
for s in big + small:
    s.close()
pr.report("pre-auth frames")

# ---- wrong tokens -----------------------------------------------------------------------------
log0 = len(log_text())
hello_bad = mw.frame(pb.Envelope(id=1, hello=pb.Hello(protocol_version=1, token="0" * 64))
                     .SerializeToString())
with Probe() as pr:
    answers, t0 = [], time.monotonic()
    lock = threading.Lock()
    def flood():
        while time.monotonic() - t0 < 4.0:
            s = open_from("127.0.4.1")
            s.sendall(hello_bad)
            t = time.monotonic()
            e = read_frames(s, 3.0)
            s.close()
            with lock:
                answers.append((time.monotonic() - t, e[0].error.message if e else "nothing"))
    ths = [threading.Thread(target=flood) for _ in range(16)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
pr.report("wrong-token flood")
checked = [a for a in answers if "wrong token" in a[1]]
refused = [a for a in answers if "limits.auth_failures_per_minute" in a[1]]
log = log_text()[log0:]
check(len(checked) <= 20 and len(refused) == len(answers) - len(checked) and
      min(a[0] for a in refused) >= 0.9,
      f"wrong-token flood from one address: {len(answers)} attempts in 4 s "
      f"({len(answers) / 4:.0f}/s), {len(checked)} checked (<= 20), the rest refused unchecked "
      f"after >= {min(a[0] for a in refused) if refused else 0:.2f} s each")
check(log.count("wrong or missing token") <= 20 and log.count("refusing its attempts") == 1,
      f"logged: {log.count('wrong or missing token')} wrong-token lines, "
      f"{log.count('refusing its attempts')} back-off line (once a minute)")
good = mw.Conn(pb, co.addr, source="127.0.0.1")
good.hello(co.token)  # another address is not affected
check(True, "another address still authenticates during the back-off")

# ---- idle timeout -----------------------------------------------------------------------------
spec = mw.job_spec(pb, golden, vectors=2, wave=1, steps=10, max_new_tokens=2)
rep = good.call(submit=pb.SubmitRequest(spec=spec))
check(rep.WhichOneof("body") == "submitted", f"job submitted: {rep.WhichOneof('body')}")
job = rep.submitted.job_id
watcher = mw.Conn(pb, co.addr, source="127.0.0.1")
watcher.hello(co.token)
watcher.send(pb.Envelope(id=5, watch=pb.WatchRequest(job_id=job, from_event=1, follow=True)))
silent = mw.Conn(pb, co.addr, source="127.0.0.1")
silent.hello(co.token)
t0 = time.monotonic()
errs = [e for e in read_frames(silent.s, 6.0) if e.WhichOneof("body") == "error"]
dt = time.monotonic() - t0
check(errs and "limits.idle_timeout_s" in errs[0].error.message and 2.5 <= dt <= 5.5,
      f"a silent authenticated connection is closed after {dt:.1f} s: "
      f"{errs[0].error.message if errs else None!r}")
watcher.s.settimeout(0.2)
try:
    alive = watcher.s.recv(65536, socket.MSG_PEEK) != b""
except socket.timeout:
    alive = True
check(alive, "a silent watcher of a running job stays connected")

# ---- 200 non-reading watchers replaying a 32 MB log -------------------------------------------
jobdir = os.path.join(co.state, "jobs", str(job))
secret_path = next((os.path.join(jobdir, n) for n in os.listdir(jobdir) if "secret" in n), None)
end = time.monotonic() + 10
while time.monotonic() < end and secret_path is None:
    time.sleep(0.1)
secret = open(secret_path).read().strip()
rk = mw.Conn(pb, co.addr, source="127.0.0.1", timeout=60)
rep = rk.call(rank_hello=pb.RankHello(protocol_version=1, job_id=job, secret=secret, world_size=1))
check(rep.WhichOneof("body") == "rank_hello_ok",
      f"the test speaks for rank 0: {rep.WhichOneof('body')}")
seq = rep.rank_hello_ok.last_seq
line = "l" * 16000
N_EV = 2000
for i in range(N_EV):
    seq += 1
    rk.send(pb.Envelope(rank_event=pb.RankEvent(seq=seq, event=pb.JobEvent(
        kind=pb.JobEvent.LOG, log=line))))
    if i % 200 == 199:  # the acks keep the rank's side honest; wait for the last one
        while True:
            e = rk.recv()
            if e.WhichOneof("body") == "rank_ack" and e.rank_ack.last_seq >= seq:
                break
time.sleep(0.5)
rss0 = co.rss_kb()
hello_ok = mw.frame(pb.Envelope(id=1, hello=pb.Hello(protocol_version=1, token=co.token))
                    .SerializeToString())
watch = mw.frame(pb.Envelope(id=2, watch=pb.WatchRequest(job_id=job, from_event=1, follow=False))
                 .SerializeToString())
cpu0 = coord_cpu_s()
with Probe() as pr:
    t0 = time.monotonic()
    stalled = []
    for i in range(200):
        s = open_from(f"127.0.5.{1 + i % 4}", rcvbuf=4096)
        s.sendall(hello_ok + watch)
        stalled.append(s)
    # a reading watcher replays the whole log meanwhile
    reader = mw.Conn(pb, co.addr, source="127.0.0.1", timeout=60)
    reader.hello(co.token)
    reader.send(pb.Envelope(id=3, watch=pb.WatchRequest(job_id=job, from_event=1, follow=False)))
    n_read = 0
    while True:
        e = reader.recv()
        b = e.WhichOneof("body")
        if b == "event":
            n_read += 1
        else:
            break
    time.sleep(2.0)
    rss1 = pr.rss_max
print(f"coordinator CPU during the replay attack: {coord_cpu_s() - cpu0:.2f} s", flush=True)
pr.report("200 non-reading watchers")
cut = log_text().count("cut off")
check(b == "watch_end" and n_read >= N_EV,
      f"a reading watcher replayed all {n_read} events (ends with {b})")
bound = rss0 / 1024 + OUTPUT_CAP_MB + 24
check(rss1 / 1024 < bound, f"200 non-reading watchers of a {N_EV * 16 / 1000:.0f} MB log: RSS "
      f"{rss0 / 1024:.1f} -> max {rss1 / 1024:.1f} MB (< baseline + limits.output_bytes 4 MiB + "
      f"24 MB = {bound:.0f} MB); {cut} cut off, the slowest first")
check(cut > 0, f"non-reading watchers were cut off ({cut})")
for s in stalled:
    s.close()
check(co.proc.poll() is None, "the coordinator is still running")
co.stop()
sys.exit(fail)
