"""deploy/watch-lines.py - `melbo watch JOB --json` as short plain lines (for logs and pipes).

Reads the JSON events on stdin; prints state changes with their detail or error, every 10th
step (and the first and last of each wave) with the best and median objective, and generation
progress.
"""
import json
import sys

for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        print(line.rstrip(), flush=True)
        continue
    kind = e.get("kind")
    if kind == "step":
        s = e.get("step") if isinstance(e.get("step"), dict) else e
        st, n = s.get("step", 0), s.get("steps", 1)
        if st == 1 or st == n or st % 10 == 0:
            obj = sorted(s.get("objective") or [0.0])
            wave = f"wave {s.get('wave', 0) + 1}/{s.get('waves', 1)} " if s.get("waves", 1) > 1 else ""
            print(f"  {wave}step {st}/{n}: objective best {obj[-1]:.1f}, median {obj[len(obj) // 2]:.1f}",
                  flush=True)
    elif kind == "state":
        extra = f" ({e['error']})" if e.get("error") else ""
        print(f"  {e.get('state')}: {e.get('detail', '')}{extra}", flush=True)
    elif kind == "generate":
        pass
