"""tests/service/test_gen.py BUILD REPO GOLDEN TMP - gen jobs (issue 19) with real processes: a
coordinator on loopback (TLS), ranks under mpirun, the CLI.

  1. a small bank is trained through the coordinator (the golden llama3 model, a text prompt);
  2. `melbo gen --bank ID --vector 0 --vector -1*0 --vector none --prompt ... --prompt ...` runs
     as a job (also with --tp 2: two ranks, the same text): its standard output is exactly the six completions, one after another (each followed
     by a newline), equal to local `melbo-rank gen --json` with the same settings on the fetched
     bank; the job id and progress went to standard error;
  3. `--json` gives the stream as events: the "tokens" pieces of each sequence concatenate to its
     "completion" text;
  4. the results are stored with the job: ShowJob and `melbo show` list the completions
     (sequence, label, text) and `melbo ls --json` names the job's kind "gen"; after a
     coordinator restart too;
  5. sampling settings pass through (temperature, top-k, seed): equal to local again;
  7. `melbo chat --script`: three turns (a /vector switch before the third) equal the same
     conversation generated locally turn by turn (--messages, the whole history each turn);
     /save writes the JSONL transcript with each reply's vector;
  8. `melbo warm --bank ID`: a warm job (kind warm) loads the model once; two gen requests and
     a 3-turn chat are served by it (the rank log shows one load and 5 requests), with the same
     text, each faster than the cold gen; idle for limits.warm_idle_s (4 s here) it ends by
     itself and gen runs cold again; warm with an unknown model or a gen option is refused;
  6. bad input is refused before anything is queued: an unknown bank, --model, --adapter on a
     vector bank, --source-layer past the model, --max-new-tokens over the limit, an unknown
     option, no --bank; a chat or gen on a bank whose model directory is gone."""
import json, os, shutil, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

build, repo, golden, tmp = sys.argv[1:5]
pb = mw.load_pb2(repo, os.path.join(tmp, "py"))
os.makedirs(os.path.join(tmp, "models"), exist_ok=True)
co = mw.Coord(build, os.path.join(tmp, "run"),
              conf=["limits.max_new_tokens=64", "limits.warm_idle_s=4",
                    "model_root=" + os.path.abspath(os.path.join(golden, "models")),
                    "model_root=" + os.path.abspath(os.path.join(tmp, "models"))])
melbo = os.path.join(build, "cli", "melbo")
rank = os.path.join(build, "rank", "melbo-rank")
model = os.path.abspath(os.path.join(golden, "models", "llama3"))
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


def local_gen(bank, *args):
    p = subprocess.run([rank, "gen", "--model", model, "--bank", bank, "--json", *args],
                       capture_output=True, text=True, timeout=180,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    if p.returncode != 0:
        print(p.stderr)
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]


def n_jobs():
    st, out, _ = cli("ls", "--json")
    return len(json.loads(out)) if st == 0 else -1


