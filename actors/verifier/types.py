"""What the verifier is asked and what it answers: a `VerifyRequest` in, a `Result` (the verdict) out, for both
kinds (math, code) and every grader. Plain dataclasses, no Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class VerifyRequest:
    id: str
    kind: str  # "math" | "code"
    response: str
    gold: str | list[str] | None = None  # a list: any of these answers is accepted
    tests: dict[str, Any] | None = None
    grader: str = ""  # "" = the kind's training reward; "vibethinker"/"math-verify" (math) or "lcb" (code): eval protocols
    choices: dict[str, str] | None = None  # a multiple-choice math problem's options, letter -> text


@dataclass
class Result:
    id: str
    kind: str
    reward: float
    reason: str
    elapsed: float = 0.0
    answer: str | None = None
    stdout: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def as_request(item: VerifyRequest | dict[str, Any]) -> VerifyRequest:
    if isinstance(item, VerifyRequest):
        return item
    return VerifyRequest(str(item["id"]), item["kind"], item["response"], item.get("gold"), item.get("tests"),
                         item.get("grader", ""), item.get("choices"))
