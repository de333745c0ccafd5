"""Texts to a model's inputs with the tokenizer of its Hugging Face folder, as declared in the preprocessing:
`{"kind": "tokenizer", "folder": ..., "max_length": L, "inputs": [...]}` — padded and truncated to L tokens, every
input (input_ids, attention_mask, token_type_ids) int64, packed along axis 1 in the declared order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressbench.errors import CompressbenchError
from compressbench.models.transformer import transformers_offline


def load_tokenizer(folder: Path | str) -> Any:
    """The folder's own tokenizer (tokenizer.json, or vocab files), never a hub download."""
    AutoTokenizer = transformers_offline().AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:
        raise CompressbenchError(
            f"model {folder}: no tokenizer could be read from the folder (tokenizer.json, or vocab.txt with "
            f"tokenizer_config.json): {str(error).splitlines()[0]}"
        ) from None


@dataclass(frozen=True)
class Tokenizing:
    tokenizer: Any
    max_length: int
    input_names: tuple[str, ...]

    @classmethod
    def of(cls, preprocessing: dict[str, Any], source: str) -> Tokenizing:
        if preprocessing.get("kind") != "tokenizer":
            raise CompressbenchError(
                f"{source}: a column of texts needs a model that declares its tokenizer (a Hugging Face folder); "
                "for numeric features leave out --text-column and the 'text' column"
            )
        return cls(load_tokenizer(preprocessing["folder"]), int(preprocessing["max_length"]),
                   tuple(preprocessing["inputs"]))  # fmt: skip

    @property
    def sample_shape(self) -> tuple[int, int]:
        return (len(self.input_names), self.max_length)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def __call__(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_length,
                                 return_tensors="np")  # fmt: skip
        return np.stack([np.asarray(encoded[name], np.int64) for name in self.input_names], axis=1)
