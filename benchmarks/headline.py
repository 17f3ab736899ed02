"""`make bench`'s last line: issue 18's figures, taken from the last JSON line of each benchmark's log.

Usage: python benchmarks/headline.py LOG_DIR   (LOG_DIR holds rollout.log, pipeline.log, vs_trl.log, ablate.log)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FIGURES = {  # figure -> the benchmark whose last line has it
    "rl_samples_per_s_vs_trl": "vs_trl", "time_to_target_vs_trl": "vs_trl",
    "actor_vs_raw_vllm": "rollout",
    "sync_fraction": "pipeline", "verify_exposed_fraction": "pipeline", "other_fraction": "pipeline",
    "mgpo_scheduler_samples_vs_grpo_uniform": "ablate",
}


def last_json(path: Path) -> dict:
    for line in reversed(path.read_text().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"{path}: no JSON line (did the benchmark finish?)")


def main() -> None:
    logs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bench-logs")
    found = {name: last_json(logs / f"{name}.log") for name in sorted(set(FIGURES.values()))}
    print(json.dumps({key: found[bench].get(key) for key, bench in FIGURES.items()}))


if __name__ == "__main__":
    main()
