"""The top and the ground. Top: the CLI (`cli.py`, one error boundary) and the pipeline of stages
(`pipeline.py`, `ssp pipeline`), which may import every room; the config tree (`tree.py`) composes every room's
config.py. Ground, importable from every room: `config.py` (typed configs), `io.py` (bad-input errors, JSONL),
`mgpo.py` (the MGPO math)."""
