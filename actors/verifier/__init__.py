"""The verifier's room: everything that turns a response into a reward, and nothing else.

- `pool.py`: the Ray actors (`VerifierActor`) and `VerifierPool` (order, retries, reuse of verdicts);
  `cli.py`: `ssp verify`; `types.py`: `VerifyRequest` in, `Result` out.
- math: `math_answer.py` (where an answer is read, hedge detection), `math_reward.py` (the strict training
  reward), `protocols.py` (the eval protocols: VibeThinker's math rule, LiveCodeBench's code extraction),
  `math_checker.py` (the grader registry and the killable helper process they run in).
- code: `code_grader.py` (tests, extraction, the verdict), `harness.py` (the trusted side of the channel),
  `sandbox.py` with `sandbox_boot.py`, `sandbox_codec.py`, `spawner.py`, `cgroup.py` (the sandbox).

Imports point down: this room uses `actors/config.py`, `cluster/` and the ground helpers only.
"""
