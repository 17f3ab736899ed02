"""The code harness (actors/verifier/harness.py, actors/verifier/code_grader.py): where the tests' names come from, call semantics
across the sandbox boundary, what the solution's replies may cost the verifier, and the output comparison.

Real sandboxed runs throughout. Each trick comes with a negative control (the same wrong program without the
trick scores 0) and a positive neighbour (a right program using the legitimate feature scores 1).
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from actors.verifier.cli import verify_summary
from actors.verifier.code_grader import InvalidTests, check_tests, grade_code, same_output
from actors.verifier.sandbox import Sandbox, SandboxLimits
from actors.verifier.types import Result
from trainer.data.problems import from_record

UIDS = [63170, 63171]
LIMIT_S = 2.0


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    return Sandbox(SandboxLimits(timeout_s=LIMIT_S), uids=UIDS)


def _grade(sb: Sandbox, code: str, tests: dict, lcb: bool = False):
    return grade_code(f"```python\n{code}\n```", tests, sb, lcb=lcb)


def _check(body: str, entry: str = "f", **extra) -> dict:
    """HumanEval-style tests: `body` is check(candidate)'s body."""
    lines = "".join(f"    {line}\n" for line in body.splitlines())
    return {"test_code": f"def check(candidate):\n{lines}", "entry_point": entry, **extra}


def _scores(sb: Sandbox, tests: dict, trick: str, control: str, neighbour: str, lcb: bool = False) -> None:
    r = _grade(sb, trick, tests, lcb)
    assert r.reward == 0.0, ("trick", r.reason, r.detail)
    c = _grade(sb, control, tests, lcb)
    assert c.reward == 0.0, ("control", c.reason, c.detail)
    ok = _grade(sb, neighbour, tests, lcb)
    assert ok.reward == 1.0, ("neighbour", ok.reason, ok.detail)


# ---------------------------------------------------------------- 1. the tests' names

SHIFT_PROMPT = '''def encode_shift(s: str):
    """returns encoded string by shifting every character by 5 in the alphabet."""
    return "".join([chr(((ord(ch) + 5 - ord("a")) % 26) + ord("a")) for ch in s])


def decode_shift(s: str):
    """takes as input string encoded with encode_shift function. Returns decoded string."""
'''
POLY_PROMPT = '''import math


def poly(xs: list, x: float):
    """Evaluates polynomial with coefficients xs at point x."""
    return sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)])


def find_zero(xs: list):
    """xs are coefficients of a polynomial with an odd degree: find x such that poly(x) = 0."""
'''
HELPER_PROBLEMS = {
    "encode_shift": (
        _check("for s in ['hello', 'abcxyz']:\n    assert candidate(encode_shift(s)) == s", "decode_shift",
               prompt=SHIFT_PROMPT),
        "def encode_shift(s):\n    return s\ndef decode_shift(s):\n    return s\n",
        "def decode_shift(s):\n    return s\n",
        "def decode_shift(s):\n    return ''.join(chr(((ord(c) - 5 - ord('a')) % 26) + ord('a')) for c in s)\n"),
    "poly": (
        _check("for xs in ([1, 2], [-6, 11, -6, 1]):\n    assert abs(poly(xs, candidate(xs))) < 1e-4", "find_zero",
               prompt=POLY_PROMPT),
        "def poly(xs, x):\n    return 0\ndef find_zero(xs):\n    return 7.0\n",
        "def find_zero(xs):\n    return 7.0\n",
        "def find_zero(xs):\n    lo, hi = -1e3, 1e3\n    f = lambda x: sum(c * x ** i for i, c in enumerate(xs))\n"
        "    for _ in range(200):\n        mid = (lo + hi) / 2\n        lo, hi = (mid, hi) if f(lo) * f(mid) > 0 else (lo, mid)\n"
        "    return lo\n"),
}


@pytest.mark.parametrize("problem", list(HELPER_PROBLEMS))
def test_problem_helpers_come_from_the_problem_not_the_solution(sb, problem):
    tests, trick, control, neighbour = HELPER_PROBLEMS[problem]
    _scores(sb, tests, trick, control, neighbour)
    bare = {k: v for k, v in tests.items() if k != "prompt"}  # the problem's code missing: the tests are broken
    r = _grade(sb, neighbour + trick, bare)
    assert (r.reward, r.reason) == (0.0, "test_error"), r.detail


