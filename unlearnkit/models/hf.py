"""``hf:PATH``: a Hugging Face ``transformers`` sequence classifier (``AutoModelForSequenceClassification``) behind
the ``model(x) -> logits`` interface every method uses. Needs the optional extra: ``pip install unlearnkit[hf]``.

``PATH`` is a local model directory (``config.json`` and ``model.safetensors``, as ``save_pretrained`` writes it),
a directory with only a ``config.json``, or a ``config.json`` file. Nothing is downloaded (``local_files_only``), and
weights are read from safetensors only (``use_safetensors=True``: a ``pytorch_model.bin`` pickle is refused).

* With weights, the pretrained model is loaded; when its classification head has another number of labels than
  the dataset's classes, the head is re-initialised for them (``ignore_mismatched_sizes``), the rest kept.
* With a config only, the model is initialised at random from torch's global generator (so deterministic under
  ``torch.manual_seed``), with ``num_labels`` = the classes, and, when the dataset gives them, its
  ``vocab_size`` and ``pad_token_id`` (a text dataset's tokenizer: :mod:`unlearnkit.data.tokenizer`).

:class:`HFSequenceClassifier` wraps the model: ``forward(x)`` takes the padded token ids (floats, as every dataset
stores them, or ints), builds the attention mask from the pad id (``x != pad_id``; a row of pads only keeps its
first position, so its output is defined) and returns ``.logits``. The pad id must be the model's
``config.pad_token_id`` when it has one (RoBERTa-like models derive position ids from it); a mismatch is an
error. Pads at the end of a row, as the text datasets write them, never change a prediction; unlike
``transformer``, which counts positions over real tokens only, HF models use absolute positions, so pads *between*
tokens would shift them. ``discrete_inputs = True`` marks token-id inputs for the methods (``unsir`` refuses it).

Checkpoints: the wrapper's ``state_dict`` is the HF model's with a ``model.`` prefix, saved by unlearnkit's
safetensors checkpoints like every model; :meth:`HFSequenceClassifier.save_pretrained` writes an HF directory
(safetensors) that ``hf:DIR`` loads back.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, IncompatibleModelError
from .registry import register_model

__all__ = ["HFSequenceClassifier", "hf", "hf_source_id", "import_transformers"]

INSTALL = "pip install unlearnkit[hf]"


def import_transformers() -> Any:
    """The ``transformers`` module, or a one-line error naming the extra that installs it."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"hf: models need the Hugging Face transformers package: {INSTALL}") from None
    return transformers


class HFSequenceClassifier(nn.Module):
    """``model(x) -> logits`` around a ``transformers`` sequence classifier, the attention mask from ``pad_id``."""

    discrete_inputs = True

    def __init__(self, model: nn.Module, pad_id: int) -> None:
        super().__init__()
        cfg_pad = getattr(getattr(model, "config", None), "pad_token_id", None)
        if cfg_pad is not None and int(cfg_pad) != int(pad_id):
            raise IncompatibleModelError(
                f"hf: the data's pad id is {pad_id} but the model's config.pad_token_id is {cfg_pad}; tokenise "
                "with the model's own tokenizer (--tokenizer-file DIR/tokenizer.json)")
        self.model = model
        self.pad_id = int(pad_id)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.long()
        mask = ids != self.pad_id
        empty = ~mask.any(dim=1)
        if bool(empty.any()):
            mask = mask.clone()
            mask[empty, 0] = True
        return self.model(input_ids=ids, attention_mask=mask.long()).logits

    def save_pretrained(self, path: str | Path) -> None:
        """Write the wrapped model as an HF directory (``config.json`` + ``model.safetensors``)."""
        self.model.save_pretrained(str(path), safe_serialization=True)


def _config_path(path: Path) -> Path:
    return path / "config.json" if path.is_dir() else path


def hf_source_id(path: str) -> dict[str, str]:
    """SHA-256 (16 hex digits) of the config and weight files under ``path``: part of a model's cache key, so a
    changed directory never reuses models trained from the old one."""
    p = Path(path).expanduser()
    files = [_config_path(p)] + (sorted(p.glob("*.safetensors")) if p.is_dir() else [])
    h = hashlib.sha256()
    for f in files:
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return {"source_sha256": h.hexdigest()[:16]}


