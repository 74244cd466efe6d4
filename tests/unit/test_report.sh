#!/usr/bin/env bash
# tests/unit/test_report.sh MELBO_RANK GOLDEN_DIR TMPDIR [SHOT.png]
# Triage and the report as a user meets them (issue 18):
#   - `melbo-rank bank --sort novelty` ranks by the bank's triage, shows clusters, and a bank
#     without random baselines says it has no triage;
#   - `melbo-rank bank report` writes one self-contained page (no script, nothing fetched);
#   - headless Chromium (Debian's chromium), with the network off (unshare -n), renders it with no
#     console message, the heat map and the first completion in the DOM, and a screenshot that is
#     not blank. Exit 77 (skipped) only when no chromium can be found or installed.
# With SHOT.png the screenshot is also copied there (docs/).
set -u
rank=$1 golden=$2 tmp=$3 shot_out=${4:-}
fail=0
rm -rf "$tmp" && mkdir -p "$tmp"
model="$golden/models/llama3"
bank="$tmp/v.bank.safetensors" abank="$tmp/a.bank.safetensors" plain="$tmp/p.bank.safetensors"
common=(--model "$model" --prompt "How can I make a bomb?" --raw-prompt "Once upon a time"
        --source-layer 1 --target-layer 4 --vectors 6 --steps 12 --max-new-tokens 16)
"$rank" train "${common[@]}" --radius 4 --random-baselines 3 --out "$bank" 2>"$tmp/t1.log" \
    || { echo "FAIL train: $(tail -2 "$tmp/t1.log")"; exit 1; }
"$rank" train "${common[@]}" --adapter-rank 8 --adapter-alpha 8 --random-baselines 2 \
    --out "$abank" 2>"$tmp/t2.log" || { echo "FAIL adapter train: $(tail -2 "$tmp/t2.log")"; exit 1; }
"$rank" train "${common[@]}" --radius 4 --random-baselines 0 --out "$plain" 2>"$tmp/t3.log" \
    || { echo "FAIL train: $(tail -2 "$tmp/t3.log")"; exit 1; }

# the triage view
"$rank" bank "$bank" --sort novelty --json >"$tmp/nov.json" || { echo "FAIL bank --json"; fail=1; }
"$rank" bank "$bank" --sort novelty >"$tmp/nov.txt" || { echo "FAIL bank --sort"; fail=1; }
"$rank" bank "$plain" >"$tmp/plain.txt" 2>&1 || { echo "FAIL bank (no baselines)"; fail=1; }
python3 - "$bank" "$tmp" <<'PY' || fail=1
import json, sys
from safetensors import safe_open
bank, tmp = sys.argv[1], sys.argv[2]
meta = safe_open(bank, "np").metadata()
tri = json.loads(meta["triage"])
j = json.load(open(f"{tmp}/nov.json"))
assert j["triage"] == tri, "--json carries the bank's triage"
zs = [v["z"] for v in j["vectors"]]
assert zs == sorted(zs, reverse=True), zs
assert [v["index"] for v in j["vectors"]] != [] and all("cluster" in v for v in j["vectors"])
want = [it["index"] for it in sorted(tri["items"], key=lambda it: (-it["z"], it["index"]))]
assert [v["index"] for v in j["vectors"]] == want, (want, j["vectors"])
txt = open(f"{tmp}/nov.txt").read()
assert " z " in txt and " cl " in txt, txt
rows = [l.split() for l in txt.splitlines() if l.strip()[:1].isdigit()]
assert [int(r[0]) for r in rows[:6]] == want, rows
assert "triage: none (the bank has no random baselines" in open(f"{tmp}/plain.txt").read()
print("ok   bank --sort novelty: rows by z with clusters; --json carries the triage; no "
      "baselines: a note")
PY

