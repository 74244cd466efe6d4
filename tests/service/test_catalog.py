"""tests/service/test_catalog.py BUILD REPO GOLDEN TMP - the lab catalog (issue 19) with real
processes: a coordinator whose jobs run the real melbo-rank on the golden models, the CLI, the wire
and the Python client.

Banks: two vector jobs of the same spec and seed (the same vectors, two banks), one at another
source layer, one of another model (qwen2), a private job of another user (erin) of the same spec,
and two adapter jobs of the same spec and seed. Then:
  - label: `melbo bank label ID:K TEXT --note N` stores who and when, reads back, changes, clears;
  - search: finds a label, a note, a word of a completion and a prompt word, each hit naming its
    bank and vector; FTS5 syntax works, text that is not FTS5 syntax is searched as plain words;
  - near: the same vector of the second bank at cosine 1 (within 1e-6) first, nothing of the other
    model or the other source layer; adapters by the cosine of B A, also 1 for the twin;
  - provenance: `melbo bank show --json` names user, time, job, the job's options, sweep null;
  - visibility: fred (not an admin) never sees erin's private bank in search or near, and his
    label / near on it is "no bank ID"; erin sees it;
  - bad input: unknown bank, a vector out of range, no vector, empty label, empty search text,
    --top 0, --model naming another model - clear errors, nothing stored;
  - a kill -9 and restart keeps labels and the index; a state directory from before the catalog
    (its tables dropped) is indexed again at start."""
import json, os, re, sqlite3, subprocess, sys, types
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import melbo_wire as mw

build, repo, golden, tmp = sys.argv[1:5]
pb = mw.load_pb2(repo, os.path.join(tmp, "py"))
co = mw.Coord(build, os.path.join(tmp, "run"))
melbo = os.path.join(build, "cli", "melbo")
coord_bin = os.path.join(build, "coord", "melbo-coord")
fail = 0

def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what)
    fail |= not cond

