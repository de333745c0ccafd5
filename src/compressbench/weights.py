"""A user's trained weights: read from safetensors or a state dict (never by unpickling code), checked against the
module they are for, and fingerprinted by content so a run's key changes when the weights do."""

from __future__ import annotations

import functools
import hashlib
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from compressbench.errors import CompressbenchError

# Checkpoints often nest the state dict under one of these keys (with the optimiser's state beside it).
NESTED_KEYS = ("state_dict", "model_state_dict", "model")
LISTED = 8  # names shown per kind of mismatch


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def _fingerprint(path: str, size: int, modified_ns: int) -> str:
    return file_sha256(path)


def weights_fingerprint(path: Path | str) -> str:
    """The SHA-256 of a weights file (hashed once per process while the file is unchanged); a missing file is
    refused by name."""
    if not Path(path).is_file():
        raise CompressbenchError(f"weights {path}: no such file")
    stat = Path(path).stat()
    return _fingerprint(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def read_weights(path: Path | str) -> dict[str, torch.Tensor]:
    """The tensors of a `.safetensors` file or of a state dict saved with `torch.save` (read with
    `weights_only=True`); a pickled whole model, or a checkpoint whose tensors cannot be found, is refused."""
    path = Path(path)
    if not path.is_file():
        raise CompressbenchError(f"weights {path}: no such file")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as error:
            raise CompressbenchError(f"weights {path}: not a readable safetensors file ({error})") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = (
            str(error).split("Unsupported global:")[-1].split("was not")[0].strip() if "global" in str(error) else ""
        )
        raise CompressbenchError(
            f"weights {path}: a pickled object{f' ({found})' if found else ''}, not a state dict; loading it would "
            "run its code. Save torch.save(model.state_dict(), path) or safetensors.torch.save_file(...)"
        ) from None
    except Exception as error:
        raise CompressbenchError(f"weights {path}: not a torch state dict or safetensors file ({error})") from None
    return _state_dict(loaded, path)


def _state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return dict(loaded)
    if isinstance(loaded, dict):
        for key in NESTED_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
        keys = ", ".join(map(str, list(loaded)[:LISTED]))
        raise CompressbenchError(
            f"weights {path}: a dict without a state dict of tensors (top-level keys: {keys}; looked under "
            f"{', '.join(NESTED_KEYS)})"
        )
    raise CompressbenchError(f"weights {path}: holds a {type(loaded).__name__}, not a state dict")


def load_weights(module: nn.Module, path: Path | str) -> nn.Module:
    """Load the file's weights into `module` exactly: every missing, unexpected or mis-shaped key is listed in one
    error. A `module.` prefix on every key (a model saved inside DataParallel) is taken off."""
    inner = getattr(module, "input_names", None) and getattr(module, "model", None)
    if isinstance(inner, nn.Module):  # models.NamedInputs: the weights are the wrapped module's, as the user saved it
        load_weights(inner, path)
        return module
    state = read_weights(path)
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} (model: {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = [
        f"{label}: {', '.join(names[:LISTED])}{f' and {len(names) - LISTED} more' if len(names) > LISTED else ''}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped))
        if names
    ]
    if problems:
        raise CompressbenchError(f"weights {path} do not fit the model: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)
    return module.eval()
