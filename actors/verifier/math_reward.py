"""The strict math training reward: one answer, read from one place, compared exactly.

Rules (docs/sandbox.md, "Rewards"):
- read from the text after the first `</think>` (actors/verifier/math_answer.py `answer_region`); a response that must
  think and never closes it scores 0; hidden text (comments) is removed first;
- the answer is the box there; an unboxed answer only with `unboxed=True`, and then only from a final-answer
  line; boxes that disagree, a box holding alternatives, or a hedged final sentence score 0 ("hedged"); a set,
  tuple, interval or matrix gold is compared as a whole (several boxes then make one list);
- a relation is an answer only where the gold is a relation, or as `variable = value`;
- multiple-choice letters only for problems with `choices`: exactly one of their letters, from the box;
- numbers follow the gold: an exact gold (integer, fraction, radical, pi...) needs an exactly equal value (a
  decimal answer is taken as the exact rational it writes, so 0.5 = 1/2 but 0.333 != 1/3); a decimal gold is
  compared at its own precision: an answer written with more decimals is rounded to the gold's (3.14159 for
  3.14), otherwise it must be equal (1/3 is not 0.3); percent signs may be dropped or applied (50% = 50 = 0.5).
Equivalence otherwise is math-verify's (sympy), with no float tolerance. No time limit here: run it through
`MathChecker` (actors/verifier/math_checker.py), whose helper process is killed at the limit.
"""

from __future__ import annotations

import functools
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from actors.verifier.math_answer import (
    answer_region,
    assigned_value,
    boxes,
    choice_letter,
    final_answer_line,
    gold_letter,
    hedge_around,
    hedge_in_box,
    number_form,
)

_PCT = re.compile(r"\\?%")
_INFINITY = re.compile(r"^\s*(\+|-)?\s*(?:\\text\{)?\s*(?:infinity|inf)\s*\}?\s*$", re.I)


def _latex(text: str) -> str:
    t = text.strip()
    m = _INFINITY.match(t)
    if m:
        return f"{m.group(1) or ''}\\infty"
    return t.replace("bmatrix", "pmatrix")


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Any:
    """The sympy value of an answer's text (math-verify's LaTeX reader), or None. Cached: a gold answer is read
    for each of its G samples (sympy values are immutable)."""
    from math_verify import parse
    from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig

    t = _latex(text)
    for conf in ([LatexExtractionConfig(boxed_match_priority=0)], [ExprExtractionConfig()]):
        got = parse(f"\\boxed{{{t}}}" if isinstance(conf[0], LatexExtractionConfig) else t,
                    extraction_config=conf, parsing_timeout=None)
        if got and not isinstance(got[0], str):
            return got[0]
    return None


def _kind(value: Any) -> str:
    """"relation", "multi" (set, tuple, interval, matrix), "number" or "expr"."""
    import sympy
    from math_verify.grader import is_relation

    if is_relation(value):
        return "relation"
    if isinstance(value, sympy.Set | sympy.Tuple | sympy.MatrixBase):
        return "multi"
    return "number" if getattr(value, "is_number", False) else "expr"


def _exact(value: Any) -> Any:
    """Every float in `value` as the exact rational its digits write (0.333 -> 333/1000)."""
    import sympy

    try:
        return value.xreplace({f: sympy.Rational(str(f)) for f in value.atoms(sympy.Float)})
    except Exception:  # e.g. a matrix type without xreplace: leave it
        return value


def _decimals(text: str) -> int | None:
    """Decimal places of a plain decimal number `text` (`-3.140` -> 3), else None."""
    m = re.fullmatch(r"\s*[-+]?\d*\.(\d+)\s*", text)
    return len(m.group(1)) if m else None


