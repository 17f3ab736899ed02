"""Where a math answer is read, and whether a response commits to one: pure text functions, no sympy.

Shared by the strict training reward (actors/verifier/math_reward.py) and the VibeThinker eval protocol
(actors/verifier/protocols.py), so both follow one no-hedge rule:
- the answer region is the text after the first `</think>`; text a reader never sees (HTML and LaTeX comments,
  `\\iffalse` blocks, `\\phantom`s) is removed before anything is read;
- every box in the region is a candidate, and candidates that disagree are a hedge;
- a box holding alternatives (`3 or 5`, `3, 5`, `\\pm 3`, two numbers side by side), a qualified or hedged
  final sentence (`or maybe 6`, `if n is even`, `not 5`) or a relation other than `variable = value` is not
  one answer.
"""

from __future__ import annotations

import re
from typing import Any

THINK_END = "</think>"
THINK_START = "<think>"

# ---------------------------------------------------------------- boxes


def braced(text: str, start: int) -> str | None:
    """The text inside the brace group opening at or after `start` (spaces skipped), or None."""
    j = start
    while j < len(text) and text[j] == " ":
        j += 1
    if j >= len(text) or text[j] != "{":
        return None
    depth = 0
    for k in range(j, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 0:
            return text[j + 1:k]
    return None


_BOX = re.compile(r"\\(boxed|fbox|framebox)(?![A-Za-z])")


def boxes(text: str) -> list[tuple[int, int, str]]:
    """Every box a reader sees, outermost only, in order: (start, end, content). Forms: `\\boxed{x}`,
    `\\boxed {x}`, `\\fbox{x}`, `\\framebox{x}` and the brace-less `\\boxed x` (up to `$`, a space or the line's
    end). An unclosed `\\boxed{` is no answer."""
    out: list[tuple[int, int, str]] = []
    pos = 0
    while (m := _BOX.search(text, pos)) is not None:
        k = m.end()
        inner = braced(text, k)
        if inner is not None:
            end = text.index("{", k) + len(inner) + 2
            out.append((m.start(), end, inner))
        elif m.group(1) == "boxed" and k < len(text) and text[k] == " " and text[k:].lstrip(" ")[:1] not in "{":
            lone = re.match(r" +([^\s$]+)", text[k:])
            if lone:
                end = k + lone.end()
                out.append((m.start(), end, lone.group(1)))
        else:
            end = k
        pos = max(end, k)
    return out


def last_boxed(text: str) -> str | None:
    """Content of the last box in `text` (see `boxes`), or None."""
    found = boxes(text)
    return found[-1][2] if found else None


# ---------------------------------------------------------------- the answer region

_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_MD_COMMENT = re.compile(r"^[ \t]*\[[^\]\n]*\]:[ \t]*(?:#|<>)[ \t]*(?:\(.*\)|\".*\")[ \t]*$", re.M)  # [//]: # (...)
_HTML_HIDDEN = re.compile(r"<(\w+)\b[^>]*(?:display\s*:\s*none|visibility\s*:\s*hidden|\shidden\b)[^>]*>.*?(?:</\1\s*>|\Z)",
                          re.S | re.I)
_INVISIBLE_INK = re.compile(r"\\(?:textcolor|color)\s*\{\s*white\s*\}\s*(?=\{)")
_IFFALSE = re.compile(r"\\iffalse\b.*?(?:\\fi\b|\Z)", re.S)
_LATEX_COMMENT = re.compile(r"(?<![\\\d)}])%[^\n]*")  # `50%` and `\%` are percent signs, not comments
_PHANTOM = re.compile(r"\\[hv]?phantom\s*(?=\{)")


def strip_hidden(text: str) -> str:
    """`text` without what a reader of the rendered response never sees: HTML comments and hidden elements,
    markdown comments (`[//]: # (...)`), `\\iffalse ... \\fi`, LaTeX `%` comments, and the argument of
    `\\phantom`/`\\hphantom`/`\\vphantom` and of white ink (`\\textcolor{white}{...}`)."""
    text = _HTML_COMMENT.sub(" ", text)
    text = _HTML_HIDDEN.sub(" ", text)
    text = _MD_COMMENT.sub(" ", text)
    text = _IFFALSE.sub(" ", text)
    text = _LATEX_COMMENT.sub("", text)
    for hidden in (_PHANTOM, _INVISIBLE_INK):
        text = _drop_groups(text, hidden)
    return text


def _drop_groups(text: str, pattern: re.Pattern) -> str:
    """`text` with each match of `pattern` and the brace group after it removed."""
    while (m := pattern.search(text)) is not None:
        inner = braced(text, m.end())
        end = m.end() + (len(inner) + 2 if inner is not None else 0)
        text = text[:m.start()] + " " + (text[end:] if inner is not None else text[m.end():])
    return text


def answer_region(response: str, think: str = "required") -> tuple[str | None, str]:
    """(the text an answer may be read from, "") or (None, why not).

    The region is the text after the first `</think>`. Without one: under think="required" the response scores
    0 ("no_think_end": it never finished thinking, like a truncated one); under "optional" (a model that does
    not think) the whole response is the region, unless it opened a think block it never closed. A second
    `</think>` is a malformed response ("think_malformed"): the answer must not move with it."""
    n = response.count(THINK_END)
    if n > 1:
        return None, "think_malformed"
    if n == 1:
        region = response.split(THINK_END, 1)[1]
        return (None, "think_malformed") if THINK_START in region else (strip_hidden(region), "")
    if think == "required":
        return None, "no_think_end"
    if THINK_START in response:
        return None, "no_think_end"
    return strip_hidden(response), ""


_FINAL_LINE = re.compile(
    r"^\W{0,4}(?:(?:so|thus|therefore|hence),?\s+)?(?:the\s+)?(?:final\s+)?answer(?:\s+is)?\W{0,4}\s*[:=]?\s*(.+?)"
    r"[\s.*]*$", re.I)


def final_answer_line(region: str) -> str | None:
    """The answer on the region's last non-empty line when that line is a final-answer line (`Final answer: X`,
    `The answer is X`, `**Answer:** X`), with `$` delimiters removed; else None."""
    lines = [x for x in region.strip().splitlines() if x.strip()]
    if not lines:
        return None
    m = _FINAL_LINE.match(lines[-1].strip())
    if not m:
        return None
    ans = m.group(1).strip().strip("$").strip()
    for a, b in (("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", "")):
        ans = ans.replace(a, b)
    return ans.strip() or None


# ---------------------------------------------------------------- one answer or several

_WORDS_IN_BOX = re.compile(
    r"\b(or|and|either|maybe|perhaps|possibly|probably|likely|approximately|approx|about|around|roughly|"
    r"unless|if|except|otherwise|depending|nor|not|neither|rounded|estimated?|nearly|almost|close|least|most|"
    r"more|less|over|under|between|any|some|all)\b", re.I)
_ALTERNATIVE_OPS = re.compile(r"\\(lor|vee|pm|mp|parallel|dots|ldots|cdots|vdots|ddots|mid)(?![A-Za-z])|±|∓|∨|;|\|\||…|"
                              r"\.\.\.|&|\\\\|[-+]\s*$")
_RELATION = re.compile(
    r"\\(approx|simeq|sim|cong|equiv|neq|ne|leq?|geq?|leqslant|geqslant|lt|gt|ll|gg|propto|in|notin|subset|"
    r"subseteq|supset|supseteq|to|rightarrow|Rightarrow|implies|iff|Leftrightarrow|mapsto)(?![A-Za-z])|[<>≈≠≤≥∈→⇒]|!=")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:(?:\s|\\[,;: !]|\{,\}|~|,)+\d{3})+(?:\.\d+)?$")