def test_loader_carries_the_problems_own_code():
    tests = {"test_code": "def check(candidate):\n    assert candidate('a') == 'a'\n", "entry_point": "decode_shift"}
    p = from_record({"prompt": SHIFT_PROMPT, "tests": tests}, "row 1", "t")
    assert p.tests["prompt"] == SHIFT_PROMPT
    fenced = "Complete the code:\n```python\n" + SHIFT_PROMPT + "```\n"
    assert from_record({"prompt": fenced, "tests": tests}, "row 2", "t").tests["prompt"] == fenced
    nl = from_record({"prompt": "Write a function that decodes.", "tests": tests}, "row 3", "t")
    assert "prompt" not in nl.tests  # nothing of the problem's own to run


def test_a_name_nobody_defines_is_a_test_error(sb):
    right, wrong = "def f(x):\n    return 2 * x\n", "def f(x):\n    return 0.0\n"
    forgot = {"asserts": ["assert isclose(f(0.25), 0.5)"], "entry_point": "f"}
    for code in ("isclose = lambda *a, **k: True\n" + wrong, right):  # never filled from the solution
        r = _grade(sb, code, forgot)
        assert (r.reward, r.reason) == (0.0, "test_error"), r.detail
        assert "isclose" in r.detail["detail"]
    imported = {**forgot, "imports": ["from math import isclose"]}
    _scores(sb, imported, "isclose = lambda *a, **k: True\n" + wrong, wrong, right)
    legacy = {"asserts": ["assert f(2) == K * 2"]}  # no entry point: only names the tests call are the solution's
    r = _grade(sb, "K = 2\ndef f(x):\n    return 4\n", legacy)
    assert (r.reward, r.reason) == (0.0, "test_error"), r.detail
    assert _grade(sb, right, {"asserts": ["assert f(2) == 4", "assert math.floor(f(1.5)) == 3"]}).reward == 1.0


def test_bad_test_fields_are_refused():
    for bad in ({"asserts": ["assert f(1) == 2"], "prompt": 3}, {"asserts": ["assert f(1) == 2"], "imports": "import os"},
                {"asserts": [3]}, {"test_code": "def check(c):\n    pass\n", "entry_point": ["f"]}):
        with pytest.raises(InvalidTests):
            check_tests(bad)
    assert check_tests({"test_code": "def check(c):\n    pass\n", "entry_point": "f", "prompt": "x"}) == "test_code"


# ---------------------------------------------------------------- 2. call semantics

def test_in_place_mutation_of_arguments_is_seen(sb):
    tests = _check("a = [3, 1, 2]\nassert candidate(a) is None\nassert a == [1, 2, 3]\n"
                   "d, s = {'x': 1}, {1}\ncandidate(d)\ncandidate(s)\nassert d == {'x': 1, 'seen': 1} and s == {1, 'seen'}")
    body = "def f(a):\n    if type(a) is list:\n        {}\n    elif type(a) is dict:\n        a['seen'] = 1\n" \
           "    else:\n        a.add('seen')\n"
    _scores(sb, tests, body.format("a.reverse()"), body.format("sorted(a)"), body.format("a.sort()"))


def test_aliasing_and_returned_arguments_keep_identity(sb):
    tests = _check("a = [0]\nassert candidate(a, a) == 2 and a == [0, 1]\n"
                   "g = [[1], [2]]\nassert candidate.first(g) is g[0]\nassert candidate.first(g=g) is g[0]\n"
                   "x = candidate.pair()\nx[0].append(1)\nassert x[1] == [0, 1]", "h")
    h = "class h:\n    def __call__(self, x, y):\n        {}\n        return len(y)\n" \
        "    def first(self, g):\n        return g[0]\n    def pair(self):\n        r = [0]\n        return [r, r]\nh = h()\n"
    # a Remote's attributes are asked there: h.first is the sandbox's bound method, called remotely
    _scores(sb, tests, h.format("x = x + [1]"), h.format("x = list(x); x.append(1)"), h.format("x.append(1)"))


# ---------------------------------------------------------------- 3. values beyond plain data

def test_namedtuples_cross(sb):
    tests = {"asserts": ["assert f() == (1, 2)", "assert f().y == 2 and f()._fields == ('x', 'y')"],
             "entry_point": "f"}
    nt = "from collections import namedtuple\nP = namedtuple('P', 'x y')\ndef f():\n    return P(1, {})\n"
    _scores(sb, tests, nt.format("2.5"), nt.format(3), nt.format(2))


