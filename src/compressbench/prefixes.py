"""Recipe prefixes computed once: the candidate after a recipe's first steps, cached by everything that made it.

Recipes that begin with the same steps on the same baseline (`prune.channels-50` and `prune+quant`, `distill.kd` and
`distill+prune+quant`, a search's trials that quantize one pruned, fine-tuned model several ways) fine-tune that
model once. Only torch candidates are kept, and without pickle: the weights as safetensors; the records, flags and
the module attributes a structural step changed (a pruned convolution's `out_channels`) as JSON. Loading rebuilds the
module from the baseline's structure and checks it against logits saved with it, so a model the rebuild cannot
reproduce (a custom module keeping sizes in private fields) is computed again rather than measured wrong.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from compressbench.artifacts import Candidate
from compressbench.hashing import config_hash
from compressbench.modes import evaluating

PREFIXES = "prefixes"
CHECK_SAMPLES = 64  # validation inputs whose logits a loaded prefix must reproduce
_SIMPLE = (bool, int, float, str)


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state: a prefix computed from other baseline weights (retrained) is another prefix."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def prefix_key(job_identity: dict[str, Any], steps: list[dict[str, Any]], baseline_digest: str) -> str:
    """The key of the candidate after `steps` (canonical, in order) of a job with this identity. The recipe's name
    is left out: two recipes share a prefix whenever their first steps are the same."""
    identity = {k: v for k, v in job_identity.items() if k != "recipe"}
    identity["prefix_steps"] = [{k: v for k, v in step.items() if k != "family"} for step in steps]
    identity["baseline_weights"] = baseline_digest
    return config_hash(identity)


def save_prefix(root: Path, key: str, candidate: Candidate, reference: nn.Module, check_inputs: torch.Tensor) -> bool:
    """Store `candidate` under `key`; False (nothing stored) when it cannot be kept faithfully without pickle."""
    entries = _entries(candidate, reference, check_inputs)
    if entries is None:
        return False
    folder = root / PREFIXES
    folder.mkdir(parents=True, exist_ok=True)
    for name, (tensors, meta) in entries.items():
        stem = f"{key}.{name}" if name else key
        tmp_weights, tmp_meta = folder / f"{stem}.{os.getpid()}.tmp", folder / f"{stem}.{os.getpid()}.jtmp"
        save_file(tensors, tmp_weights)
        tmp_meta.write_text(json.dumps(meta))
        tmp_weights.replace(folder / f"{stem}.safetensors")
        tmp_meta.replace(folder / f"{stem}.json")  # the metadata last: its presence says the entry is whole
    return True


def load_prefix(root: Path, key: str, reference: nn.Module, check_inputs: torch.Tensor) -> Candidate | None:
    """The candidate stored under `key`, or None when absent or when the rebuilt module does not reproduce it."""
    return _load(root / PREFIXES, key, reference, check_inputs)


def _entries(candidate: Candidate, reference: nn.Module, check_inputs: torch.Tensor) -> dict | None:
    if candidate.artifact is not None or not _plain(candidate.module):
        return None
    tensors = {k: v.detach().contiguous().clone() for k, v in candidate.module.state_dict().items()}
    if set(tensors) != set(reference.state_dict()):
        return None  # another structure (a student of another depth): not rebuildable from the baseline
    with evaluating(candidate.module), torch.no_grad():
        tensors["__check_logits__"] = candidate.module(check_inputs).detach().contiguous()
    meta = {
        "attributes": _changed_attributes(candidate.module, reference),
        "precision": candidate.precision,
        "records": candidate.records,
        "flags": candidate.flags,
        "companions": sorted(candidate.companions),
    }
    try:
        json.dumps(meta)
    except TypeError:
        return None
    entries = {"": (tensors, meta)}
    for name, companion in candidate.companions.items():
        if companion.companions or (inner := _entries(companion, reference, check_inputs)) is None:
            return None
        entries[name] = inner[""]
    return entries


def _load(folder: Path, stem: str, reference: nn.Module, check_inputs: torch.Tensor) -> Candidate | None:
    weights, meta_path = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    if not (weights.is_file() and meta_path.is_file()):
        return None
    meta = json.loads(meta_path.read_text())
    tensors = load_file(weights)
    expected = tensors.pop("__check_logits__")
    module = _rebuild(reference, tensors, meta["attributes"])
    with torch.no_grad():
        if module is None or not torch.allclose(module(check_inputs), expected, rtol=1e-4, atol=1e-5):
            return None
    companions = {}
    for name in meta["companions"]:
        if (companion := _load(folder, f"{stem}.{name}", reference, check_inputs)) is None:
            return None
        companions[name] = companion
    return Candidate(
        module=module,
        precision=meta["precision"],
        records=meta["records"],
        flags=meta["flags"],
        companions=companions,
    )


def _plain(module: nn.Module) -> bool:
    """Whether the state dict and public attributes say everything: no hooks, parametrizations or tied weights."""
    pointers = [t.data_ptr() for t in module.state_dict().values() if t.numel()]
    return len(pointers) == len(set(pointers)) and not any(
        m._forward_pre_hooks or m._forward_hooks or parametrize.is_parametrized(m) for m in module.modules()
    )


def _simple_attributes(module: nn.Module) -> dict[str, Any]:
    attributes = {}
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, _SIMPLE) or (isinstance(value, tuple) and all(isinstance(v, _SIMPLE) for v in value)):
            attributes[name] = value
    return attributes


def _changed_attributes(module: nn.Module, reference: nn.Module) -> dict[str, dict[str, Any]]:
    """Per submodule, the simple public attributes whose values differ from the baseline's (sizes a step changed)."""
    originals = dict(reference.named_modules())
    changed = {}
    for name, sub in module.named_modules():
        before = _simple_attributes(originals[name]) if name in originals else {}
        after = {k: list(v) if isinstance(v, tuple) else v for k, v in _simple_attributes(sub).items()}
        diff = {k: v for k, v in after.items() if before.get(k, None) != (tuple(v) if isinstance(v, list) else v)}
        if diff:
            changed[name] = diff
    return changed


def _rebuild(reference: nn.Module, tensors: dict[str, torch.Tensor], attributes: dict) -> nn.Module | None:
    module = copy.deepcopy(reference)
    if set(module.state_dict()) != set(tensors):
        return None
    for name, value in tensors.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        if leaf in owner._parameters:
            owner._parameters[leaf] = nn.Parameter(value, requires_grad=owner._parameters[leaf].requires_grad)
        else:
            owner._buffers[leaf] = value
    for owner_name, changed in attributes.items():
        owner = module.get_submodule(owner_name)
        for attribute, value in changed.items():
            setattr(owner, attribute, tuple(value) if isinstance(value, list) else value)
    return module.eval()
