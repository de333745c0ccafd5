"""A Hugging Face model folder (config.json, model.safetensors, tokenizer files) with a sequence-classification head,
built with transformers from the folder alone (never a hub download), with eager attention (what the exporters
trace and head pruning edits). Its inputs are the tokenizer's (input_ids, attention_mask, token_type_ids: int64,
dynamic batch and sequence axes in the export); its sentence embedding (`embed`) is the classifier's input.

A student for depth distillation keeps `depth` of the encoder's layers, evenly spaced, with the teacher's weights
(layer dropping, as DistilBERT initialises from every other layer); the width of a pretrained encoder is fixed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compressbench.data import DataSpec
from compressbench.errors import CompressbenchError
from compressbench.intake.text import load_tokenizer
from compressbench.models import ModelConfig, ModelSource, NamedInputs, model_sources
from compressbench.models.transformer import transformers_offline
from compressbench.weights import weights_fingerprint

# The order inputs are packed in (and named in the export), of those the tokenizer gives.
INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")
DEFAULT_SEQUENCE_LENGTH = 128
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# A pretrained encoder fine-tunes (after pruning, or as a distilled student) as the zoo's MiniLM does: small steps,
# few epochs; the generic settings (Adam 1e-3, at least 1,000 steps) would undo its pretraining and cost hours of CPU.
FINE_TUNING = {"epochs": 4, "lr": 5e-5, "schedule": "cosine", "batch_size": 32, "patience": 2}


def is_hf_folder(name: str) -> bool:
    return Path(name).is_dir() and (Path(name) / "config.json").is_file()


def hf_config(folder: str) -> Any:
    transformers = transformers_offline()
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as error:
        raise CompressbenchError(f"model {folder}: config.json cannot be read: {str(error).splitlines()[0]}") from None
    if not any(name.endswith("ForSequenceClassification") for name in config.architectures or []):
        raise CompressbenchError(
            f"model {folder}: config.json declares {config.architectures or 'no architecture'}, not a "
            "...ForSequenceClassification head; compress measures classifiers (fine-tune a head and save it with "
            "save_pretrained)"
        )
    return config


class SequenceClassifier(nn.Module):
    """The folder's model returning logits; `embed` gives the input of its final linear layer."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**inputs).logits

    def embed(self, **inputs: torch.Tensor) -> torch.Tensor:
        final = [m for m in self.model.modules() if isinstance(m, nn.Linear)][-1]
        seen: list[torch.Tensor] = []
        handle = final.register_forward_hook(lambda module, args, out: seen.append(args[0]))
        try:
            self.model(**inputs)
        finally:
            handle.remove()
        return seen[-1]


def build(config: ModelConfig, spec: DataSpec) -> nn.Module:
    if config.width != 1.0:
        raise CompressbenchError(f"model {config.name}: a pretrained encoder cannot be rebuilt at width {config.width}")
    transformers = transformers_offline()
    folder = config.name
    declared = hf_config(folder)
    if declared.num_labels != spec.num_classes:
        raise CompressbenchError(
            f"model {folder}: its head has {declared.num_labels} classes, the data {spec.num_classes}"
        )
    if not spec.input_names:
        raise CompressbenchError(
            f"model {folder}: its data must be tokenized by its tokenizer (a CSV / JSONL / Parquet file of texts)"
        )
    try:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            folder, local_files_only=True, attn_implementation="eager"
        )
    except Exception as error:
        raise CompressbenchError(f"model {folder}: cannot be built: {str(error).splitlines()[0]}") from None
    if config.depth is not None:
        _keep_layers(model, config.depth, folder)
    return NamedInputs(SequenceClassifier(model.eval()), spec.input_names, spec.torch_dtype)


def _keep_layers(model: nn.Module, depth: int, folder: str) -> None:
    found = next(((name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList)
                  and len(m) == model.config.num_hidden_layers), None)  # fmt: skip
    if found is None:
        raise CompressbenchError(f"model {folder}: no list of {model.config.num_hidden_layers} encoder layers found")
    if depth >= len(found[1]):
        raise CompressbenchError(
            f"model {folder}: has {len(found[1])} encoder layers; a student of {depth} would be no smaller"
        )
    name, layers = found
    kept = np.linspace(0, len(layers) - 1, depth).round().astype(int)
    parent, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent), attribute, nn.ModuleList([layers[int(i)] for i in kept]))
    model.config.num_hidden_layers = depth


def fingerprint(name: str) -> str:
    """config.json, the weights and the tokenizer files: what builds the model and reads its data."""
    digest = hashlib.sha256()
    for path in sorted(Path(name).iterdir()):
        if path.is_file() and (path.suffix in (".json", ".txt", ".model") or path.name in WEIGHT_FILES):
            digest.update(path.name.encode() + weights_fingerprint(path).encode())
    return digest.hexdigest()


def preprocessing(folder: str, sequence_length: int | None = None) -> dict[str, Any]:
    """How texts become this folder's inputs: its tokenizer, padded / truncated to `sequence_length` (default the
    smaller of 128 and what the model takes), the inputs it gives, and the head's label names."""
    declared = hf_config(folder)
    tokenizer = load_tokenizer(folder)
    longest = min(getattr(declared, "max_position_embeddings", 512), tokenizer.model_max_length or 512)
    length = sequence_length or min(DEFAULT_SEQUENCE_LENGTH, longest)
    if not 1 <= length <= longest:
        raise CompressbenchError(f"--sequence-length {length}: the model takes 1 to {longest} tokens")
    given = set(tokenizer.model_input_names)
    label2id = {str(k): int(v) for k, v in (declared.label2id or {}).items()}
    generic = all(name.startswith("LABEL_") for name in label2id)  # the default names mean no names were given
    return {
        "kind": "tokenizer",
        "folder": str(Path(folder).resolve()),
        "sha256": fingerprint(folder),
        "max_length": length,
        "padding": "max_length",
        "truncation": True,
        "inputs": [name for name in INPUT_ORDER if name in given],
        "num_classes": declared.num_labels,
        **({} if generic else {"label2id": label2id}),
    }


model_sources.register("hugging-face-folder")(
    ModelSource(
        "a Hugging Face model folder with a sequence-classification head",
        is_hf_folder,
        build,
        fingerprint,
        rebuilds=frozenset({"depth"}),
        holds_weights=True,
        training=FINE_TUNING,
    )
)
