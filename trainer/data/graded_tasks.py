"""The `graded` toy preset: problems with a continuum of difficulty, from trivially easy to beyond the tiny
model, so that after the Spectrum stage many problems sit strictly between pass rates 0 and 1 and RL has a
signal to learn from (the `classic` preset's 1-2 digit single operations are all-or-nothing).

Each subdomain has several operations and several difficulty knobs; `level` (1-6) turns them together:
- add: sums of 2-4 terms (chains, and a parenthesised group at the higher levels); knobs: digits, terms,
  carries (they follow from the digits), nesting.
- sub: differences and mixed +/- chains, `a - (b - c)`; knobs: digits, terms, borrows, nesting.
- mul: `a * b`, `a * b + c`, `a * b - c`, `a * b * c`; knobs: digits of each factor, steps.
- mod: `a mod b`, `a // b`, `(a + b) mod c`; knobs: digits of dividend and divisor, steps.
- code: five templates (one operation; a chain of operations; a conditional; a conditional with a
  chained branch; the larger or smaller of two expressions); knobs: constants' digits, chain length, branches.

Every math problem is an expression tree; its traces are the stepwise evaluation (innermost first), the same
steps with commutative operands swapped, and the one-line answer, so Pass@K can exceed Pass@1 after SFT. Steps
are bounded so that every trace fits the demo's 64-token responses (tests/test_toy_tasks.py measures it).
"""

from __future__ import annotations

import hashlib
import random

SOURCE = "ssp-rl graded toy tasks (generated)"
LEVELS = (1, 2, 3, 4, 5, 6)

Expr = int | tuple[str, "Expr", "Expr"]
_PREC = {"+": 1, "-": 1, "*": 2, "mod": 2, "//": 2}