def test_library_exceptions_keep_their_class(sb):
    tests = _check("import json\ntry:\n    candidate('{')\nexcept json.JSONDecodeError:\n    pass\nelse:\n    assert False\n"
                   "try:\n    candidate('[')\nexcept ValueError:\n    pass\nelse:\n    assert False")
    trick = "def f(s):\n    raise RuntimeError('JSONDecodeError: Expecting value')\n"  # the name in a message is not the class
    _scores(sb, tests, trick, "def f(s):\n    return None\n", "import json\ndef f(s):\n    return json.loads(s)\n")
    own = "class Bad(ValueError):\n    pass\ndef f(s):\n    raise Bad(s)\n"  # a ValueError subclass is a ValueError
    assert _grade(sb, own, _check("try:\n    candidate('x')\nexcept ValueError as e:\n    assert str(e) == 'x'\n"
                                  "else:\n    assert False")).reward == 1.0


def test_lazy_results_and_arguments(sb):
    tests = _check("import itertools\nassert list(itertools.islice(candidate.count(), 5)) == [0, 1, 2, 3, 4]\n"
                   "assert list(candidate.squares(3000)) == [i * i for i in range(3000)]\n"
                   "assert candidate.total(x * x for x in range(4)) == 14\n"
                   "assert candidate.head(itertools.count(10), 3) == [10, 11, 12]", "g")
    g = "import itertools\nclass g:\n    def count(self):\n        n = 0\n        while True:\n            yield {}\n" \
        "            n += 1\n    def squares(self, n):\n        return map(lambda i: i * i, range(n))\n" \
        "    def total(self, it):\n        return sum(it)\n    def head(self, it, n):\n" \
        "        return list(itertools.islice(it, n))\ng = g()\n"
    _scores(sb, tests, g.format("n if n < 4 else -1"), g.format("n + 1"), g.format("n"))


def test_big_integers_cross(sb):
    tests = {"asserts": ["assert f(20000) == 2 ** 20000", "assert f(10 ** 5000) == 2 ** (10 ** 5000 % 997)"],
             "entry_point": "f"}
    _scores(sb, tests, "def f(n):\n    return 2 ** (n % 997) + (n == 20000)\n", "def f(n):\n    return 0\n",
            "def f(n):\n    return 2 ** (n % 997 if n > 10 ** 4000 else n)\n")


# ---------------------------------------------------------------- 4. what a reply may cost the harness

CRAFTED = ("import sys\n_boot = sys.modules['__main__']\n_encode = _boot.Encoder.__call__\nclass _Raw:\n    pass\n"
           "def _call(self, x):\n    return ({}) if type(x) is _Raw else _encode(self, x)\n"
           "_boot.Encoder.__call__ = _call\ndef f(x):\n    return _Raw()\n")
EXPANSIONS = {  # small messages that would stand for hundreds of MB, or take the harness minutes to build
    "aliases_doubled": "def f(x):\n    a = [0] * 1000\n    for _ in range(25):\n        a = [a, a]\n    return a\n",
    "range": "def f(x):\n    return range(10 ** 15)\n",
    "decimal_exponent": "from decimal import Decimal\ndef f(x):\n    return Decimal('1e999999999')\n",
    "hash_collisions": CRAFTED.format("{'$set': [k * (2 ** 61 - 1) for k in range(1, 40000)]}"),
    "namedtuple_types": "from collections import namedtuple\n"
                        "def f(x):\n    return [namedtuple(f'T{i}', 'a')(i) for i in range(40)]\n",
}


@pytest.mark.parametrize("attack", list(EXPANSIONS))
def test_compact_replies_cannot_expand_in_the_harness(sb, attack):
    tests = _check("v = candidate(1)\nassert len(str(v)) > 0 and list(v) == [1] and v == [1]")
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        r = _grade(sb, EXPANSIONS[attack], tests)
        elapsed, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (r.reward, r.reason) == (0.0, "output_limit"), r.detail
    assert elapsed < LIMIT_S and peak < 32 << 20, (elapsed, peak >> 20)
    c = _grade(sb, "def f(x):\n    return [2]\n", tests)
    assert (c.reward, c.reason) == (0.0, "wrong_answer")


def test_large_honest_values_still_cross(sb):
    tests = _check("assert candidate.rows() == [[0] * 1000] * 1000\nassert list(candidate.r()) == [0, 1, 2]\n"
                   "assert candidate.s() == set(range(0, 30000 << 20, 1 << 20))\n"
                   "from decimal import Decimal\nassert candidate.d() == Decimal('1.5e300')", "g")
    g = "from decimal import Decimal\nclass g:\n    def rows(self):\n        return [[0] * 1000] * 1000\n" \
        "    def r(self):\n        return range(3)\n    def s(self):\n        return set(range(0, 30000 << 20, 1 << 20))\n" \
        "    def d(self):\n        return Decimal('1.5e300')\ng = g()\n"
    assert _grade(sb, g, tests).reward == 1.0


