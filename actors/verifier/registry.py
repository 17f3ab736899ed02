"""The one grader registry, keyed (kind, grader). No Ray here: `ssp verify` checks its input against it before
any actor starts."""

from __future__ import annotations

from actors.verifier.math_checker import MATH_GRADERS

# The one grader registry: (kind, grader) -> the VerifierActor method that runs it. "" is the kind's training
# reward (math: "strict", with verifier.math_think/math_unboxed; code: the sandbox); the others are the eval
# protocols. A math grader's function is MATH_GRADERS[name] (math_checker.py), checked here to match.
GRADERS: dict[tuple[str, str], str] = {
    **{("math", g): "grade_math" for g in ("", *MATH_GRADERS)},
    **{("code", g): "grade_code" for g in ("", "sandbox", "lcb")},
}


def check_grader(kind: str, grader: str) -> None:
    """ValueError naming the valid (kind, grader) pairs when this one is not registered."""
    if (kind, grader) not in GRADERS:
        valid = sorted(g for k, g in GRADERS if k == kind and g)
        raise ValueError(f"unknown {kind} grader {grader!r}; valid: {valid} (or none: the training reward)")
