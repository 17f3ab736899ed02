"""The one evaluator: scoring a stream of rollouts (`score.py`), `ssp eval` runs (`run.py`), the suites and their
datasets (`suites.py`), the report (`report.py`) and the pure metrics (`metrics.py`: unbiased pass@k, cons@n)."""
