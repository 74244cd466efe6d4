#!/usr/bin/env python3
"""tests/unit/png_stats.py PNG: width, height and how many distinct colours a PNG holds.

A small reader for the screenshots headless Chromium writes (8-bit RGB or RGBA, not interlaced),
with zlib and numpy only: tests/run installs nothing else. Prints JSON.
"""
import json
import struct
import sys
import zlib

import numpy as np


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG")
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                raise SystemExit(f"{path}: depth {depth}, colour type {ctype}, interlace "
                                 f"{interlace}: only 8-bit RGB/RGBA, not interlaced")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    img = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        f, line = raw[y * (stride + 1)], np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1)
        cur = line.astype(np.int32)
        if f == 1:  # Sub: a running sum per channel
            cur = (np.cumsum(cur.reshape(w, bpp), axis=0) & 255).reshape(stride)
        elif f == 2:  # Up
            cur = (cur + prev) & 255
        elif f in (3, 4):  # Average, Paeth
            cur = cur.copy()
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                if f == 3:
                    cur[x] = (cur[x] + ((a + b) >> 1)) & 255
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pr = a if pa <= pb and pa <= pc else b if pb <= pc else c
                    cur[x] = (cur[x] + pr) & 255
        img[y] = cur
        prev = cur
    return img.reshape(h, w, bpp)[:, :, :3]


if __name__ == "__main__":
    img = read_png(sys.argv[1])
    colours = np.unique(img.reshape(-1, 3), axis=0)
    print(json.dumps({"width": img.shape[1], "height": img.shape[0], "colours": len(colours),
                      "non_white": float((img.reshape(-1, 3).min(axis=1) < 250).mean())}))