try:
    # ---- 1. a bank ------------------------------------------------------------------------
    st, job, err = cli("submit", "--model", model, "--prompt", "The capital of France is",
                       "--source-layer", "1", "--target-layer", "4", "--radius", "4",
                       "--vectors", "2", "--steps", "3", "--max-new-tokens", "4")
    job = job.strip()
    check(st == 0 and job.isdigit(), f"training job {job} submitted {err.strip()}")
    st, _, err = cli("watch", job, "--json")
    check(st == 0, f"training job {job} DONE {err.strip()[-200:]}")
    shown = json.loads(cli("show", job, "--json")[1])
    bank = shown.get("bank", "")
    check(len(bank) == 16, f"its bank {bank}")
    fetched = os.path.join(tmp, "bank.safetensors")
    check(cli("fetch", job, "-o", fetched)[0] == 0, "fetched for the local comparison")

    # ---- 2. melbo gen: stdout is exactly the completions ---------------------------------------
    sel = ["--vector", "0", "--vector", "-1*0", "--vector", "none", "--prompt", "Hello",
           "--prompt", "Tell me a story", "--max-new-tokens", "12"]
    t0 = time.time()
    st, out, err = cli("gen", "--bank", bank, *sel)
    cold_s = time.time() - t0
    want = local_gen(fetched, *sel)
    check(st == 0 and len(want) == 6, f"melbo gen exit {st} in {time.time() - t0:.1f} s; local "
          f"melbo-rank gen gave {len(want)} completions")
    expect = "".join(w["text"] + "\n" for w in want)
    check(out == expect, "stdout is exactly the 6 completions in order, equal to local gen:\n"
          + "\n".join(f"    {l!r}" for l in out.split("\n")[:6]))
    gen_job = next((l.split()[-1] for l in err.splitlines() if l.startswith("melbo gen: job ")
                    and l.split()[-1].isdigit()), "")
    check(gen_job.isdigit() and "DONE" in err and gen_job not in out,
          f"job id ({gen_job}) and progress on stderr only: {err.strip().splitlines()[-1]!r}")

    st, out2, err2 = cli("gen", "--bank", bank, "--tp", "2", *sel)
    check(st == 0 and out2 == expect, f"gen --tp 2 (2 ranks, each a slice of every block): the same "
          f"text ({err2.strip().splitlines()[-1]!r})")

    # ---- 3. --json: the stream as events ----------------------------------------------------
    st, out, err = cli("gen", "--bank", bank, "--json", *sel)
    events = [json.loads(l) for l in out.splitlines()]
    pieces, whole = {}, {}
    for e in events:
        if e["kind"] == "tokens":
            pieces[e["sequence"]] = pieces.get(e["sequence"], "") + e["text"]
        elif e["kind"] == "completion":
            whole[e["sequence"]] = e["text"]
    check(st == 0 and sorted(whole) == list(range(6))
          and all(pieces.get(k, "") == whole[k] == want[k]["text"] for k in range(6))
          and events[-1]["state"] == "DONE",
          f"--json: {len(events)} events; each sequence's tokens concatenate to its completion, "
          "equal to local gen")

    # ---- 4. stored with the job ----------------------------------------------------------------
    c = mw.Conn(pb, co.addr, fingerprint=co.fingerprint)
    c.hello(co.token)

    def stored(j):
        rep = c.call(show_job=pb.ShowJobRequest(job_id=int(j)))
        return [(x.sequence, x.label, x.text) for x in rep.job.completions], rep.job.job

    rows, summ = stored(gen_job)
    check([r[2] for r in rows] == [w["text"] for w in want] and rows[3][1] ==
          "vector -1*0, prompt 1" and summ.command == "gen" and summ.state == pb.DONE,
          f"ShowJob: {len(rows)} completions in order, with labels ({rows[3][1]!r}), command "
          f"{summ.command!r}")
    st, out, _ = cli("show", gen_job)
    shj = json.loads(cli("show", gen_job, "--json")[1])
    check(st == 0 and out.count("=== vector ") == 6 and "=== vector -1*0, prompt 1 ===" in out
          and "\x1b" not in out
          and [x["text"] for x in shj.get("completions", [])] == [w["text"] for w in want]
          and shj.get("kind") == "gen",
          "melbo show (and --json) lists the 6 completions (control bytes escaped)")
    st, _, err = cli("fetch", gen_job, "-o", os.path.join(tmp, "none.safetensors"))
    check(st != 0 and "gen job" in err and "melbo show" in err,
          f"fetch of a gen job: {err.strip()!r}")
    lsj = {j["job"]: j for j in json.loads(cli("ls", "--json")[1])}
    check(lsj.get(int(gen_job), {}).get("kind") == "gen", "melbo ls --json: kind gen")
    c.close()
    co.restart()
    c = mw.Conn(pb, co.addr, fingerprint=co.fingerprint)
    c.hello(co.token)
    rows2, summ2 = stored(gen_job)
    check(rows2 == rows and summ2.command == "gen", "after a restart: the same completions")

    # ---- 5. sampling settings pass through -----------------------------------------------------
    samp = ["--vector", "1", "--prompt", "Once upon a time", "--max-new-tokens", "10",
            "--temperature", "0.9", "--top-k", "20", "--gen-seed", "7"]
    st, out, err = cli("gen", "--bank", bank, *samp)
    want2 = local_gen(fetched, *samp)
    check(st == 0 and want2 and out == want2[0]["text"] + "\n",
          f"sampled (T 0.9, top-k 20, seed 7): equal to local gen ({out.strip()!r})")

    # ---- 7. a scripted chat of three turns = the same conversation generated locally ------------
    script = os.path.join(tmp, "chat.txt")
    transcript = os.path.join(tmp, "chat.jsonl")
    with open(script, "w") as f:
        f.write("Hello there\nWhat is the capital of France?\n/vector -1*0\nTell me more\n"
                f"/save {transcript}\n/quit\n")
    st, out, err = cli("chat", "--bank", bank, "--vector", "0", "--max-new-tokens", "8",
                       "--system", "You are terse.", "--script", script)
    replies = out.split("\n")[:3]
    # locally, turn by turn: the whole conversation each turn, the vector of that turn
    conv, local = [{"role": "system", "content": "You are terse."}], []
    for text, vec in (("Hello there", "0"), ("What is the capital of France?", "0"),
                      ("Tell me more", "-1*0")):
        conv.append({"role": "user", "content": text})
        w = local_gen(fetched, "--vector", vec, "--max-new-tokens", "8",
                      "--messages", json.dumps(conv))
        local.append(w[0]["text"] if w else None)
        conv.append({"role": "assistant", "content": local[-1] or ""})
    check(st == 0 and out.count("\n") == 3 and replies == local,
          f"chat --script: 3 turns equal to local gen turn by turn with the history "
          f"({[r[:20] for r in replies]})")
    lines = [json.loads(l) for l in open(transcript)] if os.path.exists(transcript) else []
    check(len(lines) == 7 and lines[0]["settings"]["bank"] == bank
          and lines[0]["settings"]["system"] == "You are terse."
          and [l.get("vector") for l in lines[2::2]] == ["0", "0", "-1*0"]
          and [l["content"] for l in lines[2::2]] == local,
          f"/save: JSONL transcript, settings then 6 messages, each reply with its vector")
    st, out, err = cli("chat", "--bank", bank, "--prompt", "x", "--script", script)
    check(st == 2 and "--prompt is not an option of melbo chat" in err, f"chat --prompt refused: "
          f"{err.strip()!r}")

    # ---- 8. a warm job: one model load for many requests, faster, released when idle ------------
    st, wjob, err = cli("warm", "--bank", bank, "--name", "warm-llama")
    wjob = wjob.strip()
    check(st == 0 and wjob.isdigit(), f"melbo warm: job {wjob} {err.strip()}")

    def job_row(j):
        return {x["job"]: x for x in json.loads(cli("ls", "--json")[1])}.get(int(j), {})
    end = time.time() + 60
    while time.time() < end and job_row(wjob).get("state") != "RUNNING":
        time.sleep(0.1)
    check(job_row(wjob).get("state") == "RUNNING" and job_row(wjob).get("kind") == "warm",
          f"warm job {wjob} RUNNING (kind warm) once its model is loaded")
    times, outs = [], []
    for _ in range(2):
        t0 = time.time()
        st, out, err = cli("gen", "--bank", bank, *sel)
        times.append(time.time() - t0)
        outs.append(out)
        served = f"on warm job {wjob}" in err
    check(all(o == expect for o in outs) and served,
          f"two gen requests served by the warm job "
          f"({[l for l in err.splitlines() if 'warm job' in l][:1]}), "
          "both equal to the cold one")
    t0 = time.time()
    st, out, err = cli("chat", "--bank", bank, "--vector", "0", "--max-new-tokens", "8",
                       "--system", "You are terse.", "--script", script)
    check(st == 0 and out.split("\n")[:3] == local, f"a scripted chat through the warm job: the "
          f"same 3 replies ({time.time() - t0:.2f} s)")
    log = open(os.path.join(co.state, "jobs", wjob, "ranks.log")).read()
    check(log.count("gen: loading the model") == 1 and log.count("gen: warm: job") == 5,
          f"the warm job's rank log: one model load, 5 requests served")
    check(max(times) < cold_s, f"warm requests took {times[0]:.3f} s and {times[1]:.3f} s, the "
          f"cold one {cold_s:.3f} s ({cold_s / max(times):.1f}x)")
    end = time.time() + 30
    while time.time() < end and job_row(wjob).get("state") != "DONE":
        time.sleep(0.2)
    wshow = json.loads(cli("show", wjob, "--json")[1])
    check(job_row(wjob).get("state") == "DONE" and "released" in log + open(
        os.path.join(co.state, "jobs", wjob, "ranks.log")).read(),
          f"idle for limits.warm_idle_s = 4: the warm job ended by itself ({wshow.get('state')})")
    st, out, err = cli("gen", "--bank", bank, *sel)
    check(st == 0 and out == expect and "on warm job" not in err, "after it: gen runs cold again")
    st, out, err = cli("warm", "--model", "nosuchmodel")
    check(st != 0 and "not a registered model" in err, f"warm --model unknown: {err.strip()!r}")
    st, out, err = cli("warm", "--bank", bank, "--vector", "0")
    check(st == 2 and "unknown option" in err, f"warm --vector refused: {err.strip()!r}")

    # ---- 6. bad input: refused, nothing queued ---------------------------------------------
    before = n_jobs()
    for args, needle in [(["--bank", "0123456789abcdef", "--vector", "0"],
                          "no bank 0123456789abcdef"),
                         (["--bank", bank, "--model", model], "--model"),
                         (["--bank", bank, "--adapter", "0"], "--adapter needs an adapter bank"),
                         (["--bank", bank, "--source-layer", "99"], "outside the model's"),
                         (["--bank", bank, "--max-new-tokens", "65"], "limits.max_new_tokens"),
                         (["--bank", bank, "--frobnicate"], "frobnicate"),
                         (["--bank", bank, "--tp", "3"], "--tp 3"),
                         (["--vector", "0"], "--bank ID is required")]:
        st, out, err = cli("gen", *args, "--prompt", "Hi")
        check(st != 0 and needle in err and out == "", f"gen {' '.join(args)}: refused "
              f"({err.strip()[-110:]!r})")
    # a bank whose model is no longer available (its directory removed from the model root)
    gone = os.path.join(tmp, "models", "gone")
    shutil.rmtree(gone, ignore_errors=True)
    shutil.copytree(model, gone)
    st, gjob, err = cli("submit", "--model", gone, "--prompt", "Hi", "--source-layer", "1",
                        "--target-layer", "4", "--radius", "4", "--vectors", "1", "--steps", "2",
                        "--max-new-tokens", "2")
    gjob = gjob.strip()
    cli("watch", gjob, "--json")
    gbank = json.loads(cli("show", gjob, "--json")[1]).get("bank", "")
    shutil.rmtree(gone)
    before = n_jobs()
    st, out, err = cli("chat", "--bank", gbank, "--vector", "0", "--script", script)
    check(st != 0 and gone in err and n_jobs() == before,
          f"chat on a bank whose model is gone: refused, nothing queued ({err.strip()[-120:]!r})")
    st, out, err = cli("gen", "--bank", gbank, "--prompt", "Hi")
    check(st != 0 and n_jobs() == before, f"gen on it: refused ({err.strip()[-80:]!r})")
    check(n_jobs() == before, f"nothing was queued ({before} jobs before and after)")
finally:
    co.stop()
sys.exit(1 if fail else 0)