_DECIMAL_COMMA = re.compile(r"^(-?\d+),(\d{1,2}|\d{4,})$")  # 3 digits after the comma read as thousands
_SPACED_NUMBERS = re.compile(r"\d(?:\s|\\[,;: !]|~|\\quad|\\qquad)+[-+]?\d")
_ASSIGN = re.compile(r"^\s*([A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?|\\[A-Za-z]+(?:_\{?[A-Za-z0-9]+\}?)?)\s*=\s*([^=]+)$")


def number_form(answer: str) -> str | None:
    """`1 000`, `1\\,000`, `10,455`, `32,\\!349` -> `1000`/`10455`/`32349`; `1000,99` -> `1000.99`; else None."""
    a = answer.strip().strip("$").strip()
    a = a[2:].strip() if a.startswith("\\$") else a
    if _THOUSANDS.match(a):
        return re.sub(r"\s|\\[,;: !]|\{,\}|~|,", "", a)
    m = _DECIMAL_COMMA.match(a)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def _top_level_commas(s: str) -> int:
    depth, n = 0, 0
    for ch in s:
        depth += ch in "([{"
        depth -= ch in ")]}"
        n += ch == "," and depth == 0
    return n


def hedge_in_box(content: str, multi: bool, relation: bool, gold: str = "") -> str | None:
    """Why `content` (one box, or one final-answer line) is not a single committed answer, or None.
    `multi`: the gold is a set, tuple, interval or several values (then lists are the answer's form);
    `relation`: the gold is itself an equation or inequality; `gold`: its text (words it uses are allowed)."""
    text = re.sub(r"\\(text|textbf|mathrm|mbox|textit|operatorname)\s*\{([^{}]*)\}", r" \2 ", content)
    text = re.sub(r"\\[,;:! ]", " ", text)  # LaTeX spacing, not punctuation
    allowed = {w.lower() for w in re.findall(r"[A-Za-z]+", gold)}
    if any(m.group(0).lower() not in allowed for m in _WORDS_IN_BOX.finditer(text)) or "?" in text:
        return "hedged"
    if not multi and _ALTERNATIVE_OPS.search(text):
        return "hedged"
    if not relation and _RELATION.search(text):
        return "relation"
    if not multi and number_form(content) is None:
        if _SPACED_NUMBERS.search(text) or _top_level_commas(text) > 0:
            return "hedged"
    if not relation and text.count("=") > 1:
        return "relation"
    if not relation and "=" in text and not _ASSIGN.match(text):
        return "relation"
    return None


