"""tests/service/test_sweep.py BUILD REPO GOLDEN TMP - sweeps (issue 19, options/sweep.h) with
real processes: a coordinator on loopback (TLS), ranks under mpirun, the CLI.

  1. `melbo submit ... --radius 3 --sweep radius=2,4,8 --sweep source-layer=1,2` is one job: its
     STEP events name their point (1..6 of 6), and it ends with 6 banks, one per point;
  2. `melbo show` prints the table per point (R, median z, degenerate share, clusters; --json
     too), and each point's bank equals the bank `melbo-rank train` writes for that point alone
     (the sweep's --radius 3 overridden), tensors and metadata, but the job id and the
     creation time;
  3. the catalog keeps the sweep in each bank's provenance (`melbo bank show --json`), not in the
     bank file;
  4. a sweep killed with SIGKILL mid-way and started again with the same command line (what a
     resubmission does) skips the finished points, resumes the interrupted one from its
     checkpoint and ends with the banks of an uninterrupted run (every tensor byte and all
     metadata but the creation time);
  5. bad sweeps are refused before anything is queued: a non-numeric option, an empty grid, more
     points than limits.max_sweep_points, a point over limits.max_steps, a layout option, a
     point the model refuses (source layer past the target)."""
import json, os, shutil, signal, struct, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

build, repo, golden, tmp = sys.argv[1:5]
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)
co = mw.Coord(build, os.path.join(tmp, "run"),
              conf=["limits.max_sweep_points=20", "limits.max_steps=1000"])
melbo = os.path.join(build, "cli", "melbo")
rank = os.path.join(build, "rank", "melbo-rank")
model = os.path.abspath(os.path.join(golden, "models", "llama3"))
ids = "492,403,287,109,129,38,286"
base = ["--model", model, "--prompt-ids", ids, "--target-layer", "4", "--vectors", "2",
        "--steps", "5", "--max-new-tokens", "4", "--random-baselines", "2"]
fail = 0


def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    fail |= not cond


