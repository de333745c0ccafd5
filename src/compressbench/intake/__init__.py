"""What users bring, turned into a model and data: Hugging Face folders and timm architectures (model sources),
CSV / JSONL / Parquet tables, .npz arrays and image folders (data sources), each registered with the model and data
layers on import, and the preprocessing a model declares for its data (`preprocessing_for`)."""

from __future__ import annotations

from typing import Any

from compressbench.errors import CompressbenchError
from compressbench.intake import arrays, hf, images, tables, timm_models  # noqa: F401 (registers the sources)

__all__ = ["preprocessing_for"]


def preprocessing_for(model: str, weights: str | None = None, *, sequence_length: int | None = None,
                      image: dict[str, Any] | None = None) -> dict[str, Any] | None:  # fmt: skip
    """How the data is turned into this model's inputs: a Hugging Face folder's tokenizer, timm's data config, or
    the image preprocessing the user declares (`image`: size, mean, std, ... over the defaults) for another model."""
    if hf.is_hf_folder(model):
        return hf.preprocessing(model, sequence_length)
    declared = timm_models.preprocessing(model, weights) if timm_models.is_timm(model) and weights else None
    if image:
        declared = {"kind": "image", "scale": 1 / 255, "channels": "RGB", "layout": "NCHW", **(declared or {}),
                    **image}  # fmt: skip
        if "size" not in declared:
            raise CompressbenchError("image preprocessing: give its size (--image-size HEIGHT WIDTH)")
    return declared
