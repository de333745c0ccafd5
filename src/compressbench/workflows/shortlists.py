"""Shortlists from data: the recipes a workflow tries are a list in the recipe table (recipe_files/shortlists.yaml),
kept where the input meets what their steps need (`techniques.Need`, declared by each technique). What is left out is
named once, with the first need it misses, so a new technique reaches a shortlist by its file, its registration and
a line in the table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from compressbench.imports import accepted_keywords, is_user_reference, load_reference
from compressbench.models import model_source_of
from compressbench.recipes import Recipe, load_recipe, shortlist_names
from compressbench.techniques import Need


@dataclass(frozen=True)
class LeftOut:
    """A recipe of the shortlist the input cannot take, with every need it misses (in `Need`'s order)."""

    recipe: str
    unmet: tuple[Need, ...]

    @property
    def reason(self) -> str:
        """Why, in a sentence: the first (most basic) need it misses."""
        return self.unmet[0].unmet

    def __str__(self) -> str:
        return f"{self.recipe} ({self.reason})"


def shortlist(name: str, meets: Iterable[Need]) -> tuple[list[Recipe], list[LeftOut]]:
    """The table's shortlist `name`, in order: the recipes whose needs are all in `meets`, and those left out."""
    met = frozenset(meets)
    chosen: list[Recipe] = []
    left_out: list[LeftOut] = []
    for reference in shortlist_names(name):
        recipe = load_recipe(reference)
        unmet = tuple(need for need in Need if need in recipe.needs() - met)
        if unmet:
            left_out.append(LeftOut(recipe.name, unmet))
        else:
            chosen.append(recipe)
    return chosen, left_out


def input_meets(module: nn.Module | None, *, factory: str | None, train_split: bool) -> frozenset[Need]:
    """The needs an input meets. `module`: the model as torch code (None for an ONNX graph); `factory`: the zoo
    family or `file.py:function` it can be rebuilt from at another width / depth (None for a module instance or a
    graph); `train_split`: the data has training samples. The machine's side (OpenVINO, the CPU's bf16 / fp16) is
    read here."""
    from compressbench.measure.environment import cpu_info
    from compressbench.models.transformer import attention_layers
    from compressbench.runtime import installed_runtimes
    from compressbench.techniques.precision import NATIVE_FLAGS

    meets: set[Need] = set()
    if train_split:
        meets.add(Need.TRAIN_SPLIT)
    if module is not None:
        meets.add(Need.TORCH_MODULE)
        meets.add(Need.ATTENTION_LAYERS if attention_layers(module) else Need.NO_ATTENTION_LAYERS)
    if module is not None and factory is not None:
        # A zoo family builds at any width (and depth where it has blocks); a user's factory when it takes them.
        if (source := model_source_of(factory)) is not None:  # a Hugging Face folder drops layers; no width
            accepted = set(source.rebuilds)
        elif is_user_reference(factory):
            accepted = accepted_keywords(load_reference(factory, what="model"))
        else:
            accepted = {"*"}
        for need, keyword in ((Need.WIDTH_FACTORY, "width"), (Need.DEPTH_FACTORY, "depth")):
            if keyword in accepted or "*" in accepted:
                meets.add(need)
    if "openvino" in installed_runtimes():
        meets.add(Need.OPENVINO)
    flags = set(cpu_info()["flags"])
    for need, precision in ((Need.BF16_CPU, "bf16"), (Need.FP16_CPU, "fp16")):
        if flags & set(NATIVE_FLAGS[precision]):
            meets.add(need)
    return frozenset(meets)


__all__ = ["LeftOut", "input_meets", "shortlist"]