def _value(e: Expr) -> int:
    if isinstance(e, int):
        return e
    op, a, b = e
    x, y = _value(a), _value(b)
    return {"+": x + y, "-": x - y, "*": x * y, "mod": x % y if y else 0, "//": x // y if y else 0}[op]


def _render(e: Expr, top: bool = True) -> str:
    """Infix text; a left operand of equal precedence needs no brackets (left-associative), a right one does."""
    if isinstance(e, int):
        return str(e)
    op, a, b = e
    left = _render(a, isinstance(a, int) or _PREC[a[0]] >= _PREC[op] and op not in ("mod", "//"))
    right = _render(b, isinstance(b, int))
    text = f"{left} {op} {right}"
    return text if top else f"({text})"


def _steps(e: Expr, swap: bool) -> list[str]:
    """The evaluation, innermost first; `swap` writes commutative operands the other way round (b + a)."""
    if isinstance(e, int):
        return []
    op, a, b = e
    out = _steps(a, swap) + _steps(b, swap)
    x, y = _value(a), _value(b)
    if swap and op in ("+", "*"):
        x, y = y, x
    return out + [f"{x} {op} {y} = {_value(e)}"]


def _num(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 1, 10**digits - 1)


# level -> (digits, terms) for the +/- subdomains; mul's factor digits; mod's dividend/divisor digits
_ADD = {1: (1, 2), 2: (2, 2), 3: (2, 3), 4: (3, 2), 5: (3, 3), 6: (4, 2)}
_MUL = {1: (1, 1), 2: (2, 1), 3: (2, 1), 4: (3, 1), 5: (2, 2), 6: (3, 2)}
_MOD = {1: (2, 1), 2: (2, 1), 3: (3, 1), 4: (3, 2), 5: (4, 2), 6: (4, 2)}


def _chain(rng: random.Random, digits: int, terms: int, ops: str) -> Expr:
    e: Expr = _num(rng, digits)
    for _ in range(terms - 1):
        op = rng.choice(ops)
        if op == "-" and _value(e) < 10 ** (digits - 1):  # keep every running value non-negative
            op = "+"
        e = (op, e, _num(rng, digits) if op == "+" else rng.randint(1, _value(e)))
    return e


def _add(rng: random.Random, level: int) -> Expr:
    digits, terms = _ADD[level]
    if level >= 4 and rng.random() < 0.5:  # nesting: a + (b + c)
        return ("+", _chain(rng, digits, terms - 1, "+"), ("+", _num(rng, digits), _num(rng, digits)))
    return _chain(rng, digits, terms, "+")


def _sub(rng: random.Random, level: int) -> Expr:
    digits, terms = _ADD[level]
    if level >= 3 and rng.random() < 0.4:  # nesting: a - (b - c), the group smaller than a
        a = _num(rng, digits + 1 if digits < 4 else digits)
        b = rng.randint(1, a)
        return ("-", a, ("-", b, rng.randint(0, b)))
    return _chain(rng, digits, terms, "-" if level <= 2 else "+--")


def _mul(rng: random.Random, level: int) -> Expr:
    da, db = _MUL[level]
    prod: Expr = ("*", _num(rng, da), _num(rng, db))
    kind = rng.choice(["ab", "ab+c", "ab-c", "abc"] if level >= 3 else ["ab"])
    if kind == "ab+c":
        return ("+", prod, _num(rng, da))
    if kind == "ab-c":
        return ("-", prod, rng.randint(0, _value(prod)))
    if kind == "abc":
        return ("*", prod, rng.randint(2, 9))
    return prod


def _mod(rng: random.Random, level: int) -> Expr:
    da, db = _MOD[level]
    b = max(2, _num(rng, db))
    kind = rng.choice(["mod", "//", "sum-mod"] if level >= 2 else ["mod", "//"])
    if kind == "sum-mod" or level == 6:
        return ("mod", ("+", _num(rng, da), _num(rng, da)), b)
    return (kind, _num(rng, da), b)


_MATH = {"add": _add, "sub": _sub, "mul": _mul, "mod": _mod}


def _trace(steps: list[str], answer: int) -> str:
    return f"<think>{', '.join(steps)}</think>\n\\boxed{{{answer}}}"


def math_problem(sub: str, level: int, rng: random.Random) -> dict:
    e = _MATH[sub](rng, level)
    text, answer = _render(e), _value(e)
    sols = [_trace(_steps(e, False), answer), _trace(_steps(e, True), answer), _trace([f"{text} = {answer}"], answer)]
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    return {"id": f"toy-{sub}-L{level}-{digest}", "problem": f"What is {text}?", "answer": str(answer),
            "solutions": list(dict.fromkeys(sols)), "source": SOURCE, "subdomain": sub, "level": level}


# --- code: templates of growing difficulty -------------------------------------------------------------------
_WORDS = {"+": "plus", "-": "minus", "*": "times"}


def _ops(rng: random.Random, n: int, digits: int) -> list[tuple[str, int]]:
    return [(op, rng.randint(2, 9) if op == "*" else _num(rng, digits)) for op in (rng.choice("+-*") for _ in range(n))]


def _apply(var: str, ops: list[tuple[str, int]]) -> str:
    e = var
    for i, (op, k) in enumerate(ops):
        e = f"{e} {op} {k}" if i == 0 or _PREC[op] == 1 else f"({e}) {op} {k}"
    return e


def _say(ops: list[tuple[str, int]]) -> str:
    return ", then ".join(f"{_WORDS[op]} {k}" for op, k in ops)


def code_problem(level: int, rng: random.Random) -> dict:
    """level 1-2: one or two chained operations; 3: a conditional; 4: three operations; 5: a conditional with
    a chained branch; 6: the larger of two chained expressions."""
    digits = 1 if level <= 3 else 2
    if level in (1, 2, 4):
        ops = _ops(rng, {1: 1, 2: 2, 4: 3}[level], digits)
        prompt = f"Write a Python function f(x) that returns x {_say(ops)}."
        expr = _apply("x", ops)
        bodies = [f"    return {expr}", "    y = x\n" + "".join(f"    y = y {op} {k}\n" for op, k in ops) + "    return y"]
        think = f"{len(ops)} steps"
    elif level in (3, 5):
        n = 1 if level == 3 else 2
        t, yes, no = rng.randint(-5, 5), _ops(rng, n, digits), _ops(rng, 1, digits)
        prompt = (f"Write a Python function f(x) that returns x {_say(yes)} if x is more than {t}, "
                  f"else x {_say(no)}.")
        ey, en = _apply("x", yes), _apply("x", no)
        expr = f"{ey} if x > {t} else {en}"
        bodies = [f"    return {expr}", f"    if x > {t}:\n        return {ey}\n    return {en}"]
        think = f"x > {t}"
    else:
        a, b = _ops(rng, 2, digits), _ops(rng, 2, digits)
        prompt = f"Write a Python function f(x) that returns the larger of x {_say(a)} and x {_say(b)}."
        ea, eb = _apply("x", a), _apply("x", b)
        expr = f"max({ea}, {eb})"
        bodies = [f"    return {expr}", f"    return max({eb}, {ea})"]
        think = "max"
    fn = eval(f"lambda x: {expr}")  # noqa: S307 - our own generated expression
    xs = {rng.randint(-20, 20) for _ in range(3)}
    if level in (3, 5):  # both branches tested
        xs |= {t - rng.randint(0, 5), t + rng.randint(1, 5)}
    sources = [f"def f(x):\n{body}" for body in bodies]
    digest = hashlib.sha1(prompt.encode()).hexdigest()[:10]
    return {"id": f"toy-code-L{level}-{digest}", "prompt": prompt,
            "tests": [f"assert f({x}) == {fn(x)}" for x in sorted(xs)], "test_imports": [], "entry_point": "f",
            "reference_solution": sources[0],
            "solutions": [f"<think>{think}</think>\n```python\n{s}\n```" for s in sources],
            "source": SOURCE, "subdomain": "code", "level": level}


def _trivial(rec: dict) -> bool:
    """A code problem `return x` would pass (x minus 5, then plus 5)."""
    return all(t.split(" == ")[0].removeprefix("assert f(").rstrip(")") == t.split(" == ")[1] for t in rec["tests"])


def problem(sub: str, level: int, rng: random.Random) -> dict:
    if level not in LEVELS:
        raise ValueError(f"data.toy.levels: the graded preset has levels {list(LEVELS)}, got {level}")
    if sub != "code":
        return math_problem(sub, level, rng)
    while _trivial(rec := code_problem(level, rng)):
        pass
    return rec
