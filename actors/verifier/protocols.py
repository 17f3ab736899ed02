"""The official evaluation's graders, as pure functions: VibeThinker's math rule and LiveCodeBench's code
extraction. `ssp eval` runs them beside the other math protocol (actors/verifier/math_checker.py MATH_GRADERS) on every sample.

`vibethinker` (the 1.5B report's protocol, rllm's math reward):
- a response without `</think>` scores 0 (so does a truncated one);
- the answer is the last `\\boxed{...}` (exactly that: `\\boxed {x}`, `\\boxed x` and `\\fbox{x}` are not boxes)
  in the text between the first `</think>` and the next one (the whole rest when there is no second);
- correct if the answer equals a gold answer after the MATH dataset's (Hendrycks') string normalisation, or
  if a sympy check calls them equal (`-10/9` = `-\\frac{10}{9}`, `(1.0,2.0)` = `(1,2)`, bmatrix = pmatrix).
  Sympy can hang on a hostile answer: call this through `MathChecker`, whose helper process is killed.
- no hedging (the training reward's rule, actors/verifier/math_answer.py): every box of the segment must be correct
  (boxes that disagree score 0), and a box holding alternatives, a qualification or a relation other than
  `variable = value` (where the gold is not a relation) scores 0. Hidden text (comments) is not read.
"""

from __future__ import annotations

import math
import re

from actors.verifier.math_answer import THINK_END, braced, hedge_in_box, strip_hidden

# ---------------------------------------------------------------- boxes

_BOX_OPEN = "\\boxed{"


def protocol_boxes(text: str) -> list[str]:
    """Contents of every `\\boxed{...}` in `text`, in order: the protocol's box is exactly `\\boxed{` (not
    `\\boxed {x}`, `\\boxed x` or `\\fbox{x}`); nested braces handled, an unclosed box is no answer."""
    out, i = [], text.find(_BOX_OPEN)
    while i >= 0:
        inner = braced(text, i + len(_BOX_OPEN) - 1)
        if inner is not None:
            out.append(inner)
        i = text.find(_BOX_OPEN, i + len(_BOX_OPEN))
    return out


def last_box(text: str) -> str | None:
    """Content of the last `\\boxed{...}` in `text` (see `protocol_boxes`), or None."""
    found = protocol_boxes(text)
    return found[-1] if found else None


def vote_answer(response: str) -> str | None:
    """The answer cons@n votes with: the last box of the whole response (thinking included), as a raw string."""
    return last_box(response)


def final_segment(response: str) -> str | None:
    """The text after the first `</think>` (up to a second one), or None when there is none."""
    parts = response.split(THINK_END)
    return parts[1] if len(parts) > 1 else None


# ---------------------------------------------------------------- Hendrycks (MATH) normalisation

