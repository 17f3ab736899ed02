"""The `graded` toy preset: problems with a continuum of difficulty, from trivially easy to beyond the tiny
model, so that after the Spectrum stage many problems sit strictly between pass rates 0 and 1 and RL has a
signal to learn from (the `classic` preset's 1-2 digit single operations are all-or-nothing).

Each subdomain has several operations and several difficulty knobs; `level` (1-6) turns them together. The
scale is set by what the tiny model (4 layers, width 128) learns in the demo's SFT: one-digit operations (levels
1-2) it learns, two-digit ones (3-4) partly, three-digit ones (5-6) hardly at all.
- add: sums of 2-3 terms (chains, and a parenthesised group); knobs: digits, terms, carries, nesting.
- sub: differences, `a + b - c`, `a - (b - c)`, +/- chains; knobs: digits, terms, borrows, nesting.
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


def _no_carry(rng: random.Random, da: int, db: int, sub: bool = False) -> tuple[int, int]:
    """a (da digits) and b (db <= da digits) whose column sums stay below 10 (sub: a's digit >= b's: no borrow)."""
    a = _num(rng, da)
    digits = [int(x) for x in str(a)[::-1]]
    b = sum(rng.randint(0, d if sub else 9 - d) * 10**i for i, d in enumerate(digits[:db]))
    return a, max(b, 1) if not sub or b else b


def _chain(rng: random.Random, digits: int, terms: int, ops: str) -> Expr:
    e: Expr = _num(rng, digits)
    for _ in range(terms - 1):
        op = rng.choice(ops)
        if op == "-" and _value(e) < 10 ** (digits - 1):  # keep every running value non-negative
            op = "+"
        e = (op, e, _num(rng, digits) if op == "+" else rng.randint(1, _value(e)))
    return e


def _add(rng: random.Random, level: int) -> Expr:
    """1: two digits; 2: three digits, a chain or a + (b + c); 3: a two-digit number plus a digit; 4: two
    two-digit numbers (half without a carry); 5: three two-digit terms or a + (b + c); 6: two three-digit."""
    d = _num
    if level == 1:
        return ("+", d(rng, 1), d(rng, 1))
    if level == 2:
        return ("+", ("+", d(rng, 1), d(rng, 1)), d(rng, 1)) if rng.random() < 0.7 else \
            ("+", d(rng, 1), ("+", d(rng, 1), d(rng, 1)))
    if level == 3:
        return ("+", d(rng, 2), d(rng, 1))
    if level == 4:
        return ("+", *_no_carry(rng, 2, 2)) if rng.random() < 0.5 else ("+", d(rng, 2), d(rng, 2))
    if level == 5:
        return _chain(rng, 2, 3, "+") if rng.random() < 0.5 else ("+", d(rng, 2), ("+", d(rng, 2), d(rng, 2)))
    return ("+", d(rng, 3), d(rng, 3))


def _sub(rng: random.Random, level: int) -> Expr:
    """1: a digit minus a digit; 2: a + b - c on digits; 3: a two-digit number minus a digit; 4: two-digit
    minus two-digit (half without a borrow); 5: a + b - c on two digits or a - (b - c); 6: three-digit chains."""
    d = _num
    if level == 1:
        a, b = sorted((d(rng, 1), d(rng, 1)), reverse=True)
        return ("-", a, b)
    if level == 2:
        a, b = d(rng, 1), d(rng, 1)
        return ("-", ("+", a, b), rng.randint(1, min(9, a + b)))
    if level == 3:
        return ("-", d(rng, 2), d(rng, 1))
    if level == 4:
        if rng.random() < 0.5:
            return ("-", *_no_carry(rng, 2, 2, sub=True))
        a, b = sorted((d(rng, 2), d(rng, 2)), reverse=True)
        return ("-", a, b)
    if level == 5:
        if rng.random() < 0.5:  # nesting: the group smaller than a
            a = d(rng, 2)
            b = rng.randint(1, a)
            return ("-", a, ("-", b, rng.randint(0, b)))
        a, b = d(rng, 2), d(rng, 2)
        return ("-", ("+", a, b), rng.randint(1, a + b))
    return _chain(rng, 3, 3, "+--")


def _mul(rng: random.Random, level: int) -> Expr:
    """1: a digit times a digit; 2: a * b + c or a * b * c on digits; 3: tens times a digit, or two digits
    times 2 or 3; 4: two digits times a digit; 5: a * b - c with a two-digit a; 6: two digits times two."""
    d = _num
    if level == 1:
        return ("*", d(rng, 1), d(rng, 1))
    if level == 2:
        prod: Expr = ("*", d(rng, 1), d(rng, 1))
        return ("+", prod, d(rng, 1)) if rng.random() < 0.6 else ("*", prod, rng.randint(2, 3))
    if level == 3:
        return ("*", d(rng, 1) * 10, d(rng, 1)) if rng.random() < 0.3 else ("*", d(rng, 2), rng.randint(2, 3))
    if level == 4:
        return ("*", d(rng, 2), rng.randint(2, 9))
    if level == 5:
        prod = ("*", d(rng, 2), rng.randint(2, 9))
        return ("-", prod, rng.randint(1, _value(prod)))
    return ("*", d(rng, 2), d(rng, 2))


def _mod(rng: random.Random, level: int) -> Expr:
    """`a mod b` or `a // b`. 1: a one-digit a; 2: a two-digit a, one-digit b; 3: (a + b) mod c on digits;
    4: a three-digit a, one-digit b; 5: a three-digit a, two-digit b; 6: (a + b) mod c on two and three digits."""
    op = rng.choice(("mod", "//"))
    if level == 1:
        return (op, _num(rng, 1), rng.randint(2, 9))
    if level == 2:
        return (op, _num(rng, 2), rng.randint(2, 9))
    if level == 3:
        return ("mod", ("+", _num(rng, 1), _num(rng, 1)), rng.randint(2, 9))
    if level == 4:
        return (op, _num(rng, 3), rng.randint(2, 9))
    if level == 5:
        return (op, _num(rng, 3), rng.randint(11, 99))
    return ("mod", ("+", _num(rng, 3), _num(rng, 2)), rng.randint(11, 99))


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
