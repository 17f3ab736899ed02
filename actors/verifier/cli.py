"""`ssp verify --input FILE [--output FILE] [--config FILE] [key=value ...]`: score a JSONL file of responses
with the same verifier pool `ssp rl` uses, and print a summary."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from actors.config import VerifierConfig
from actors.verifier.code_grader import InvalidTests, check_tests
from actors.verifier.math_answer import check_choices
from actors.verifier.registry import check_grader
from actors.verifier.types import Result, VerifyRequest, as_request
from ssp.config import load_config
from ssp.io import DataError, check_output, iter_jsonl, writing


def _gold_ok(g: Any) -> bool:
    """A gold answer a response can be graded against: text with something in it, or a finite number."""
    import math

    if isinstance(g, str):
        return bool(g.strip())
    return isinstance(g, int | float) and not isinstance(g, bool) and math.isfinite(g)


def read_requests(path: str | Path) -> list[VerifyRequest]:
    """Parse a JSONL file of requests; errors name the file, line number and field."""
    reqs = []
    seen: dict[str, str] = {}
    for where, rec in iter_jsonl(path):
        need = {"math": ("id", "response", "gold"), "code": ("id", "response", "tests")}
        kind = rec.get("kind")
        if not isinstance(kind, str) or kind not in need:
            raise DataError(f"{where}: field 'kind' must be 'math' or 'code', got {kind!r}")
        for f in need[kind]:
            if f not in rec:
                raise DataError(f"{where}: missing field '{f}'")
        if not isinstance(rec["response"], str):
            raise DataError(f"{where}: field 'response' must be a string")
        if not isinstance(rec["id"], str | int) or isinstance(rec["id"], bool):
            raise DataError(f"{where}: field 'id' must be a string or an integer")
        if str(rec["id"]) in seen:
            raise DataError(f"{where}: duplicate id {str(rec['id'])!r} (first at {seen[str(rec['id'])]})")
        seen[str(rec["id"])] = where
        golds = rec["gold"] if kind == "math" and isinstance(rec["gold"], list) else [rec.get("gold")]
        if kind == "math" and not (golds and all(_gold_ok(g) for g in golds)):
            raise DataError(f"{where}: field 'gold' must be a non-empty string, a finite number or a non-empty "
                            f"list of them, got {rec['gold']!r}"[:300])
        if kind == "math" and rec.get("choices") is not None:
            try:
                rec["choices"] = check_choices(rec["choices"], rec["gold"])
            except ValueError as e:
                raise DataError(f"{where}: field 'choices': {e}") from None
        if kind == "code":
            try:
                check_tests(rec["tests"])
            except InvalidTests as e:
                raise DataError(f"{where}: field 'tests': {e}") from None
        if not isinstance(rec.get("grader", ""), str):
            raise DataError(f"{where}: field 'grader' must be a string")
        try:
            check_grader(kind, rec.get("grader", ""))
        except ValueError as e:
            raise DataError(f"{where}: field 'grader': {e}") from None
        reqs.append(as_request(rec))
    return reqs


def verify_summary(results: list[Result]) -> dict[str, int]:
    """`ssp verify`'s summary, counted from the results themselves: reused verdicts count like checked ones."""
    return {"count": len(results), "math": sum(r.kind == "math" for r in results),
            "code": sum(r.kind == "code" for r in results), "correct": sum(r.reward > 0 for r in results),
            "timeouts": sum(r.reason == "timeout" for r in results),
            "errors": sum(r.reason.startswith("verifier_error") for r in results),
            "test_errors": sum(r.reason == "test_error" for r in results),
            "reused": sum(bool(r.detail.get("reused")) for r in results)}


def run_verify(args: argparse.Namespace) -> int:

    config = load_config(VerifierConfig, args.config, args.overrides, section="verifier")  # bad input: `ssp
    check_output(args.output, [args.input], args.overwrite)  # verify: <what>: <why>` from the CLI's boundary
    reqs = read_requests(args.input)
    import ray

    from actors.verifier.pool import VerifierPool

    if not ray.is_initialized():
        ray.init(num_cpus=max(2, int(config.num_workers * config.num_cpus)), include_dashboard=False,
                 log_to_driver=False)
    pool = VerifierPool(config)
    results = pool.verify(reqs)
    lines = [json.dumps({k: v for k, v in dataclasses.asdict(r).items() if k in ("id", "reward", "reason", "elapsed")})
             + "\n" for r in results]
    if args.output:
        with writing(args.output) as out:
            out.writelines(lines)
    else:
        sys.stdout.writelines(lines)
    summary = verify_summary(results)
    print("summary: " + json.dumps(summary), file=sys.stderr if not args.output else sys.stdout)
    pool.shutdown()
    return 0


def register_cli(sub: Any) -> None:
    """Add `verify` to an argparse subparsers object."""
    p = sub.add_parser("verify", help="score a JSONL file of math/code responses")
    p.add_argument("--input", required=True, help="JSONL: {id, kind: math|code, response, gold|tests}")
    p.add_argument("--output", help="JSONL out (one line per record); stdout when omitted")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--config", help="a config file (its verifier section is used), or YAML with the verifier fields")
    p.add_argument("overrides", nargs="*", help="overrides, e.g. verifier.num_workers=4 (or num_workers=4)")
    p.set_defaults(func=run_verify)
