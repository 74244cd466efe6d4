#!/usr/bin/env python3
"""tests/layout/code_metrics.py [REPO] - the shape of the code, for closing notes of restructurings:
C/CUDA files over 500 lines, functions over 100 lines (a top-level definition to its closing brace),
and how often rank/ tests MELBO_HAVE_CUDA. Prints the counts and the offenders; always exits 0."""
import os, re, subprocess, sys
root = sys.argv[1] if len(sys.argv) > 1 else '.'
files = subprocess.run(['git', '-C', root, 'ls-files', '*.c', '*.h', '*.cu', '*.cuh'], capture_output=True, text=True).stdout.split()
big = []; longf = []; ifdef = 0
for f in files:
    lines = open(os.path.join(root, f), errors='replace').read().split('\n')
    if len(lines) - 1 > 500: big.append((len(lines) - 1, f))
    start = None; sig = None
    for i, l in enumerate(lines):
        if start is None:
            if re.match(r'^[A-Za-z_]', l) and not l.startswith('#'):
                sig = i
            if sig is not None and l.rstrip().endswith('{') and '(' in ''.join(lines[sig:i+1]) and '=' not in ''.join(lines[sig:i+1]) and not re.match(r'^(typedef |)(struct|enum|union)\s+\w+\s*\{', lines[sig]):
                start = sig
        elif l.startswith('}'):
            n = i - start + 1
            if n > 100: longf.append((n, f, lines[start][:80]))
            start = None; sig = None
    if f.startswith('rank/'):
        ifdef += sum(1 for l in lines if re.match(r'\s*#\s*if(def)?\s.*MELBO_HAVE_CUDA', l))
print('files over 500 lines: %d' % len(big))
for n, f in sorted(big, reverse=True): print('  %5d %s' % (n, f))
print('functions over 100 lines: %d' % len(longf))
for n, f, s in sorted(longf, reverse=True): print('  %5d %s: %s' % (n, f, s))
print('#if(def) MELBO_HAVE_CUDA in rank/: %d' % ifdef)