def _fix_fracs(s: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`, `\\frac1{2}` -> `\\frac{1}{2}`: every \\frac gets two brace groups."""
    head, *tails = s.split("\\frac")
    out = head
    for t in tails:
        out += "\\frac"
        if t.startswith("{") or len(t) < 2:
            out += t
            continue
        a, b, rest = t[0], t[1], t[2:]
        out += f"{{{a}}}{b}{rest}" if b == "{" else f"{{{a}}}{{{b}}}{rest}"
    return out


def _fix_sqrt(s: str) -> str:
    """`\\sqrt2` -> `\\sqrt{2}` (the first character after \\sqrt becomes its argument)."""
    return re.sub(r"\\sqrt(?![{\[])(\w)", r"\\sqrt{\1}", s)


def _fix_a_slash_b(s: str) -> str:
    m = re.fullmatch(r"(-?\d+)/(-?\d+)", s)
    return f"\\frac{{{int(m.group(1))}}}{{{int(m.group(2))}}}" if m else s


def hendrycks_normalize(answer: str) -> str:
    """The MATH dataset's answer normalisation (its `is_equiv` string rule), with the enclosing `\\text{}`
    removal mathd adds."""
    s = answer.strip()
    m = re.fullmatch(r"\\text\{(.+?)\}", s)
    if m:
        s = m.group(1).strip()
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in s:  # units written after the number: "5 \text{ cm}"
        s = s.split("\\text{ ")[0]
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    lhs, eq, rhs = s.partition("=")
    if eq and "=" not in rhs and len(lhs) <= 2:  # "x=5", "k = 5" -> "5"
        s = rhs
    s = _fix_sqrt(s).replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


# ---------------------------------------------------------------- sympy equivalence

_UNITS = ("degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "day", "week", "month",
          "year", "foot", "feet", "inch", "yard", "unit")


def _plain(expr: str) -> str:
    """A looser normal form for the sympy check: no text wrappers, units, dollar/percent signs or
    thousands commas; lower case; spaces removed."""
    s = expr.strip()
    m = re.fullmatch(r"\\text\{(.+)\}", s)
    if m:
        s = m.group(1)
    for a, b in (("\\%", ""), ("\\$", ""), ("$", ""), ("%", ""), ("bmatrix", "pmatrix"),
                 ("million", "*10^6"), ("billion", "*10^9"), ("trillion", "*10^12"), ("\\left", ""),
                 ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\ ", ""), ("dfrac", "frac"), ("tfrac", "frac")):
        s = s.replace(a, b)
    for unit in _UNITS:
        s = re.sub(rf"(\\(text|mbox|mathrm)\{{)?\s*{unit}(es|s)?\s*(\^\s*\{{?\d+\}}?)?\}}?", "", s)
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s)
    s = re.sub(r"\\(text|mbox|mathrm|textbf)\{([^{}]*)\}", r"\2", s)
    if len(s) > 1 and s[0] == "{" and s[-1] == "}":
        s = s[1:-1]
    s = re.sub(r"(\d),(?=\d{3}(\D|$))", r"\1", s)  # 1,000,000 -> 1000000
    try:
        f = float(s)
        if math.isinf(f) or s.strip().lower() in ("inf", "infinity", "+inf", "-inf", "-infinity"):
            s = ("-" if f < 0 else "") + "\\infty"  # `inf`, `Infinity`, `1e999`: infinity, not an overflow
        elif f == int(f) and abs(f) < 1e15:
            s = str(int(f))
    except (ValueError, OverflowError):  # not a number; nan
        pass
    return s.replace(" ", "").lower()


def _is_int(s: str) -> bool:
    return re.fullmatch(r"-?\d+", s) is not None


_FRAC = re.compile(r"(-?)(?:\\frac\{(-?\d+)\}\{(-?\d+)\}|(-?\d+)/(-?\d+))")


def _is_frac(s: str) -> bool:
    return _FRAC.fullmatch(s) is not None


def _frac_parts(s: str) -> tuple[int, int]:
    """A fraction as written, sign moved to the numerator: `-10/9`, `-\\frac{10}{9}`, `\\frac{-10}{9}` -> (-10, 9)."""
    m = _FRAC.fullmatch(s)
    assert m is not None
    num, den = (int(m.group(2)), int(m.group(3))) if m.group(2) is not None else (int(m.group(4)), int(m.group(5)))
    sign = (-1 if m.group(1) else 1) * (-1 if den < 0 else 1)
    return sign * num, abs(den)


def _elements(s: str) -> list[str]:
    """A tuple or interval `(a,b)` / `[a,b]` as its elements; anything else as itself."""
    if len(s) > 2 and s[0] in "([" and s[-1] in ")]" and "," in s:
        return [e.strip() for e in s[1:-1].split(",")]
    return [s]


def _sympy(s: str):
    from sympy.parsing.sympy_parser import (
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    if "\\" in s:
        from latex2sympy2_extended import latex2sympy

        return latex2sympy(s)
    return parse_expr(s.replace("^", "**").replace("{", "(").replace("}", ")"),
                      transformations=standard_transformations + (implicit_multiplication_application,))


def sympy_equal(given: str, gold: str) -> bool:
    """Elementwise sympy equivalence of two answers. An integer gold needs an integer answer and fractions
    must match as written (an unreduced fraction is not the reduced one); otherwise `simplify(a - b) == 0`.
    May take unbounded time: callers run it in a killable process."""
    g, a = _plain(gold), _plain(given)
    if not a or not g:
        return False
    if g == a:
        return True
    ge, ae = _elements(g), _elements(a)
    if len(ge) != len(ae) or (len(ge) > 1 and (g[0] != a[0] or g[-1] != a[-1])):
        return False
    if len(ge) > 1:
        ge, ae = [_plain(x) for x in ge], [_plain(y) for y in ae]
    for x, y in zip(ge, ae):
        if _is_frac(x) and _is_frac(y):
            if _frac_parts(x) != _frac_parts(y):
                return False
        elif _is_int(x) != _is_int(y):
            return False
        elif x != y:
            try:
                import sympy

                if sympy.simplify(_sympy(x) - _sympy(y)) != 0:
                    return False
            except Exception:  # unparsable, or not a number/expression (an equation, a set)
                return False
    return True


def _gold_shape(gold: str) -> tuple[bool, bool]:
    """(several values: a tuple, interval, set, matrix or list; a relation) for a gold answer's text."""
    g = _plain(gold)
    multi = "," in g or "\\pm" in g or "matrix" in g or "\\cup" in g or g.startswith("\\{")
    return multi, bool(re.search(r"=|<|>|\\le|\\ge|\\neq", g))


def _equal(answer: str, gold: str) -> bool:
    return hendrycks_normalize(answer) == hendrycks_normalize(gold) or sympy_equal(answer, gold)


def grade_vibethinker(response: str, gold: str | list[str], **_options) -> tuple[float, str, str | None]:
    """(reward, reason, answer) under the VibeThinker rule; reasons: correct, no_think_end, format_miss,
    wrong_answer, hedged, relation. The training reward's options (think, unboxed, choices) do not apply."""
    final = final_segment(response)
    if final is None:
        return 0.0, "no_think_end", None
    found = protocol_boxes(strip_hidden(final))
    if not found:
        return 0.0, "format_miss", None
    answer = found[-1]
    distinct = list(dict.fromkeys(hendrycks_normalize(b) for b in found))
    answers = [next(b for b in found if hendrycks_normalize(b) == d) for d in distinct]
    golds = [str(g) for g in (gold if isinstance(gold, list) else [gold])]
    golds = [(last_box(g) if "\\boxed" in g else g) for g in golds]
    reason = "wrong_answer"
    for g in (g for g in golds if g is not None):
        multi, relation = _gold_shape(g)
        hedges = [h for a in answers if (h := hedge_in_box(a, multi, relation, g))]
        if hedges:
            return 0.0, hedges[0], answer
        right = [_equal(a, g) for a in answers]
        if all(right):
            return 1.0, "correct", answer
        if any(right):
            reason = "hedged"  # boxes that disagree, one of them right
    return 0.0, reason, answer


# ---------------------------------------------------------------- code

def lcb_extract_code(response: str) -> str:
    """LiveCodeBench's rule: the lines between the last two lines that contain a code fence ("" if < 2)."""
    lines = response.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    return "\n".join(lines[fences[-2] + 1:fences[-1]]) if len(fences) >= 2 else ""
