#!/usr/bin/env python3
"""tests/layout/check_layout.py REPO BUILD - the layering the README's Layout section promises,
checked on the tree and on the binaries:

  1. which folder may include which (LAYERS below): a newcomer can trust the folder names;
  2. no include cycle between the project's files (a header graph that is a DAG);
  3. the CUDA build switch (MELBO_HAVE_CUDA) is read in one C file only, where the backend is
     chosen (rank/backend.c);
  4. melbo-coord and melbo start on a login node without GPU, BLAS, MPI or tokenizer libraries:
     `ldd` names none of them.

Prints one line per check and exits 1 if any fails."""
import os
import re
import subprocess
import sys

repo, build = sys.argv[1], sys.argv[2]

# Folder -> the folders (or single files) its C sources may include from the project, besides
# itself. Longest prefix wins. "*" for anything (commands, tests, benchmarks).
LAYERS = {
    "common": [],
    "options": ["common"],
    "proto": ["common"],
    "nccl": ["common"],
    "cli": ["common", "options", "proto"],
    "coord": ["common", "options", "proto", "rank/model/config.h", "rank/model/safetensors.h"],
    "rank/model": ["common"],
    "rank/tokenizer": ["common", "options", "rank/model"],
    "rank/method": ["common", "options", "rank/model", "rank/tokenizer"],
    "rank/backend.h": ["common", "nccl", "options", "rank/model", "rank/method"],
    "rank/cpu": ["common", "nccl", "options", "rank/model", "rank/method", "rank/backend.h"],
    "rank/cuda": ["common", "rank/cpu"],
    "rank/gpu": ["common", "nccl", "options", "rank/model", "rank/method", "rank/cpu", "rank/cuda",
                 "rank/backend.h"],
    "rank/generate": ["common", "options", "nccl", "rank/model", "rank/tokenizer", "rank/method",
                      "rank/backend.h"],
    # calibration (--radius auto) still runs the host model's CPU span, whatever the backend
    "rank/train/calibrate.c": ["common", "options", "nccl", "rank/model", "rank/tokenizer",
                               "rank/method", "rank/train", "rank/cpu/span.h"],
    "rank/train": ["common", "options", "nccl", "rank/model", "rank/tokenizer", "rank/method",
                   "rank/generate", "rank/backend.h"],
    "rank/link": ["common", "proto", "rank/train/observer.h"],
    # reading and exporting banks: no backend, tokenizer or BLAS, so any process can read banks
    "rank/bank": ["common", "options", "rank/model"],
    # a bank as an HTML page: the bank reader, and the adapters' arithmetic for their cosines
    "rank/report": ["common", "rank/model", "rank/method", "rank/bank"],
    "rank/backend.c": ["*"],
    "rank": ["*"],
    "tests": ["*"],
    "bench": ["*"],
}

failures = 0


def report(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    failures += not ok


def sources():
    """The project's C and CUDA files: git's list, or a walk that skips build trees."""
    git = subprocess.run(["git", "-C", repo, "ls-files", "--cached", "--others",
                          "--exclude-standard", "*.c", "*.h", "*.cu", "*.cuh"],
                         capture_output=True, text=True)
    if git.returncode == 0:
        out = git.stdout.split()
    else:
        out = []
        for top, dirs, names in os.walk(repo):
            dirs[:] = [d for d in dirs if not d.startswith((".", "build"))]
            out += [os.path.relpath(os.path.join(top, n), repo) for n in names
                    if n.endswith((".c", ".h", ".cu", ".cuh"))]
    return sorted(f for f in out if os.path.exists(os.path.join(repo, f)))


def layer_of(path):
    best = None
    for key in LAYERS:
        if path == key or path.startswith(key + "/"):
            if best is None or len(key) > len(best):
                best = key
    return best


def allowed(src, dst):
    if os.path.dirname(src) == os.path.dirname(dst):
        return True
    rules = LAYERS.get(layer_of(src))
    if rules is None:
        return False
    if "*" in rules or layer_of(dst) == layer_of(src):
        return True
    return any(dst == r or dst.startswith(r + "/") for r in rules)


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
files = sources()
known = set(files)
graph = {}
bad_edges = []
for f in files:
    text = open(os.path.join(repo, f), errors="replace").read()
    deps = []
    for inc in INCLUDE.findall(text):
        if inc not in known:  # generated (proto/melbo.pb-c.h) or relative includes
            continue
        deps.append(inc)
        if not allowed(f, inc):
            bad_edges.append(f"{f} -> {inc}")
    graph[f] = deps
report(not bad_edges, "folders include only the layers below them"
       + ("" if not bad_edges else ":\n       " + "\n       ".join(bad_edges)))

# 2. cycles (iterative DFS over headers and sources)
state, cycles = {}, []
for start in files:
    if state.get(start):
        continue
    stack = [(start, iter(graph.get(start, [])))]
    path = [start]
    state[start] = 1
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            state[node] = 2
            stack.pop()
            path.pop()
        elif state.get(nxt) == 1:
            cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
        elif not state.get(nxt):
            state[nxt] = 1
            stack.append((nxt, iter(graph.get(nxt, []))))
            path.append(nxt)
report(not cycles, "no include cycles" + ("" if not cycles else ": " + "; ".join(cycles[:5])))

# 3. the CUDA switch in one place
switch = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif)\b.*\bMELBO_HAVE_CUDA\b", re.M)
where = [f for f in files if switch.search(open(os.path.join(repo, f), errors="replace").read())]
report(where == ["rank/backend.c"], f"MELBO_HAVE_CUDA is tested only in rank/backend.c: {where}")

# 4. lean coordinator and client
heavy = ["libcudart", "libcuda.", "libcublas", "libnccl", "libopenblas", "libblas", "libmpi",
         "libgomp", "libpcre2", "libutf8proc"]
for binary in ("coord/melbo-coord", "cli/melbo"):
    path = os.path.join(build, binary)
    if not os.path.exists(path):
        report(False, f"{binary} was not built")
        continue
    libs = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    found = sorted({h for h in heavy if h in libs})
    names = " ".join(sorted(re.findall(r"^\s*(\S+\.so[.\d]*)", libs, re.M)))
    report(not found, f"ldd {binary} names none of {', '.join(heavy)}"
           + (f" (found {found})" if found else f": {names}"))

sys.exit(1 if failures else 0)