def _numbers_equal(pred_text: str, gold_text: str) -> bool:
    """Numeric answers by the gold's kind: exact, or at a decimal gold's precision; percent either way."""
    import sympy

    g_pct, p_pct = bool(_PCT.search(gold_text)), bool(_PCT.search(pred_text))
    g, p = _parse(_PCT.sub("", gold_text)), _parse(_PCT.sub("", pred_text))
    if g is None or p is None or not getattr(p, "is_number", False):
        return False
    preds = [p, p / 100] if p_pct else ([p, p * 100] if g_pct else [p])
    places = _decimals(_PCT.sub("", gold_text).strip().strip("$"))
    for q in preds:
        q = _exact(q)
        if q == g:
            return True
        if g.is_infinite or q.is_infinite or q.has(sympy.nan):
            continue  # only an identical infinity is equal (oo - oo is not 0)
        if places is not None and (_decimals(_PCT.sub("", pred_text).strip().strip("$")) or 0) > places:
            try:  # a decimal gold, answered with more decimals: the answer rounded to the gold's
                step = Decimal(1).scaleb(-places)
                got = Decimal(str(sympy.N(q, 50))).quantize(step, rounding=ROUND_HALF_UP)
                if got == Decimal(_PCT.sub("", gold_text).strip().strip("$")).quantize(step):
                    return True
            except (InvalidOperation, ValueError, TypeError, OverflowError):
                pass
        elif sympy.simplify(_exact(g) - q) == 0:
            return True
    return False


def equivalent(pred_text: str, gold_text: str) -> bool:
    """Is the answer `pred_text` (one committed value) the gold `gold_text`? Strict: see the module's rules."""
    from math_verify import verify

    gold = _parse(gold_text)
    if gold is None:
        return _squash(pred_text) == _squash(gold_text)
    kind = _kind(gold)
    if kind == "number":
        return _numbers_equal(pred_text, gold_text)
    pred = _parse(pred_text)
    if pred is None:
        return False
    import sympy

    if not (hasattr(gold, "atoms") and gold.atoms(sympy.Float)):  # an exact gold: no float tolerance
        pred = _exact(pred)
    return bool(verify([gold], [pred], float_rounding=10, numeric_precision=100, timeout_seconds=None))


def gold_kind(gold_text: str) -> str:
    value = _parse(gold_text)
    return "none" if value is None else _kind(value)


def _squash(s: str) -> str:
    return re.sub(r"\s|\$|\\[,;: !]|\\text\s*\{|\}|\{", "", s).lower()


def _candidates(response: str, think: str, unboxed: bool) -> tuple[list[str], str]:
    """(distinct answer texts offered, "") or ([], why none / why not one)."""
    region, why = answer_region(response, think)
    if region is None:
        return [], why
    found = boxes(region)
    if found:
        hedge = hedge_around(region, found[-1][0], found[-1][1])
        if hedge:
            return [found[-1][2]], hedge
        texts = [c for _, _, c in found]
    else:
        line = final_answer_line(region) if unboxed else None
        if line is None:
            return [], "format_miss"
        texts = [line]
    distinct: list[str] = []
    for t in texts:
        if _squash(t) not in {_squash(d) for d in distinct}:
            distinct.append(t)
    return distinct, ""


def grade_strict(response: str, gold: str | list[str], think: str = "required", unboxed: bool = False,
                 choices: dict[str, str] | None = None) -> tuple[float, str, str | None]:
    """(reward, reason, answer shown). Reasons: correct, wrong_answer, hedged, relation, format_miss,
    no_think_end, think_malformed, gold_unparsable. `gold` may list several acceptable answers."""
    golds = [str(g) for g in (gold if isinstance(gold, list) else [gold])]
    texts, why = _candidates(response, think, unboxed)
    shown = texts[-1] if texts else None
    if why:
        return 0.0, why, shown
    if choices:
        letters = {choice_letter(t, choices) for t in texts}
        if None in letters:
            return 0.0, "format_miss" if len(texts) == 1 else "hedged", shown
        if len(letters) > 1:
            return 0.0, "hedged", shown
        ok = letters.pop() in {gold_letter(g) for g in golds}
        return (1.0, "correct", shown) if ok else (0.0, "wrong_answer", shown)
    reason = "wrong_answer"
    for g in golds:
        kind = gold_kind(g)
        multi, relation = kind == "multi", kind == "relation"
        answers = [", ".join(texts)] if multi and len(texts) > 1 else texts
        hedges = [h for t in answers if (h := hedge_in_box(t, multi, relation, g))]
        if hedges:
            return 0.0, hedges[0], shown
        values = [t if relation or multi else (number_form(t) or assigned_value(t)) for t in answers]
        results = [equivalent(v, g) for v in values]
        if all(results):
            return 1.0, "correct", shown
        if any(results):
            reason = "hedged"  # boxes that disagree: one of them is right
        elif kind == "none" and reason == "wrong_answer":
            reason = "gold_unparsable"
    return 0.0, reason, shown
