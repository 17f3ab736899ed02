"""Reward integrity: wrong solutions that try to fake a pass, through the same grader `ssp verify` and `ssp rl` use.

Each trick is tried three ways in each test format: the trick with a wrong solution must score 0; the same
wrong solution without the trick scores 0 (negative control); the trick with a right solution scores 1
where the trick is harmless to a right answer (so the harness does not punish odd but honest code).
"""

from __future__ import annotations

import pytest

from actors.verifier.code_grader import InvalidTests, check_tests, grade_code
from actors.verifier.sandbox import Sandbox, SandboxLimits

UIDS = [63150, 63151]
RIGHT = "def f(x):\n    return 2 * x\n"
WRONG = "def f(x):\n    return 0\n"
FORMATS = {
    "asserts": {"asserts": ["assert f(3) == 6", "assert f(5) == 10", "assert math.isclose(f(0.25), 0.5)"],
                "imports": ["import math"]},
    "test_code": {"test_code": "def check(candidate):\n    assert candidate(3) == 6\n"
                               "    assert sorted([candidate(5), candidate(1)]) == [2, 10]\n",
                  "entry_point": "f"},
    "functional": {"fn_name": "f", "functional": [{"input": "3", "output": "6"}, {"input": "5", "output": "10"}]},
}

# name -> (code placed before the solution, code replacing its body or None, harmless to a right answer?)
EXIT = "import os\nos._exit(0)"
TRICKS = {
    "sys_exit_at_load": ("import sys\nsys.exit(0)\n", None, False),
    "os_exit_at_load": ("import os\nos._exit(0)\n", None, False),
    "os_exit_in_function": ("", EXIT, False),
    "systemexit_in_function": ("", "raise SystemExit(0)", False),
    "keyboardinterrupt_in_function": ("", "raise KeyboardInterrupt", False),
    "excepthook_exits_0": ("import sys, os\nsys.excepthook = lambda *a: os._exit(0)\n", None, True),
    "atexit_exits_0": ("import atexit, os\natexit.register(lambda: os._exit(0))\n", None, True),
    "trace_exits_on_exception": (
        "import sys, os, threading\n"
        "def _t(frame, event, arg):\n    if event == 'exception':\n        os._exit(0)\n    return _t\n"
        "sys.settrace(_t)\nthreading.settrace(_t)\n", None, True),
    "returns_equal_to_anything": (
        "class _Any:\n    def __eq__(self, o):\n        return True\n    __ne__ = lambda s, o: False\n"
        "    __hash__ = lambda s: 0\n    __lt__ = __gt__ = __le__ = __ge__ = __eq__\n"
        "    def __float__(self):\n        return 0.0\n", "return _Any()", False),
    "int_subclass_equal_to_anything": (
        "class _I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\n",
        "return _I(0)", False),
    "patch_builtins_and_math": (
        "import builtins, math\nbuiltins.sorted = lambda *a, **k: [2, 10]\nmath.isclose = lambda *a, **k: True\n"
        "builtins.AssertionError = type('AssertionError', (Exception,), {})\n", None, True),
    "patch_json_and_encoder": (
        "import sys, json\njson.loads = lambda *a, **k: 6\nm = sys.modules['__main__']\n"
        "m.encode = lambda x, refs=None: 6\n", None, False),
    "fake_result_lines": (
        "import os\nfor fd in range(3, 20):\n    try:\n"
        "        os.write(fd, b'{\"ready\": true, \"names\": [\"f\"]}\\n' + b'{\"ok\": true}\\n' * 20)\n"
        "    except OSError:\n        pass\n", None, False),
    "deeply_nested_reply": (
        "import os\nfor fd in range(3, 20):\n    try:\n"
        "        os.write(fd, b'{\"ready\": true}\\n' + b'[' * 200000 + b']' * 200000 + b'\\n')\n"
        "    except OSError:\n        pass\n", None, False),
    "returns_deeply_nested": ("", "x = []\nfor _ in range(100000):\n    x = [x]\nreturn x", False),
    "returns_huge": ("", "return 'x' * (8 << 20)", False),
    "fake_pass_on_stdout": ("print('OK\\nall tests passed\\n{\"ok\": 6}')\n", None, True),
    "fake_sandbox_failure": ("import sys\nsys.stderr.write('bwrap: Creating new namespace failed\\n')\n"
                             "sys.exit(1)\n", None, False),
    "kill_pid_1": ("import os, signal\nos.kill(1, signal.SIGKILL)\n", None, False),
}
LEAK_HUNT = (  # looks everywhere this process can see for the tests or the expected values
    "import gc, os, sys\n"
    "needles = tuple(''.join(p) for p in [('f(', '5)'), ('candi', 'date('), ('== ', '10'), ('SECR', 'ET-')])\n"
    "hits = []\n"
    "for root in ('/box', '/scratch', '/tmp', '/dev/shm', '/proc'):\n"
    "    for d, _, files in os.walk(root):\n"
    "        if d.startswith('/proc/') and not d[6:7].isdigit():\n"
    "            continue\n"
    "        for name in files:\n"
    "            try:\n"
    "                with open(os.path.join(d, name), 'rb') as fh:\n"
    "                    data = fh.read(1 << 20)\n"
    "            except OSError:\n"
    "                continue\n"
    "            if any(n.encode() in data for n in needles):\n"
    "                hits.append(os.path.join(d, name))\n"
    "f = sys._getframe()\n"
    "while f:\n"
    "    if any(n in str(c) for c in f.f_code.co_consts for n in needles) or 'check' in f.f_globals:\n"
    "        hits.append('frame')\n"
    "    f = f.f_back\n"
    "for o in gc.get_objects():\n"
    "    if isinstance(o, str) and all(o is not n for n in needles) and any(n in o for n in needles):\n"
    "        hits.append('gc')\n"
    "print('LEAKS', sorted(set(hits)))\n"
)


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    return Sandbox(SandboxLimits(timeout_s=5), uids=UIDS)


