"""Transformer text classifiers: the pretrained all-MiniLM-L6-v2 encoder (`minilm`) and a small BERT the tool trains
itself (`transformer`), both a Hugging Face `BertModel` under one classifier, so that exporting, head pruning and
distillation have one code path.

The classifier mean-pools the encoder's last hidden states over the real (non-padding) tokens, as
sentence-transformers does for MiniLM, and puts a linear layer on that sentence embedding. Inputs are token ids
carried as float32 (N, L) (see `DataSpec.vocab_size`); padding is id 0 and the first position always counts, so an
all-padding row (the zeros used to trace a model) still has one token to attend to.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from compressbench.data import DataSpec
from compressbench.data.text import PAD_ID, TEXT_EXTRA, minilm_files
from compressbench.errors import CompressbenchError
from compressbench.models import ModelFamily, models, scaled

SMALL_LAYERS = 2
SMALL_HEADS = 4
SMALL_HEAD_DIM = 16


def transformers_offline():
    """transformers, never reaching a hub (every model and tokenizer comes from local files), its log and
    weight-loading progress bars muted (they would flood the terminal)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise CompressbenchError(f"the transformer models need the transformers package: {TEXT_EXTRA}") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


class TextClassifier(nn.Module):
    """A BERT encoder, mean pooling over real tokens, and a linear classifier on the sentence embedding.

    It takes token ids as float32 (what every loader gives) or int64; its ONNX export takes int64 (`input_dtype`),
    as a deployed text model does, so that no runtime can lower the ids to a reduced float precision (bf16 holds
    integers exactly only up to 256)."""

    input_dtype = torch.int64

    def __init__(self, encoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(encoder.config.hidden_size, num_classes)
        # The last training batch's sentence embeddings, for losses that match hidden states (distillation).
        self.pooled: torch.Tensor | None = None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The sentence embedding: the mean of the last hidden states over the real tokens."""
        ids = x.long()
        real = torch.cat([torch.ones_like(ids[:, :1], dtype=torch.bool), ids[:, 1:] != PAD_ID], dim=1)
        hidden = self.encoder(input_ids=ids, attention_mask=real.long()).last_hidden_state
        weights = real.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.embed(x)
        self.pooled = pooled if self.training else None
        return self.classifier(pooled)


def is_attention(module: nn.Module) -> bool:
    """A self-attention module with separate query / key / value projections (BERT-style)."""
    return all(isinstance(getattr(module, n, None), nn.Linear) for n in ("query", "key", "value"))


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of a BERT-style encoder, in order."""
    return [m for m in model.modules() if is_attention(m)]


def heads_of(attention: nn.Module) -> int:
    """Heads a (possibly pruned) attention module runs: its projections' width over the head size."""
    return attention.query.out_features // attention.attention_head_size


def _encoder(config) -> nn.Module:
    transformers = transformers_offline()
    config._attn_implementation = "eager"  # plain matmul + softmax: traced, exported and pruned like any layer
    return transformers.BertModel(config, add_pooling_layer=False)


def build_small(spec: DataSpec, width: float, depth: int | None) -> TextClassifier:
    """A 2-layer, 4-head BERT (hidden 64 at width 1; the head size scales with `width`) for tests and small tasks."""
    transformers = transformers_offline()
    hidden = SMALL_HEADS * scaled(SMALL_HEAD_DIM, width)
    config = transformers.BertConfig(
        vocab_size=spec.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=depth or SMALL_LAYERS,
        num_attention_heads=SMALL_HEADS,
        intermediate_size=4 * hidden,
        max_position_embeddings=max(64, spec.input_shape[0]),
        type_vocab_size=1,
        pad_token_id=PAD_ID,
    )
    return TextClassifier(_encoder(config), spec.num_classes)


def build_minilm(spec: DataSpec, width: float, depth: int | None) -> TextClassifier:
    """all-MiniLM-L6-v2's pretrained encoder (from the installed package, never downloaded) under a new classifier.

    `depth` keeps that many of its 6 layers, evenly spaced and with their pretrained weights (a distillation
    student initialised from its teacher, as DistilBERT was); the width is the pretrained one."""
    from safetensors.torch import load_file

    transformers = transformers_offline()
    if width != 1.0:
        raise CompressbenchError(
            f"model minilm: width {width:g} asked, but a pretrained encoder keeps its width; shrink it with "
            "depth (layers kept), prune.heads or a zoo 'transformer' student"
        )
    folder = minilm_files()
    config = transformers.BertConfig.from_json_file(str(folder / "config.json"))
    layers = config.num_hidden_layers
    if depth is not None and depth > layers:
        raise CompressbenchError(f"model minilm: depth {depth} asked, but the pretrained encoder has {layers} layers")
    if spec.vocab_size != config.vocab_size or spec.input_shape[0] > config.max_position_embeddings:
        raise CompressbenchError(
            f"model minilm: dataset {spec.name!r} gives ids of a {spec.vocab_size}-token vocabulary and length "
            f"{spec.input_shape[0]}; MiniLM reads its own {config.vocab_size}-token WordPiece ids, at most "
            f"{config.max_position_embeddings} long (tokenize with compressbench.data.text.encode)"
        )
    kept = sorted({round(i * (layers - 1) / max(1, (depth or layers) - 1)) for i in range(depth or layers)})
    config.num_hidden_layers = len(kept)
    encoder = _encoder(config)
    weights = {
        k: v
        for k, v in load_file(str(folder / "model.safetensors")).items()
        if not k.startswith("pooler.") and not k.endswith("position_ids")
    }
    renamed = {}
    for key, value in weights.items():
        parts = key.split(".")
        if parts[:2] == ["encoder", "layer"]:
            if int(parts[2]) not in kept:
                continue
            parts[2] = str(kept.index(int(parts[2])))
        renamed[".".join(parts)] = value
    missing, unexpected = encoder.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        raise CompressbenchError(f"model minilm: the packaged weights do not fit BertModel ({missing or unexpected})")
    return TextClassifier(encoder, spec.num_classes)


models.register("transformer")(
    ModelFamily(
        build_small,
        None,
        "small BERT text classifier (2 layers, 4 heads, hidden 64: 100k params beside the embeddings), trained here",
        training={"epochs": 30, "lr": 1e-3, "schedule": "cosine", "patience": 5, "batch_size": 64, "min_steps": 600},
        tokens=True,
    )
)
models.register("minilm")(
    ModelFamily(
        build_minilm,
        None,
        "all-MiniLM-L6-v2 pretrained encoder (22.7M params, 6 layers, 12 heads, hidden 384) + linear classifier, "
        "fine-tuned",
        # Fine-tuning a pretrained encoder: a small learning rate and few epochs (a larger rate forgets it).
        training={"epochs": 4, "lr": 5e-5, "schedule": "cosine", "batch_size": 32, "patience": 2},
        tokens=True,
    )
)
