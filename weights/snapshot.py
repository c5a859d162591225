"""Weight snapshots: a normal Hugging Face model directory plus ``meta.json``.

A snapshot holds the fp32 master as ``model.safetensors`` and the config, generation config,
tokenizer and chat template copied from the model it descends from, so vLLM (``--model DIR``
or an in-place ``reload_weights(weights_path=DIR)``) and transformers
(``AutoModelForCausalLM.from_pretrained(DIR)``) load it as they would the base. ``meta.json``
is one typed schema, :class:`SnapshotMeta`, whoever writes it (a learner round or
``perennial learn``): where the weights came from and how (parent, base, the seed log: seeds,
coefficients, noise table and the resolved ES config), metrics, and two checksums: ``sha256``
of the safetensors files (the same function the model preparation uses) and
``tensors_sha256`` of the raw tensors (format independent).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from weights.es import tensors_sha256
from weights.meta import META, SnapshotMeta
from weights.prep import weights_sha256

WEIGHTS = "model.safetensors"
# Everything a loader needs besides the weights; copied when present.
SIDECAR_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)


def load_tensors(model_dir: Path, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """All tensors of a model directory's ``*.safetensors`` files, cast to ``dtype``, name order.

    Args:
        model_dir: a Hugging Face model directory.
        dtype: the dtype to hold them in (fp32 for the ES master).

    Returns:
        ``name -> tensor`` with checkpoint names, sorted by name. Tensors already in ``dtype``
        are copy-on-write views of the file's memory map (writes never reach the file).
    """
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir} holds no *.safetensors files")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                tensors[name] = handle.get_tensor(name).to(dtype).contiguous()
    return dict(sorted(tensors.items()))


def write_snapshot(
    out_dir: Path,
    tensors: Mapping[str, torch.Tensor],
    source_dir: Path,
    meta: SnapshotMeta,
) -> SnapshotMeta:
    """Write ``tensors`` as a loadable model directory at ``out_dir`` (atomically).

    The directory is assembled next to ``out_dir`` and renamed into place, so a crash never
    leaves a half-written snapshot under the final name. An existing ``out_dir`` is replaced.

    Args:
        out_dir: the snapshot directory to create.
        tensors: checkpoint-named tensors (the fp32 master).
        source_dir: model directory whose config and tokenizer files are copied.
        meta: provenance to record; ``sha256``, ``tensors_sha256`` and ``created_at`` are set.

    Returns:
        The meta as written to ``meta.json``.
    """
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in SIDECAR_FILES:
        if (Path(source_dir) / name).is_file():
            shutil.copy2(Path(source_dir) / name, tmp / name)
    _set_config_dtype(tmp / "config.json", tensors)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS), {"format": "pt"})
    full = meta.model_copy(
        update={
            "sha256": weights_sha256(tmp),
            "tensors_sha256": tensors_sha256(tensors),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    (tmp / META).write_text(json.dumps(full.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return full


def _set_config_dtype(config_path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    # The config's dtype must say what the file holds, or loaders may cast on the way in.
    if not config_path.is_file() or not tensors:
        return
    config = json.loads(config_path.read_text())
    dtype = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    key = "dtype" if "dtype" in config or "torch_dtype" not in config else "torch_dtype"
    config[key] = dtype
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