def _solution(trick: str, body_ok: bool) -> str:
    prefix, body, _ = TRICKS[trick]
    if body is None:
        return prefix + (RIGHT if body_ok else WRONG)
    return prefix + "def f(x):\n" + "".join(f"    {line}\n" for line in body.splitlines())


def _grade(sb: Sandbox, code: str, fmt: str):
    return grade_code(f"```python\n{code}\n```", FORMATS[fmt], sb)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_controls(sb, fmt):
    assert _grade(sb, RIGHT, fmt).reward == 1.0
    r = _grade(sb, WRONG, fmt)
    assert (r.reward, r.reason) == (0.0, "wrong_answer")


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("trick", list(TRICKS))
def test_trick_does_not_fake_a_pass(sb, trick, fmt):
    r = _grade(sb, _solution(trick, body_ok=False), fmt)
    assert r.reward == 0.0, (trick, fmt, r.reason, r.detail)
    assert r.reason != "verifier_error", (trick, r.detail)  # scored as the answer's failure, never retried
    if TRICKS[trick][2]:
        ok = _grade(sb, _solution(trick, body_ok=True), fmt)
        assert ok.reward == 1.0, (trick, fmt, ok.reason, ok.detail)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_solution_never_sees_the_tests(sb, fmt):
    r = _grade(sb, LEAK_HUNT + WRONG, fmt)
    assert r.reward == 0.0 and "LEAKS []" in (r.stdout or ""), r.stdout


def test_plain_data_round_trip(sb):
    code = ("from collections import Counter\nimport re\n"
            "def f(x):\n    return {'t': (1, 2.5), 's': {1, 2}, 'fs': frozenset([3]), 'b': b'\\x00', 'c': 1+2j,\n"
            "            'n': None, 'nan': float('inf'), 'big': 2**80, 'r': range(3)}\n"
            "def g(x):\n    return Counter(x)\n"
            "def m(s):\n    return re.match('a', s)\n")
    tests = {"asserts": ["assert f(0) == {'t': (1, 2.5), 's': {1, 2}, 'fs': frozenset([3]), 'b': b'\\x00', "
                         "'c': 1+2j, 'n': None, 'nan': float('inf'), 'big': 2**80, 'r': range(3)}",
                         "assert f(0)['t'] != [1, 2.5]",  # a tuple stays a tuple
                         "assert g('aab') == {'a': 2, 'b': 1}",
                         "assert m('abc') and not m('xbc')"]}
    r = grade_code(f"```python\n{code}```", tests, sb)
    assert r.reward == 1.0, r.detail


def test_stdin_problems_compare_in_the_harness(sb):
    tests = {"stdin_stdout": [{"input": "7f3a\n", "output": "SECRET-7f3a\n"}, {"input": "b\n", "output": "SECRET-b"}]}
    right = "print('SECRET-' + input().strip())"
    assert grade_code(f"```python\n{right}\n```", tests, sb).reward == 1.0
    trailing = "print('SECRET-' + input().strip() + '  \\n\\n')"
    assert grade_code(f"```python\n{trailing}\n```", tests, sb).reward == 1.0  # trailing whitespace is ignored
    leading = "print('  SECRET-' + input().strip())"
    assert grade_code(f"```python\n{leading}\n```", tests, sb).reward == 0.0  # leading whitespace is not
    for wrong in ("import sys\nsys.exit(0)", "print('SECRET-x')", LEAK_HUNT):
        assert grade_code(f"```python\n{wrong}\n```", tests, sb).reward == 0.0


def test_a_function_that_never_returns_is_a_timeout(sb):
    for fmt in FORMATS:
        r = _grade(sb, "def f(x):\n    while True:\n        pass\n", fmt)
        assert (r.reward, r.reason) == (0.0, "timeout"), (fmt, r.reason)


def test_tests_are_checked():
    for bad in ({}, {"asserts": []}, {"stdin_stdout": []}, {"asserts": "assert f(1) == 2"},
                {"test_code": "assert True", "entry_point": "f"}, {"functional": [{"input": "1", "output": "2"}]},
                {"asserts": ["assert 1"], "stdin_stdout": [{"input": "", "output": ""}]}, ["assert f(1) == 2"]):
        with pytest.raises(InvalidTests):
            check_tests(bad)
    assert check_tests({"asserts": ["assert f(1) == 2"]}) == "asserts"
