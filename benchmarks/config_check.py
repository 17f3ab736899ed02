"""How fast a bad config is refused: `ssp config` and `ssp rl` with a bad choice, wall time per call.

Issue 13's goal: each exits non-zero in under 2 s, naming the key and the valid values, before Ray, vLLM
or DeepSpeed start. Run: .venv/bin/python benchmarks/config_check.py   (last line: one JSON object)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAD = ["rl.mode=async", "learner.dtype=bf16", "learner.loss.advantage=grpoo", "rollout.sampling_mode=x",
       "data.toy.subdomains=[add,geometry]", "rl.group_size=1", "learner.lr=nan"]


def main() -> None:
    out: dict[str, float] = {}
    for command in ("config", "rl"):
        times = []
        for override in BAD:
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "ssp.cli", command, "--config", "configs/tiny-cpu.yaml",
                                override], cwd=REPO, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            assert r.returncode == 2 and override.split("=")[0] in r.stderr, r.stderr
        out[f"{command}_reject_s_median"] = round(statistics.median(times), 3)
        out[f"{command}_reject_s_max"] = round(max(times), 3)
        print(f"ssp {command}: {len(BAD)} bad overrides refused in median {statistics.median(times):.2f} s, "
              f"max {max(times):.2f} s")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