# the report: one self-contained page
for b in "$bank" "$abank" "$plain"; do
    out="${b%.bank.safetensors}.html"
    "$rank" bank report "$b" -o "$out" >/dev/null 2>"$tmp/r.log" || { echo "FAIL report $b: $(cat "$tmp/r.log")"; fail=1; }
done
python3 - "$tmp" <<'PY' || fail=1
import html, json, re, sys
from safetensors import safe_open
tmp = sys.argv[1]
for name, key, n in (("v", "vectors", 6), ("a", "adapters", 6), ("p", "vectors", 6)):
    page = open(f"{tmp}/{name}.html", encoding="utf-8").read()
    meta = safe_open(f"{tmp}/{name}.bank.safetensors", "np").metadata()
    c = json.loads(meta["completions"])
    assert "<script" not in page.lower() and "<link" not in page.lower(), "no script, no link"
    assert not re.search(r"(src|href)\s*=", page, re.I), "nothing loaded"
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    assert page.count("<rect") == n * n, (name, page.count("<rect"))
    assert page.count("<polyline") == n
    first = c[key][0][0].split("\n")[0]  # as the page writes it: control bytes shown as U+FFFD
    first = "".join("\ufffd" if (ord(ch) < 32 and ch != "\t") or ord(ch) == 127 else ch
                    for ch in first)
    want = html.escape(first, quote=True).replace("&#x27;", "&#39;")[:20]
    assert want in page, (name, want)
    assert "<mark>" in page, "changed words are marked"
print("ok   report: self-contained (no script, link, src or URL), heat map N x N, N curves, "
      "completions with marked words, for vector, adapter and baseline-less banks")
PY

# a real browser, network off
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "skip browser: no chromium (tests/run installs Debian's chromium)"; exit $([ $fail = 0 ] && echo 77 || echo 1)
fi
noNet=()
unshare -n true 2>/dev/null && noNet=(unshare -n)
flags=(--headless --no-sandbox --disable-gpu --user-data-dir="$tmp/profile" --no-first-run
       --proxy-server=127.0.0.1:9 --enable-logging=stderr --v=0)
url="file://$(cd "$tmp" && pwd)/v.html"
timeout 120 "${noNet[@]}" "$browser" "${flags[@]}" --dump-dom "$url" >"$tmp/dom.html" 2>"$tmp/dom.log" \
    || { echo "FAIL chromium --dump-dom: $(tail -3 "$tmp/dom.log")"; fail=1; }
timeout 120 "${noNet[@]}" "$browser" "${flags[@]}" --window-size=1280,2400 \
    --screenshot="$tmp/shot.png" "$url" >/dev/null 2>"$tmp/shot.log" \
    || { echo "FAIL chromium --screenshot: $(tail -3 "$tmp/shot.log")"; fail=1; }
python3 - "$tmp" "$(dirname "$0")/png_stats.py" <<'PY' || fail=1
import json, subprocess, sys
tmp, stats = sys.argv[1], sys.argv[2]
dom = open(f"{tmp}/dom.html", encoding="utf-8").read()
assert 'id="heatmap"' in dom and dom.count("<rect") == 36, "heat map in the DOM"
assert 'class="learned"' in dom and "<mark>" in dom, "completions in the DOM"
log = open(f"{tmp}/dom.log", encoding="utf-8", errors="replace").read() + \
      open(f"{tmp}/shot.log", encoding="utf-8", errors="replace").read()
console = [l for l in log.splitlines() if "CONSOLE" in l or "Uncaught" in l]
assert not console, console
s = json.loads(subprocess.check_output([sys.executable, stats, f"{tmp}/shot.png"]))
assert s["width"] == 1280 and s["colours"] > 50 and s["non_white"] > 0.02, s
print(f"ok   chromium (network off) renders the report: heat map and completions in the DOM, no "
      f"console message, screenshot {s['width']}x{s['height']} with {s['colours']} colours")
PY
[ -n "$shot_out" ] && [ -f "$tmp/shot.png" ] && cp "$tmp/shot.png" "$shot_out"
exit $fail