def test_the_deadline_covers_the_harness_work(sb):
    # Each reply is a few KB for the sandbox and a 1.5M-element comparison for the harness.
    rows = "ROWS = [[0] * 1500] * 1000\ndef f(i):\n    return ROWS if i >= 0 else {}\n"
    loop = "expected = [[0] * 1500] * 1000\nfor i in range({}):\n    assert candidate(i) == expected"
    t0 = time.perf_counter()
    r = _grade(sb, rows.format("None"), _check(loop.format(2000)))
    assert (r.reward, r.reason) == (0.0, "timeout") and time.perf_counter() - t0 < LIMIT_S + 1.0, r.reason
    assert _grade(sb, rows.format("None"), _check(loop.format(3))).reward == 1.0
    assert _grade(sb, "def f(i):\n    return [[0]]\n", _check(loop.format(3))).reward == 0.0


# ---------------------------------------------------------------- 5. iteration does not leak

def test_stop_iteration_does_not_end_the_tests_loop(sb):
    tests = _check("assert all(map(lambda x: candidate(x) == 2 * x, [1, 2, 3]))")
    trick = "def f(x):\n    if x == 2:\n        raise StopIteration\n    return 2 * x if x == 1 else 0\n"
    r = _grade(sb, trick, tests)
    assert (r.reward, r.reason) == (0.0, "runtime_error") and "StopIteration" in r.detail["detail"], r.detail
    _scores(sb, tests, trick.replace("StopIteration", "StopAsyncIteration"),
            "def f(x):\n    return 2 * x if x == 1 else 0\n", "def f(x):\n    return 2 * x\n")


# ---------------------------------------------------------------- 6. output comparison and time limits

def test_stdout_is_compared_line_by_line():
    expected = "1 2\n3\n"
    for ok in ("1 2\n3", "1 2  \n3\t\n\n\n", "1 2\r\n3\r\n"):
        assert same_output(ok, expected), ok
    for wrong in (" 1 2\n3", "1\n2\n3", "1 2 3", "12\n3", "1  2\n3", "\n1 2\n3"):
        assert not same_output(wrong, expected), wrong
    for ok in (" 1 2\n 3 \n", "1.0 2\n3.00", "\n1 2\n3"):  # LiveCodeBench: stripped lines, decimal tokens
        assert same_output(ok, expected, lcb=True), ok
    for wrong in ("1\n2 3", "1 2 3", "1 2\n4", "1 2\nthree"):
        assert not same_output(wrong, expected, lcb=True), wrong


def test_stdout_rule_in_the_sandbox(sb):
    tests = {"stdin_stdout": [{"input": "3\n", "output": "1 2\n3\n"}]}
    _scores(sb, tests, "print(' 1  2')\nprint(input())", "print('1 2 3')",
            "print('1 2   ')\nprint(input() + '\\t')\nprint()")


def test_each_lcb_case_has_its_own_time_limit(sb):
    tests = {"fn_name": "f", "functional": [{"input": f"{i}", "output": f"{2 * i}"} for i in (1, 2, 3)]}
    slow = "import time\ndef f(x):\n    time.sleep({})\n    return {}\n"
    r = _grade(sb, slow.format("1.5 * LIMIT if x == 2 else 0.1", "2 * x").replace("LIMIT", str(LIMIT_S)), tests, lcb=True)
    assert (r.reward, r.reason) == (0.0, "timeout"), r.reason  # a pooled budget (3 x the limit) would pass it
    c = _grade(sb, slow.format(0.1, "x"), tests, lcb=True)
    assert (c.reward, c.reason) == (0.0, "wrong_answer")
    ok = _grade(sb, slow.format(0.6 * LIMIT_S, "2 * x"), tests, lcb=True)  # 1.8 limits in all, each case within one
    assert ok.reward == 1.0, (ok.reason, ok.detail)


# ---------------------------------------------------------------- 7. ssp verify's summary

def test_verify_summary_counts_reused_verdicts():
    results = [Result("a", "code", 1.0, "correct"), Result("b", "code", 1.0, "correct", detail={"reused": True}),
               Result("c", "code", 0.0, "test_error"), Result("d", "math", 0.0, "timeout"),
               Result("e", "code", 0.0, "verifier_error")]
    assert verify_summary(results) == {"count": 5, "math": 1, "code": 4, "correct": 2, "timeouts": 1, "errors": 1,
                                       "test_errors": 1, "reused": 1}
