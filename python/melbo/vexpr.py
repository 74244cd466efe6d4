"""melbo/vexpr.py - vector expressions, exactly as `melbo-rank gen --vector` evaluates them
(rank/bank/vexpr.c): the same grammar, the same arithmetic and the same errors.

    expr  := term (('+' | '-') term)*
    term  := [number '*'] atom | '-' term
    atom  := INDEX            a learned vector (0-based row of the bank's vectors)
           | 'random' | 'rK'  the bank's random baseline 0, or K
           | 'none'           the zero vector (unsteered)

Examples: "9", "-10*22", "9-22", "0.5*3+0.5*7", "random", "none". Spaces are ignored. A number
is what C's strtod reads (decimal, hex, inf, nan); a bare integer is an index. The sum is kept
in float64 and rounded to float32 at the end, as melbo does.
"""

import re

import numpy as np

_LONG_MAX = 2 ** 63 - 1
# What C's strtod accepts after leading white space (the C locale).
_STRTOD = re.compile(r"""[+-]?(?:
    0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?
  | (?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?
  | [iI][nN][fF](?:[iI][nN][iI][tT][yY])?
  | [nN][aA][nN](?:\([0-9A-Za-z_]*\))?
)""", re.X)
_DIGITS = re.compile(r"[0-9]+")
_SPACE = " \t\n\v\f\r"


class VectorExpressionError(ValueError):
    """A vector expression melbo refuses; the message is melbo-rank gen's, with 'vector
    expression' where melbo says '--vector'."""


def _strtod(s):
    m = _STRTOD.match(s)
    if not m:
        return None, 0
    t = m.group(0)
    body = t.lstrip("+-")
    if body[:2] in ("0x", "0X"):  # (the pattern wants hex digits: "0x" alone reads as "0")
        v = float.fromhex(body)
    elif body[:1] in "nN":
        v = float("nan")
    else:
        v = float(body)
    return (-v if t.startswith("-") else v), len(t)


class _Parser:
    def __init__(self, expr, vectors, randoms):
        self.s, self.p = expr, 0
        self.vec, self.rnd = vectors, randoms
        self.acc = np.zeros(vectors.shape[1] if vectors is not None else randoms.shape[1],
                            dtype=np.float64)

    def skip(self):
        while self.p < len(self.s) and self.s[self.p] in _SPACE:
            self.p += 1

    def char(self, k=0):
        return self.s[self.p + k] if self.p + k < len(self.s) else ""

    def fail(self, what):
        raise VectorExpressionError(
            "vector expression '%s': %s at position %d (examples: 9, -10*22, 9-22, 0.5*3+0.5*7, "
            "random, none)" % (self.s, what, self.p + 1))

    def atom(self, c):
        self.skip()
        rest = self.s[self.p:]
        n_vec = 0 if self.vec is None else self.vec.shape[0]
        n_rand = 0 if self.rnd is None else self.rnd.shape[0]
        if rest[:1].isdigit() and rest[:1].isascii():
            digits = _DIGITS.match(rest).group(0)
            k = min(int(digits), _LONG_MAX)
            if k >= n_vec:
                raise VectorExpressionError(
                    "vector expression '%s': vector %d is out of range (the bank has %d: 0..%d)"
                    % (self.s, k, n_vec, n_vec - 1))
            row = self.vec[k]
            self.p += len(digits)
        elif rest.startswith("random") or (rest[:1] == "r" and rest[1:2].isdigit()
                                           and rest[1:2].isascii()):
            if rest[1:2] == "a":
                k = 0
                self.p += 6
            else:
                digits = _DIGITS.match(rest, 1).group(0)
                k = min(int(digits), _LONG_MAX)
                self.p += 1 + len(digits)
            if k >= n_rand:
                raise VectorExpressionError(
                    "vector expression '%s': random baseline %d is out of range (the bank has %d)"
                    % (self.s, k, n_rand))
            row = self.rnd[k]
        elif rest.startswith("none"):
            self.p += 4
            return
        else:
            self.fail("expected a vector index, random, rK or none")
        self.acc += c * row.astype(np.float64)

    def term(self, sign):
        self.skip()
        if self.char() == "-":
            self.p += 1
            return self.term(-sign)
        # a number followed by '*' is a coefficient; a bare integer is an index
        c, n = _strtod(self.s[self.p:])
        if n:
            q = self.p + n
            while q < len(self.s) and self.s[q] in _SPACE:
                q += 1
            if q < len(self.s) and self.s[q] == "*":
                self.p = q + 1
                return self.atom(sign * c)
        return self.atom(sign)


def evaluate(expr, vectors, randoms=None):
    """(vector float32 [d], is_none) of expr over vectors [N, d] and randoms [K, d] (either may
    be None or have no rows). is_none: the expression is exactly "none" (melbo adds nothing)."""
    if not isinstance(expr, str):
        expr = str(expr)
    if vectors is None and randoms is None:
        raise ValueError("evaluate: no vectors")
    ps = _Parser(expr, vectors, randoms)
    q = expr.lstrip(_SPACE)
    if q == "":
        ps.fail("empty expression")
    ps.term(1.0)
    while True:
        ps.skip()
        if ps.p >= len(expr):
            break
        if ps.char() not in "+-":
            ps.fail("expected + or -")
        sign = -1.0 if ps.char() == "-" else 1.0
        ps.p += 1
        ps.term(sign)
    is_none = q.startswith("none") and q[4:].strip(_SPACE) == ""
    return ps.acc.astype(np.float32), is_none