def _quiet_from_pretrained(tf: Any, path: Path, config: Any) -> tuple[nn.Module, dict]:
    """``from_pretrained`` (safetensors only, local files only) without transformers' load report and progress
    bar; its verbosity and bar setting are restored afterwards."""
    log = tf.utils.logging
    verbosity, bar = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        return tf.AutoModelForSequenceClassification.from_pretrained(
            str(path), config=config, local_files_only=True, use_safetensors=True, ignore_mismatched_sizes=True,
            output_loading_info=True)
    finally:
        log.set_verbosity(verbosity)
        if bar:
            log.enable_progress_bar()


def hf(input_shape: tuple[int, ...], num_classes: int, *, path: str = "", vocab_size: int = 0,
       pad_id: int | None = None) -> nn.Module:
    """Builder for the registry (``--model hf:PATH``); see the module docstring."""
    if len(input_shape) != 1:
        raise ConfigError(f"hf: models take token ids of shape (length,), got input shape {tuple(input_shape)}; use "
                          "a text dataset (textsynth, textcsv:PATH, jsonl:PATH)")
    if not path:
        raise ConfigError("hf needs a local model directory or config.json: --model hf:DIR")
    p = Path(path).expanduser()
    cfg_file = _config_path(p)
    if not cfg_file.is_file():
        raise ConfigError(f"hf:{path}: no config.json there; pass a directory saved by save_pretrained (or with a "
                          "config.json), or a config.json file (nothing is downloaded)")
    tf = import_transformers()
    weights = p.is_dir() and any(p.glob("*.safetensors"))
    if p.is_dir() and not weights and any(p.glob("*.bin")):
        raise ConfigError(f"hf:{path}: only pickle weights (*.bin) there, which unlearnkit never loads; convert them "
                          "to safetensors (model.save_pretrained(dir, safe_serialization=True))")
    try:
        config = tf.AutoConfig.from_pretrained(str(cfg_file), local_files_only=True)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise ConfigError(f"hf:{path}: cannot read its config.json ({str(e).strip().splitlines()[0]})") from None
    length = int(input_shape[0])
    max_pos = getattr(config, "max_position_embeddings", None)
    if max_pos is not None and length > int(max_pos) - 2 * (config.model_type in ("roberta", "xlm-roberta")):
        raise ConfigError(f"hf:{path}: the data's texts are {length} tokens long but the model takes at most "
                          f"{max_pos} positions; use a shorter max_len or another model")
    config.num_labels = int(num_classes)
    if weights:
        if vocab_size and vocab_size > int(config.vocab_size):
            raise IncompatibleModelError(
                f"hf:{path}: the data's tokenizer has {vocab_size} ids but the model's vocabulary {config.vocab_size}; "
                "tokenise with the model's own tokenizer (--tokenizer-file DIR/tokenizer.json)")
        model, info = _quiet_from_pretrained(tf, p, config)
        fresh = sorted(set(info.get("missing_keys") or []) | {k[0] if isinstance(k, tuple) else k
                                                              for k in info.get("mismatched_keys") or []})
        if fresh:
            # transformers' own multi-line load report (printed at every build, i.e. for every reference and
            # method) is silenced; this says the same once per process and directory.
            warnings.warn(f"hf:{path}: {len(fresh)} tensors initialised at random for {num_classes} classes "
                          f"({', '.join(fresh[:4])}{', ...' if len(fresh) > 4 else ''}); the rest is pretrained",
                          UserWarning, stacklevel=2)
    else:
        if vocab_size:
            config.vocab_size = int(vocab_size)
        if pad_id is not None:
            config.pad_token_id = int(pad_id)
        model = tf.AutoModelForSequenceClassification.from_config(config)
    pad = pad_id if pad_id is not None else config.pad_token_id
    if pad is None:
        raise ConfigError(f"hf:{path}: neither the data nor the model config names a pad id (config.pad_token_id)")
    return HFSequenceClassifier(model, int(pad))


register_model("hf", hf, image_only=False, arg="path", source_id=hf_source_id,
               summary="hf:PATH - a Hugging Face AutoModelForSequenceClassification (local dir or config.json; "
                       "pip install unlearnkit[hf]); text datasets")