def cli(*args, timeout=180):
    env = dict(os.environ, MELBO_COORD=co.addr, MELBO_TOKEN=co.token,
               MELBO_COORD_FINGERPRINT=co.fingerprint)
    p = subprocess.run([melbo, *args], env=env, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def read_bank(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return h.pop("__metadata__", {}), h, b[8 + n:]


try:
    # ---- 1. one job, six points ----------------------------------------------------------------
    st, job, err = cli("submit", *base, "--radius", "3", "--sweep", "radius=2,4,8",
                       "--sweep", "source-layer=1,2", "--name", "sweep")
    job = job.strip()
    check(st == 0 and job.isdigit(), f"sweep job {job} submitted {err.strip()}")
    st, out, err = cli("watch", job, "--json")
    events = [json.loads(l) for l in out.splitlines()]
    steps = [e for e in events if e["kind"] == "step"]
    banks = [e for e in events if e["kind"] == "bank"]
    check(st == 0 and sorted({e.get("point") for e in steps}) == list(range(6))
          and all(e.get("points") == 6 for e in steps) and len(steps) == 30
          and steps[0]["point_label"] == "radius=2 source-layer=1",
          f"STEP events name their point: {len(steps)} steps over points "
          f"{sorted({e.get('point') for e in steps})}")
    check(len(banks) == 6 and len({b["bank"] for b in banks}) == 6,
          f"6 BANK events, 6 distinct banks ({events[-1]['state']})")

    # ---- 2. the table, and each point's bank = the point alone -----------------------------
    st, out, err = cli("show", job)
    check(st == 0 and "sweep: 6 points" in out and "radius=8 source-layer=2" in out
          and "MEDIAN Z" in out, "melbo show prints the sweep table:\n" +
          "\n".join("    " + l for l in out.splitlines() if "radius=" in l or "POINT" in l))
    shown = json.loads(cli("show", job, "--json")[1])
    pts = shown.get("sweep", [])
    check([p["point"] for p in pts] == list(range(6))
          and [p["label"] for p in pts][:2] == ["radius=2 source-layer=1", "radius=2 source-layer=2"]
          and all("median_z" in p and "degenerate" in p and "clusters" in p for p in pts)
          and [p["radius"] for p in pts] == [2, 2, 4, 4, 8, 8],
          "show --json: 6 points in grid order, each with R and its triage summary")
    same = 0
    for p in pts:
        got = os.path.join(tmp, f"p{p['point']}.bank.safetensors")
        cli("fetch", "--bank", p["bank"], "-o", got)
        r, sl = p["label"].split()
        alone = os.path.join(tmp, f"alone{p['point']}.bank.safetensors")
        subprocess.run([rank, "train", *base, "--radius", r.split("=")[1], "--source-layer",
                        sl.split("=")[1], "--out", alone], capture_output=True, check=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
        m1, h1, d1 = read_bank(got)
        m2, h2, d2 = read_bank(alone)
        diff = sorted(k for k in set(m1) | set(m2) if m1.get(k) != m2.get(k))
        same += d1 == d2 and h1 == h2 and set(diff) <= {"job_id", "created"}
    check(same == 6, f"{same} of 6 banks equal the point run alone (tensors and metadata but "
          "the job id and the creation time)")

    # ---- 3. provenance in the catalog -----------------------------------------------------
    info = json.loads(cli("bank", "show", pts[3]["bank"], "--json")[1])
    sw = (info.get("provenance") or {}).get("sweep") or {}
    m, _, _ = read_bank(os.path.join(tmp, "p3.bank.safetensors"))
    check(sw.get("label") == "radius=4 source-layer=2" and sw.get("point") == 3
          and sw.get("axes", {}).get("radius") == ["2", "4", "8"]
          and not any("sweep" in k for k in m),
          f"bank show --json: provenance.sweep {sw.get('label')!r}, point {sw.get('point')}; "
          "the bank file has no sweep key")

    # ---- 4. SIGKILL mid-sweep, the same command again ------------------------------------------
    def run_sweep(d, kill_after=None):
        os.makedirs(d, exist_ok=True)
        cmd = [rank, "train", *base[:-6], "--vectors", "2", "--steps", "300", "--max-new-tokens",
               "4", "--random-baselines", "2", "--radius", "3", "--sweep", "radius=2,4",
               "--sweep", "source-layer=1,2", "--checkpoint-every", "20", "--out",
               os.path.join(d, "out.bank.safetensors"), "--checkpoint", os.path.join(d, "c.ckpt")]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        if kill_after is None:
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            return r.returncode, r.stderr
        p = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env)
        end = time.time() + 120
        while time.time() < end and not os.path.exists(os.path.join(d, kill_after)):
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        p.wait()
        return p.returncode
    rc, _ = run_sweep(os.path.join(tmp, "whole"))
    # killed as soon as point 2 wrote its first checkpoint (every 20 of its 300 steps)
    rk = run_sweep(os.path.join(tmp, "killed"), kill_after="c.ckpt.p2")
    left = sorted(f for f in os.listdir(os.path.join(tmp, "killed")) if f.endswith(".safetensors"))
    rr, log = run_sweep(os.path.join(tmp, "killed"))
    resumed = [l for l in log.splitlines() if "resumed from" in l or "done before" in l]
    eq = []
    for k in range(4):
        m1, h1, d1 = read_bank(os.path.join(tmp, "whole", f"out.p{k}.bank.safetensors"))
        m2, h2, d2 = read_bank(os.path.join(tmp, "killed", f"out.p{k}.bank.safetensors"))
        m1.pop("created"), m2.pop("created")
        eq.append(d1 == d2 and h1 == h2 and m1 == m2)
    check(rc == 0 and rk == -9 and 2 <= len(left) < 4 and rr == 0 and all(eq)
          and sum("done before" in l for l in resumed) == len(left)
          and (any("resumed from" in l for l in resumed) or len(left) == 3),
          f"killed after {left}, started again: 4 banks equal to an uninterrupted run's, every "
          f"byte of every tensor and all metadata but the creation time ({eq}); "
          f"{[l.split(': ', 1)[1][:48] for l in resumed]}")

    # ---- 5. bad sweeps --------------------------------------------------------------------
    before = len(json.loads(cli("ls", "--json")[1]))
    for args, needle in [(["--radius", "3", "--sweep", "loss-axis=dim,token"], "only numeric"),
                         (["--radius", "3", "--sweep", "prompt=a,b"], "only numeric"),
                         (["--radius", "3", "--sweep", "radius="], "empty grid"),
                         (["--radius", "3", "--sweep", "seed=1,2,3,4,5", "--sweep",
                           "steps=1,2,3,4,5"], "limits.max_sweep_points = 20"),
                         (["--radius", "3", "--sweep", "steps=5,5000"], "limits.max_steps"),
                         (["--radius", "3", "--sweep", "tp=1,2"], "not swept"),
                         (["--radius", "3", "--sweep", "source-layer=1,5"], "sweep point 1"),
                         (["--radius", "3", "--sweep", "radius=2", "--sweep", "radius=4"],
                          "given twice")]:
        st, out, err = cli("submit", *base, *args)
        check(st != 0 and needle in err, f"submit {' '.join(args[2:])}: refused "
              f"({err.strip()[-120:]!r})")
    check(len(json.loads(cli("ls", "--json")[1])) == before, "nothing was queued")
finally:
    co.stop()
sys.exit(1 if fail else 0)
