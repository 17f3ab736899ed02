"""The actors room: one file per Ray actor role and what only it uses. Rollout: `rollout.py` (vLLM engines),
`engine.py`, `prompts.py`, `weight_sync.py`; learner: `learner.py`, `train_engine.py` (the one training engine,
shared with SFT), `ds_config.py`, `losses.py`; the verifier: `verifier/`. `records.py` holds what travels
through a step (Problem, Rollout); `config.py` the room's config. Imports point down: actors/ uses cluster/ and
the ground helpers (ssp/config.py, ssp/io.py, ssp/mgpo.py) only."""