def cli(*args, token=None):
    env = dict(os.environ, MELBO_COORD=co.addr, MELBO_TOKEN=token or co.token)
    p = subprocess.run([melbo, *args], env=env, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr

def cli_json(*args, token=None):
    st, out, err = cli(*args, "--json", token=token)
    return st, (json.loads(out) if st == 0 and out.strip() else None), err

def add_user(name):
    out = subprocess.run([coord_bin, "token", "add", name, "--state", co.state], check=True,
                         capture_output=True, text=True).stdout
    return [l.split("=", 1)[1] for l in out.splitlines() if l.startswith("MELBO_TOKEN=")][0]

def spec(model="llama3", source_layer=1, private=False, adapter=False, seed=5):
    s = pb.JobSpec()
    opts = [("model", os.path.abspath(os.path.join(golden, "models", model))),
            ("prompt", "How can I bake a pie?"), ("source-layer", str(source_layer)),
            ("target-layer", "4"), ("steps", "4"), ("max-new-tokens", "8"), ("seed", str(seed))]
    opts += [("adapter-rank", "4"), ("vectors", "2")] if adapter else [("radius", "4"), ("vectors", "3")]
    if private:
        opts.append(("private", None))
    for name, value in opts:
        o = s.options.add(name=name)
        if value is not None:
            o.value = value
    return s

def run_job(conn, sp):
    rep = conn.call(submit=pb.SubmitRequest(spec=sp))
    assert rep.WhichOneof("body") == "submitted", rep
    job = rep.submitted.job_id
    conn.next_id += 1
    conn.send(pb.Envelope(id=conn.next_id, watch=pb.WatchRequest(job_id=job, from_event=1, follow=True)))
    last = None
    while True:
        env = conn.recv()
        if env.WhichOneof("body") == "event":
            last = env.event
        elif env.WhichOneof("body") == "watch_end":
            break
    assert last is not None and last.state == pb.DONE, f"job {job}: {last}"
    return job, conn.call(show_job=pb.ShowJobRequest(job_id=job)).job.bank.bank_id

def python_client():
    """melbo.client from the repository; without numpy (Debian's python) the package's
    __init__ cannot load, so the client module is loaded under a bare package."""
    sys.path.insert(0, os.path.join(repo, "python"))
    try:
        import melbo
    except ImportError:
        pkg = types.ModuleType("melbo")
        pkg.__path__ = [os.path.join(repo, "python", "melbo")]
        pkg.__version__ = "test"
        sys.modules["melbo"] = pkg
    from melbo import client
    return client

try:
    erin, fred = add_user("erin"), add_user("fred")
    c = mw.Conn(pb, co.addr)
    c.hello(co.token)
    ce = mw.Conn(pb, co.addr)
    ce.hello(erin)
    j1, b1 = run_job(c, spec())
    j2, b2 = run_job(c, spec())
    jl, bl = run_job(c, spec(source_layer=2))
    jq, bq = run_job(c, spec(model="qwen2"))
    jp, bp = run_job(ce, spec(private=True))
    ja1, ba1 = run_job(c, spec(adapter=True))
    ja2, ba2 = run_job(c, spec(adapter=True))
    banks = [b1, b2, bl, bq, bp, ba1, ba2]
    check(len(set(banks)) == 7, f"7 real banks (jobs {j1}..{ja2}): {banks}")

    # ---- provenance ---------------------------------------------------------------------------
    st, o, err = cli_json("bank", "show", b1)
    pv = (o or {}).get("provenance") or {}
    check(pv.get("job") == j1 and pv.get("user") and pv.get("time", 0) > 0 and "sweep" in pv
          and pv["sweep"] is None and pv.get("settings", {}).get("seed") == "5"
          and pv["settings"].get("prompt") == "How can I bake a pie?"
          and pv["settings"].get("model", "").endswith("llama3"),
          f"bank show --json: provenance {json.dumps(pv)[:200]}")
    st, out, err = cli("bank", "show", b1)
    check(st == 0 and '"provenance"' in out and '"settings"' in out, "bank show prints the provenance")

    # ---- label --------------------------------------------------------------------------------
    st, o, err = cli_json("bank", "label", f"{b1}:1", "refuses innocuous requests", "--note",
                          "found by the pie prompt; zanzibar")
    check(st == 0 and o == {**o, "bank": b1, "vector": 1, "label": "refuses innocuous requests",
                            "note": "found by the pie prompt; zanzibar"} and o.get("user")
          and o.get("time", 0) > 0, f"label {b1}:1 stored with who and when: {o} {err}")
    st, out, err = cli("bank", "label", f"{b1}:1")
    check(st == 0 and "refuses innocuous requests" in out and "zanzibar" in out and "by " in out,
          f"label without text reads the row:\n{out}{err}")
    st, o, err = cli_json("bank", "label", f"{b1}:2", "speaks like a pirate")
    st2, o2, _ = cli_json("bank", "label", f"{b1}:2", "--note", "arr")
    check(st == 0 and st2 == 0 and o2.get("label") == "speaks like a pirate" and o2.get("note") == "arr",
          f"a note alone keeps the label: {o2}")
    st, o, err = cli_json("bank", "label", f"{b1}:2", "--clear")
    check(st == 0 and "label" not in o and "note" not in o, f"--clear removes both: {o}")
    st, o, _ = cli_json("bank", "search", "pirate")
    check(st == 0 and o == [], f"a cleared label is not found any more: {o}")

    # ---- search -------------------------------------------------------------------------------
    st, o, err = cli_json("bank", "search", "refuses innocuous")
    check(st == 0 and any(h["bank"] == b1 and h["vector"] == 1 and h["field"] == "label"
                          and "[refuses]" in h["snippet"] for h in o),
          f"search finds the label: {o} {err}")
    st, o, err = cli_json("bank", "search", "refusing")  # porter: refusing ~ refuses
    check(st == 0 and any(h["bank"] == b1 and h["vector"] == 1 for h in o), "search stems words")
    st, o, err = cli_json("bank", "search", "zanzibar")
    check(st == 0 and [(h["bank"], h["vector"], h["field"], h.get("label")) for h in o] ==
          [(b1, 1, "note", "refuses innocuous requests")], f"search finds the note: {o}")
    rows = c.call(show_bank=pb.ShowBankRequest(bank_id=b1)).bank.rows
    words = [(r.index, w) for r in rows for w in re.findall(r"[A-Za-z]{4,}", r.completion)]
    if words:
        k, word = words[0]
        st, o, err = cli_json("bank", "search", word, "--limit", "50")
        check(st == 0 and any(h["bank"] == b1 and h["vector"] == k and h["field"] == "completion"
                              for h in o),
              f"search finds the completion word {word!r} of {b1}:{k} ({len(o or [])} hits)")
    else:
        check(False, f"no word of 4 letters in the completions of {b1}: {[r.completion for r in rows]}")
    st, o, err = cli_json("bank", "search", "bake pie")
    check(st == 0 and any(h["bank"] == b2 and h["vector"] is None and h["field"] == "prompt" for h in o),
          f"search finds the prompt (vector null): {len(o or [])} hits")
    st, out, err = cli("bank", "search", "zanzibar")
    check(st == 0 and b1 in out and "note" in out and "[refuses innocuous requests]" in out,
          f"search table:\n{out}{err}")
    for text in ['"unbalanced', "can't", "AND", "foo:bar", "NEAR(", "*"]:
        st, o, err = cli_json("bank", "search", text)
        check(st == 0 and isinstance(o, list), f"search {text!r}: not FTS5 syntax, searched as words ({err.strip()})")
    st, o, err = cli_json("bank", "search", "refuses OR zanzibar")
    check(st == 0 and len(o) >= 2, f"FTS5 syntax (OR) works: {len(o or [])} hits")

    # ---- near ---------------------------------------------------------------------------------
    st, o, err = cli_json("bank", "near", f"{b1}:0", "--top", "20", token=fred)
    check(st == 0 and o and o[0]["bank"] == b2 and o[0]["vector"] == 0
          and abs(o[0]["cosine"] - 1) < 1e-6 and o[0]["job"] == j2,
          f"near {b1}:0: first the same vector of the same seed's bank, cosine "
          f"{o[0]['cosine'] if o else None!r}")
    got = {h["bank"] for h in o or []}
    check(bq not in got and bl not in got and ba1 not in got,
          "near: nothing of another model, another source layer or another kind")
    check(bp not in got, "near as fred: erin's private bank is not there")
    check(all(h["bank"] in (b1, b2) for h in o or []) and len(o or []) == 5,
          f"near: the other 5 vectors of the two banks ({[(h['bank'][:6], h['vector'], round(h['cosine'], 4)) for h in o or []]})")
    st, o, err = cli_json("bank", "near", f"{b2}:1", token=fred)  # (an admin sees erin's twin too)
    check(st == 0 and o and o[0]["bank"] == b1 and o[0]["vector"] == 1 and abs(o[0]["cosine"] - 1) < 1e-6
          and o[0].get("label") == "refuses innocuous requests" and "completion" in o[0],
          f"near's hit carries its label and first completion: {o[0] if o else None}")
    st, o, err = cli_json("bank", "near", f"{b1}:0", token=erin)
    check(st == 0 and any(h["bank"] == bp and abs(h["cosine"] - 1) < 1e-6 for h in o),
          "near as erin: her private bank's twin vector at cosine 1")
    st, o, err = cli_json("bank", "near", f"{b1}:0", "--top", "1")
    check(st == 0 and len(o) == 1 and abs(o[0]["cosine"] - 1) < 1e-6, "--top 1: one hit")
    st, o, err = cli_json("bank", "near", f"{ba1}:1")
    check(st == 0 and o and o[0]["bank"] == ba2 and o[0]["vector"] == 1 and abs(o[0]["cosine"] - 1) < 1e-6
          and all(h["bank"] in (ba1, ba2) for h in o),
          f"near of an adapter: the twin adapter by cos(B A), {[(h['bank'][:6], h['vector'], round(h['cosine'], 6)) for h in o or []]}")
    st, out, err = cli("bank", "near", f"{b1}:0", "--model", "llama3")
    check(st == 0 and b2 in out and "COSINE" in out, f"near --model naming its own model:\n{out}{err}")
    st, out, err = cli("bank", "near", f"{bq}:0")
    check(st == 0 and b1 not in out and b2 not in out, "near of the qwen2 bank: no llama3 vector")

    # ---- visibility ---------------------------------------------------------------------------
    st, o, err = cli_json("bank", "label", f"{bp}:0", "erin's secret direction", token=erin)
    check(st == 0 and o.get("user") == "erin", "erin labels her private bank")
    st, o, err = cli_json("bank", "search", "secret direction", token=fred)
    check(st == 0 and o == [], f"fred's search does not find erin's private label: {o}")
    st, o, err = cli_json("bank", "search", "secret direction", token=erin)
    check(st == 0 and [h["bank"] for h in o] == [bp], "erin's search finds it")
    st, o, err = cli_json("bank", "search", "bake", "--limit", "100", token=fred)
    check(st == 0 and o and all(h["bank"] != bp for h in o), "fred's search never names the private bank")
    st, out, err = cli("bank", "label", f"{bp}:0", "mine now", token=fred)
    check(st == 1 and f"no bank {bp}" in err, f"fred labelling erin's private bank: {err.strip()}")
    st, out, err = cli("bank", "near", f"{bp}:0", token=fred)
    check(st == 1 and f"no bank {bp}" in err, f"fred's near from erin's private bank: {err.strip()}")

    # ---- bad input ----------------------------------------------------------------------------
    def expect(what, want, needle, *args):
        st, out, err = cli(*args)
        check(st == want and needle in err, f"{what}: exit {st}, {err.strip()!r}")
    expect("label of an unknown bank", 1, "no bank 0123456789abcdef", "bank", "label",
           "0123456789abcdef:0", "x")
    expect("label of a non-id", 1, "not a bank id", "bank", "label", "xyz:0", "x")
    expect("label of a vector out of range", 1, "has 3 vectors (0..2): there is no vector 3",
           "bank", "label", f"{b1}:3", "x")
    expect("label of an adapter out of range", 1, "has 2 adapters", "bank", "label", f"{ba1}:7", "x")
    expect("label without :K", 2, "is not ID:K", "bank", "label", b1, "x")
    expect("an empty label", 1, "empty label", "bank", "label", f"{b1}:0", "")
    expect("--clear with a label", 1, "--clear", "bank", "label", f"{b1}:0", "x", "--clear")
    expect("empty search text", 1, "empty search text", "bank", "search", "  ")
    expect("search without text", 2, "usage", "bank", "search")
    expect("near --top 0", 2, "--top '0'", "bank", "near", f"{b1}:0", "--top", "0")
    expect("near --model of another model", 1, "near compares vectors of one model only",
           "bank", "near", f"{b1}:0", "--model", "qwen2")
    expect("near of an unknown bank", 1, "no bank 00000000000000ff", "bank", "near",
           "00000000000000ff:0")
    expect("near of a vector out of range", 1, "there is no vector 99", "bank", "near", f"{b1}:99")
    rep = c.call(near=pb.NearRequest(bank_id=b1, vector=0, top=0))
    check(rep.WhichOneof("body") == "error" and rep.error.code == pb.ERROR_INVALID
          and "--top 0" in rep.error.message, f"NearRequest top 0 on the wire: {rep.error.message!r}")
    rep = c.call(label=pb.LabelRequest(bank_id=b1, label="no vector"))
    check(rep.WhichOneof("body") == "error" and "which vector" in rep.error.message,
          f"LabelRequest without a vector: {rep.error.message!r}")
    rep = c.call(search=pb.SearchRequest(text="x", limit=10 ** 9))
    check(rep.WhichOneof("body") == "error" and "limits.max_list" in rep.error.message,
          f"search limit over limits.max_list: {rep.error.message!r}")
    st, o, _ = cli_json("bank", "label", f"{b1}:0")
    check(st == 0 and "label" not in o, f"nothing was stored by the refusals: {o}")

    # ---- the Python client --------------------------------------------------------------------
    try:
        mc = python_client()
        with mc.Client(co.addr, co.token) as pc:
            r = pc.label(b2, 2, "python label", note="from a notebook")
            hits = pc.search("notebook")
            near = pc.near(b2, 2, top=3)
            check(r.label == "python label" and r.note == "from a notebook" and
                  [(h.bank_id, h.vector, h.field) for h in hits] == [(b2, 2, "note")] and
                  {(h.bank_id, h.vector) for h in near if abs(h.cosine - 1) < 1e-6} == {(b1, 2), (bp, 2)}
                  and len(near) == 3, f"Client.label / search / near: {r}, {len(hits)} hits, "
                                      f"{[(h.bank_id[:6], h.vector) for h in near]}")
            try:
                pc.near(b1, 0, model="qwen2")
                check(False, "Client.near(model=another) raises")
            except mc.ClientError as e:
                check(e.code == "ERROR_INVALID" and "one model" in e.message,
                      f"Client.near(model=another) raises {e.code}")
    except ImportError as e:
        print(f"skip the Python client checks ({e})")

    # ---- restart: labels and index kept; a state from before the catalog indexed at start ------
    c.close(), ce.close()
    co.restart()
    st, o, err = cli_json("bank", "search", "zanzibar")
    check(st == 0 and [(h["bank"], h["vector"]) for h in o] == [(b1, 1)], "after kill -9: search finds the note")
    st, o, err = cli_json("bank", "near", f"{b1}:0", token=fred)
    check(st == 0 and o and o[0]["bank"] == b2 and abs(o[0]["cosine"] - 1) < 1e-6 and
          all(h["bank"] != bp for h in o), "after kill -9: near as before, private bank hidden")
    co.proc.kill()
    co.proc.wait()
    co.log.close()
    db = sqlite3.connect(os.path.join(co.state, "melbo.db"))
    for t in ("catalog_banks", "catalog_vectors", "catalog_fts"):
        db.execute(f"DROP TABLE {t}")
    db.commit()
    db.close()
    co._serve()
    st, o, err = cli_json("bank", "near", f"{b1}:0", token=fred)
    check(st == 0 and o and o[0]["bank"] == b2 and abs(o[0]["cosine"] - 1) < 1e-6,
          "a state directory without the index: banks indexed again at start, near works")
    st, o, err = cli_json("bank", "search", word if words else "bake")
    check(st == 0 and any(h["bank"] == b1 for h in o), "and search finds completions again")
    st, o, err = cli_json("bank", "show", b1)
    check(st == 0 and o.get("provenance", {}).get("job") == j1, "and the provenance is rebuilt")
    st, out, err = cli("bank", "label", f"{b1}:1")
    check(st == 0 and "refuses innocuous requests" in out, "labels survive it")
finally:
    co.stop()
sys.exit(fail)
