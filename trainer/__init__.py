"""The trainer room: the pipelines that drive the actors. `rl.py` is the RL loop (with `batch_source.py`, where its
batches come from, and `run_log.py`, where its numbers go); `data/` is problems in (loaders, splits and probe
carving, decontamination, toy tasks); `models/` the model a command runs on (tiny, GGUF import, ensure/check,
`ssp generate`); `spectrum/` the Spectrum stage (SFT, probe, merge, the stage); `eval/` the evaluator (scoring,
the run, suites, report, metrics). Imports point down: trainer/ uses actors/, cluster/ and the ground helpers;
nothing here imports serve/ or the CLI (ssp/cli.py, ssp/pipeline.py sit above)."""
