"""The model a command runs on: `ensure_model` builds or converts `model.path` when `model.source` says how
(the tiny model, a GGUF wheel's conversion), `check_model` refuses a folder that is not a usable HF model with
a chat template, before any engine starts."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ssp.io import DataError
from trainer.models.tiny import BUILD_VERSION, MARKER, build


def check_model(path: str):
    """The model's tokenizer, after checking the folder is a usable HF model with a chat template."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise DataError(f"{path}: not an HF model directory (no config.json)")
    if not any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        raise DataError(f"{path}: no tokenizer (tokenizer.json / tokenizer_config.json)")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)  # no fallback template: the model's own
    if not tok.chat_template:
        raise DataError(f"{path}: the tokenizer has no chat template (the protocol renders prompts with it)")
    return tok


def _built_from(marker: Path) -> tuple:
    info = json.loads(marker.read_text())
    return info.get("config"), info.get("version")


def ensure_model(conf) -> str:
    """`model.path`, built first when model.source says how: the tiny model when that directory has no model
    yet, or holds a tiny model built from other `model.tiny` settings (a directory without our marker file is
    never touched); a GGUF wheel's conversion (trainer/models/gguf.py); `path`: as given."""
    if conf.model.source == "path":
        return conf.model.path
    if conf.model.source == "gguf":
        from trainer.models.gguf import import_gguf

        return str(import_gguf(conf.model.path, conf.model.gguf))
    path = Path(conf.model.path)
    marker = path / MARKER
    want = asdict(conf.model.tiny)
    if not (path / "config.json").exists():
        print(f"building the tiny model at {path}")
    elif marker.exists() and _built_from(marker) != (want, BUILD_VERSION):
        print(f"rebuilding the tiny model at {path}: {marker} was built from other model.tiny settings or an "
              "older build")
    else:
        return str(path)
    build(conf.model.tiny, path)
    return str(path)
