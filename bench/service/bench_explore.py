"""bench/service/bench_explore.py BUILD REPO [MODEL] - exploring through the service on the demo
model (issue 19), every figure measured in this run against its baseline in the same run:

  ttft   time to the first streamed token of `melbo gen` served by a warm job (`melbo warm`),
         against a cold `melbo-rank gen` of the same request with --max-new-tokens 1 (process
         start, model load, prefill, one token: the earliest a cold run can show a token).
         Target >= 10x.
  sweep  a 6-point `--sweep radius=...` job against the same 6 points as 6 separate jobs
         (submitted together, the coordinator runs them under its default slot count), from
         submit to the last bank. Target >= 3x.

MODEL defaults to the demo's (deploy/fetch-default-model: SmolLM2-135M-Instruct, Q4_1 GGUF).
Both sides run on this machine's CPU with OMP_NUM_THREADS=2 (the coordinator's ranks inherit it).
Run by hand (not a CTest test): /usr/bin/python3 bench/service/bench_explore.py build ."""
import json, os, statistics, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "service"))
import melbo_wire as mw

build, repo = sys.argv[1:3]
model = sys.argv[3] if len(sys.argv) > 3 else subprocess.run(
    [os.path.join(repo, "deploy", "fetch-default-model")], capture_output=True, text=True,
    check=True).stdout.strip().splitlines()[-1]
os.environ["OMP_NUM_THREADS"] = "2"
tmp = os.path.join(build, "bench_explore")
co = mw.Coord(build, tmp, conf=["model_root=" + os.path.dirname(os.path.abspath(model))])
melbo = os.path.join(build, "cli", "melbo")
rank = os.path.join(build, "rank", "melbo-rank")
env = dict(os.environ, MELBO_COORD=co.addr, MELBO_TOKEN=co.token,
           MELBO_COORD_FINGERPRINT=co.fingerprint)
prompt = "How can I make a bomb?"
train = ["--model", os.path.abspath(model), "--prompt", prompt, "--source-layer", "7",
         "--target-layer", "22", "--target-tokens", "-3:", "--vectors", "4", "--steps", "10",
         "--lr", "1e-2", "--max-new-tokens", "16", "--random-baselines", "2"]


def cli(*args):
    p = subprocess.run([melbo, *args], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"melbo {' '.join(args[:3])}: {p.stderr.strip()}")
    return p.stdout


def first_byte_s(args):
    """Seconds from starting `melbo ARGS` to its first byte on stdout, and to its end."""
    t0 = time.time()
    p = subprocess.Popen([melbo, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(1)
    t1 = time.time()
    p.communicate()
    return t1 - t0, time.time() - t0


try:
    print(f"model {model}; melbo {subprocess.run([rank, '--version'], capture_output=True, text=True).stdout.strip()}")
    job = cli("submit", *train, "--radius", "4").strip()
    cli("watch", job, "--json")
    bank = json.loads(cli("show", job, "--json"))["bank"]
    fetched = os.path.join(tmp, "bank.safetensors")
    cli("fetch", job, "-o", fetched)
    gen = ["--vector", "0", "--prompt", "How can I bake a pie?", "--max-new-tokens", "16"]

    # ---- ttft -------------------------------------------------------------------------------
    cold = []
    for _ in range(3):
        t0 = time.time()
        subprocess.run([rank, "gen", "--model", os.path.abspath(model), "--bank", fetched,
                        "--vector", "0", "--prompt", "How can I bake a pie?", "--max-new-tokens",
                        "1"], capture_output=True, check=True)
        cold.append(time.time() - t0)
    warm_job = cli("warm", "--bank", bank).strip()
    end = time.time() + 120
    while time.time() < end and {j["job"]: j for j in json.loads(cli("ls", "--json"))}[
            int(warm_job)]["state"] != "RUNNING":
        time.sleep(0.05)
    first_byte_s(["gen", "--bank", bank, *gen])  # the first request pays nothing more: a check
    warm = [first_byte_s(["gen", "--bank", bank, *gen]) for _ in range(5)]
    cold_s, warm_s = statistics.median(cold), statistics.median(w[0] for w in warm)
    cli("cancel", warm_job)

    # ---- sweep --------------------------------------------------------------------------------
    radii = ["2", "4", "8", "16", "32", "64"]
    t0 = time.time()
    sj = cli("submit", *train, "--sweep", "radius=" + ",".join(radii)).strip()
    cli("watch", sj, "--json")
    sweep_s = time.time() - t0
    table = [l for l in cli("show", sj).splitlines() if "radius=" in l or "POINT" in l]
    t0 = time.time()
    jobs = [cli("submit", *train, "--radius", r).strip() for r in radii]
    for j in jobs:
        cli("watch", j, "--json")
    separate_s = time.time() - t0

    print(f"{'measure':<44} {'baseline':>10} {'melbo':>10} {'ratio':>7} {'target':>7}")
    print(f"{'time to first token, s (warm gen vs cold gen)':<44} {cold_s:>10.3f} {warm_s:>10.3f} "
          f"{cold_s / warm_s:>6.1f}x {'>=10x':>7}")
    print(f"{'6 radii, s (6 separate jobs vs one sweep)':<44} {separate_s:>10.2f} {sweep_s:>10.2f} "
          f"{separate_s / sweep_s:>6.1f}x {'>=3x':>7}")
    print(f"(warm gen of 16 tokens end to end: median {statistics.median(w[1] for w in warm):.3f} s;"
          f" cold gen of 1 token: {', '.join(f'{c:.3f}' for c in cold)} s)")
    print("the sweep's table (melbo show):")
    print("\n".join(table))
finally:
    co.stop()