def assigned_value(content: str) -> str:
    """`x = 3` -> `3` (one variable on the left); anything else unchanged."""
    m = _ASSIGN.match(content)
    return m.group(2).strip() if m and content.count("=") == 1 else content


_TAIL_HEDGE = re.compile(
    r"\b(or|alternatively|otherwise|either|maybe|perhaps|possibly|probably|might|could|unless|if|assuming|"
    r"provided|not|approximately|roughly|about|around|guess|unsure|uncertain)\b|n't\b|\\neq?\b|\\approx|≠|≈", re.I)
_MATH_AFTER = re.compile(r"\$[^$]*\d[^$]*\$|\\\(.*?\d.*?\\\)|\\\[.*?\d.*?\\\]|^[\s*>-]*[-+]?\d[\d.,/\s]*[\s.*]*$",
                         re.M | re.S)
_SENTENCE_END = re.compile(r"(?<!\d)[.!?](?=\s)|\n\s*\n")


def hedge_around(region: str, start: int, end: int) -> str | None:
    """"hedged" when the sentence holding the last box (from the previous sentence's end) or the text after it
    qualifies the answer or offers another (`or 6`, `if n is even`, `not 5`, `approximately`); else None."""
    before, after = region[:start], region[end:]
    if _MATH_AFTER.search(after):  # another value shown after the answer: `\\boxed{18}  $21$`
        return "hedged"
    cut = max((m.end() for m in _SENTENCE_END.finditer(before)), default=0)
    tail = before[cut:] + " ANSWER " + after
    tail = re.sub(r"\\(text|textbf|mathrm|mbox|textit)\s*\{([^{}]*)\}", r" \2 ", tail)
    return "hedged" if _TAIL_HEDGE.search(tail) else None


# ---------------------------------------------------------------- multiple choice

_LETTER_BOX = re.compile(r"^\s*(?:\\text(?:bf|rm)?\s*\{|\\mathrm\s*\{|\\mathbf\s*\{)?\s*\(?\s*([A-Z])\s*\)?\s*\}?"
                         r"\s*(?:[.:)]\s*(.*))?$", re.S)


def choice_letter(content: str, choices: dict[str, str]) -> str | None:
    """The one option letter a box gives (`C`, `(C)`, `\\text{(C)}`, `C. <option C's text>`), or None when it is
    not exactly one of the problem's letters (two letters, a letter with another option's text, prose)."""
    m = _LETTER_BOX.match(content)
    if not m or m.group(1) not in choices:
        return None
    rest = (m.group(2) or "").strip().strip("$").strip()
    if rest and _squash(rest) != _squash(choices[m.group(1)]):
        return None
    return m.group(1)


def gold_letter(gold: str) -> str | None:
    m = _LETTER_BOX.match(gold)
    return m.group(1) if m and not m.group(2) else None


def _squash(s: str) -> str:
    return re.sub(r"\s|\$|\\[,;: !]", "", s).lower()


def check_choices(choices: Any, gold: Any) -> dict[str, str]:
    """A multiple-choice problem's options as letter -> text: a JSON object keyed by single capital letters, or a
    list of option texts (lettered A, B, ...); the gold must be one of the letters. Raises ValueError."""
    if isinstance(choices, list):
        if not 2 <= len(choices) <= 26:
            raise ValueError(f"a list of 2 to 26 options, got {len(choices)}")
        choices = {chr(65 + i): c for i, c in enumerate(choices)}
    if not isinstance(choices, dict) or len(choices) < 2:
        raise ValueError("must be an object of 2 or more options (letter -> text) or a list of option texts")
    for k, v in choices.items():
        if not (isinstance(k, str) and len(k) == 1 and k.isupper() and k.isascii()):
            raise ValueError(f"option keys must be single capital letters, got {k!r}")
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise ValueError(f"option {k}: text must be a string or number, got {type(v).__name__}")
    letter = gold_letter(str(gold))
    if letter is None or letter not in choices:
        raise ValueError(f"the gold answer {str(gold)!r} must be one of the option letters {sorted(choices)}")
    return {k: str(v) for k, v in choices.items()}
