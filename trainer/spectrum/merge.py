"""`ssp merge`: a parameter-wise weighted average of HF checkpoints (the paper's expert fusion, 1/N each).

Streams tensor by tensor from safetensors and accumulates in fp32, so N inputs cost one output model plus
one input tensor of memory; the output keeps the inputs' dtype. Refuses, naming the difference, inputs
whose architecture/config, parameter names or shapes, vocabulary or tokenizer files differ.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

from ssp.io import DataError, building, check_output_dir

MARKER = "merge.json"  # what `ssp merge` writes into its output: the inputs and weights (and marks it as ours)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "tokenizer.model", "chat_template.jinja", "added_tokens.json")
_CONFIG_IGNORED = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache"}


def _open(f: Path):
    """safe_open, or a DataError naming the file when it is not a readable safetensors file."""
    from safetensors import safe_open

    try:
        return safe_open(str(f), "pt")
    except Exception as e:  # noqa: BLE001  (safetensors raises SafetensorError / OSError for bad files)
        raise DataError(f"{f}: not a readable safetensors file ({type(e).__name__}: {e})") from None


def tensor_files(model: Path) -> dict[str, Path]:
    """parameter name -> safetensors file (a single file or a sharded index)."""
    index = model / "model.safetensors.index.json"
    if index.exists():
        return {k: model / v for k, v in json.loads(index.read_text())["weight_map"].items()}
    files = sorted(model.glob("*.safetensors"))
    if not files:
        raise DataError(f"{model}: no *.safetensors files (merge needs HF safetensors checkpoints)")
    out = {}
    for f in files:
        with _open(f) as h:
            out.update({k: f for k in h.keys()})
    return out


def _shapes(model: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    out = {}
    for name, f in tensor_files(model).items():
        with _open(f) as h:
            s = h.get_slice(name)
            out[name] = (tuple(s.get_shape()), s.get_dtype())
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_compatible(models: list[Path]) -> None:
    """Raise DataError naming the first difference between models[0] and any other input."""
    base = models[0]
    if not (base / "config.json").exists():
        raise DataError(f"{base}: no config.json (not an HF model directory)")
    c0 = {k: v for k, v in json.loads((base / "config.json").read_text()).items() if k not in _CONFIG_IGNORED}
    s0 = _shapes(base)
    for m in models[1:]:
        if not (m / "config.json").exists():
            raise DataError(f"{m}: no config.json (not an HF model directory)")
        c = {k: v for k, v in json.loads((m / "config.json").read_text()).items() if k not in _CONFIG_IGNORED}
        for k in sorted(set(c0) | set(c)):
            if c0.get(k) != c.get(k):
                what = "vocabulary size" if k == "vocab_size" else "architecture" if k in ("architectures",
                                                                                        "model_type") else "config"
                raise DataError(f"merge: {what} differs: config.json field '{k}' is {c0.get(k)!r} in {base} but "
                                f"{c.get(k)!r} in {m}")
        for f in TOKENIZER_FILES:
            a, b = base / f, m / f
            if a.exists() != b.exists():
                raise DataError(f"merge: tokenizer differs: {f} is in {a if a.exists() else b} but not in "
                                f"{m if a.exists() else base}")
            if a.exists() and _digest(a) != _digest(b):
                raise DataError(f"merge: tokenizer differs: {f} of {base} and of {m} are not the same file")
        s = _shapes(m)
        if set(s) != set(s0):
            only = sorted(set(s0) ^ set(s))[:3]
            raise DataError(f"merge: parameter names differ between {base} and {m} (e.g. {only})")
        for name in s0:
            if s[name] != s0[name]:
                raise DataError(f"merge: parameter '{name}' is {s0[name][0]} {s0[name][1]} in {base} but "
                                f"{s[name][0]} {s[name][1]} in {m}")


def merge(models: list[str | Path], out: str | Path, weights: list[float] | None = None) -> Path:
    """Write sum_i w_i * model_i (fp32 accumulation, inputs' dtype out) to `out`, with the first model's config,
    generation config and tokenizer files."""
    import torch
    from safetensors.torch import save_file

    models = [Path(m) for m in models]
    if not models:
        raise DataError("merge: no input models")
    w = list(weights) if weights else [1.0 / len(models)] * len(models)
    if len(w) != len(models):
        raise DataError(f"merge: {len(w)} weights for {len(models)} models")
    if not all(math.isfinite(x) and 0 <= x <= 1 for x in w):
        raise DataError(f"merge: every weight must be a finite number in [0, 1], got {w}")
    if abs(sum(w) - 1.0) > 1e-6:
        raise DataError(f"merge: weights must sum to 1, got {sum(w):.6f} ({w})")
    out = Path(out)
    check_output_dir(out, models, MARKER, "ssp merge")
    check_compatible(models)
    files = [tensor_files(m) for m in models]
    merged: dict[str, torch.Tensor] = {}
    for name in files[0]:
        acc, dtype = None, None
        for wi, f in zip(w, files):
            with _open(f[name]) as h:
                t = h.get_tensor(name)
            dtype = t.dtype
            acc = t.float() * wi if acc is None else acc.add_(t.float(), alpha=wi)
            del t
        merged[name] = acc.to(dtype)
    with building(out) as tmp:
        save_file(merged, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        for f in ("config.json", "generation_config.json", *TOKENIZER_FILES):
            if (models[0] / f).exists():
                shutil.copy2(models[0] / f, tmp / f)
        (tmp / MARKER).write_text(json.dumps({"models": [str(m) for m in models], "weights": w}, indent=1))
    return out
