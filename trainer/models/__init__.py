"""The model a command runs on: the tiny model built here (`tiny.py`), SmolLM2 converted from a pinned GGUF
wheel (`gguf.py`), `ensure_model`/`check_model` (`ensure.py`), and `ssp generate` (`generate.py`)."""
