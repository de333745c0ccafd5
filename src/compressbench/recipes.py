"""A recipe is an ordered list of technique steps with validated configs, checked before anything runs."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from compressbench.artifacts import TORCH, describe_kind
from compressbench.errors import CompressbenchError
from compressbench.files import read_yaml_mapping
from compressbench.registry import unknown_name_message
from compressbench.techniques import Need, Technique, TechniqueConfig, techniques

RECIPE_DIR = Path(__file__).parent / "recipe_files"
# Not a recipe: the named recipes without a file of their own, and the workflows' shortlists (see the file).
TABLE = RECIPE_DIR / "shortlists.yaml"
NO_COMPRESSION = "none"


@dataclass(frozen=True)
class Step:
    technique: type[Technique]
    config: TechniqueConfig

    def build(self) -> Technique:
        return self.technique(self.config)

    def canonical(self) -> dict[str, Any]:
        """The step with every default filled in, and its family (derived from the technique, so not hashed)."""
        return {
            "technique": self.technique.name,
            "family": self.technique.family,
            **self.config.model_dump(mode="json"),
        }

    def needs(self) -> frozenset[Need]:
        return self.technique.needs_for(self.config)


@dataclass(frozen=True)
class Recipe:
    name: str
    steps: tuple[Step, ...]

    def canonical(self) -> dict[str, Any]:
        """The full recipe with every default filled in: what a stored run keeps and what its key hashes."""
        return {"name": self.name, "steps": [step.canonical() for step in self.steps]}

    @property
    def seeded(self) -> bool:
        """Whether a seed changes the model it makes (not when no step is seeded: `none`, dynamic int8)."""
        return any(step.technique.seeded for step in self.steps)

    def needs(self) -> frozenset[Need]:
        """What its steps need of the input (a train split, attention layers, ...): what a shortlist filters on."""
        return frozenset().union(*(step.needs() for step in self.steps))


def builtin_recipes() -> dict[str, Path]:
    """The recipe files shipped with the package, by name (the shortlists table is not one)."""
    return {path.stem: path for path in sorted(RECIPE_DIR.glob("*.yaml")) if path != TABLE}


def named_recipes() -> dict[str, dict[str, Any]]:
    """The table's named recipes (those without a file of their own), by name, each a dict of a recipe file's shape."""
    return {name: {"name": name, **entry} for name, entry in _table()["recipes"].items()}


def shortlist_names(shortlist: str) -> list[str]:
    """A shortlist of the table (`auto`, `search`): recipe names, in order."""
    shortlists = _table()["shortlists"]
    if shortlist not in shortlists:
        raise CompressbenchError(unknown_name_message("shortlist", shortlist, list(shortlists)))
    return list(shortlists[shortlist])


@cache
def _table() -> dict[str, Any]:
    document = read_yaml_mapping(TABLE, "recipe table", expected="a mapping with 'recipes' and 'shortlists'")
    recipes, shortlists = document.get("recipes"), document.get("shortlists")
    if not isinstance(recipes, dict) or not all(isinstance(entry, dict) for entry in recipes.values()):
        raise CompressbenchError(f"{TABLE}: 'recipes' must map each name to a recipe (description, steps)")
    if not isinstance(shortlists, dict) or not all(isinstance(names, list) for names in shortlists.values()):
        raise CompressbenchError(f"{TABLE}: 'shortlists' must map each shortlist to a list of recipe names")
    clash = sorted(set(recipes) & (set(builtin_recipes()) | set(techniques.names()) | {NO_COMPRESSION}))
    if clash:
        raise CompressbenchError(f"{TABLE}: {clash} already name a recipe file or a technique; choose another name")
    return document


def list_recipes() -> list[str]:
    return [NO_COMPRESSION, *builtin_recipes(), *named_recipes(), *techniques.names()]


def load_recipe(reference: str | dict[str, Any] | Recipe) -> Recipe:
    """A recipe from a technique name, a built-in recipe name, a YAML file, or a dict of the YAML's shape."""
    if isinstance(reference, Recipe):
        return reference
    if isinstance(reference, dict):
        return recipe_from_dict(reference, source="recipe")
    if reference == NO_COMPRESSION:
        return Recipe(NO_COMPRESSION, ())
    if reference in techniques:
        return recipe_from_dict({"name": reference, "steps": [{"technique": reference}]}, source=reference)
    named = named_recipes()
    if reference in named:
        return recipe_from_dict(named[reference], source=f"{TABLE.name}: {reference}")
    builtin = builtin_recipes()
    path = builtin.get(reference) or Path(reference)
    if path.suffix in (".yaml", ".yml"):
        document = read_yaml_mapping(path, "recipe", expected="a mapping with 'steps'")
        return recipe_from_dict(document, source=str(path))
    raise CompressbenchError(unknown_name_message("recipe", reference, list_recipes()))


def recipe_from_dict(document: dict[str, Any], source: str) -> Recipe:
    unknown = set(document) - {"name", "steps", "description"}
    if unknown:
        raise CompressbenchError(f"{source}: unknown key(s) {sorted(unknown)}; a recipe has name, description, steps")
    raw_steps = document.get("steps")
    if not isinstance(raw_steps, list):
        raise CompressbenchError(f"{source}: 'steps' must be a list of steps")
    steps = []
    for number, raw in enumerate(raw_steps, start=1):
        if not isinstance(raw, dict) or "technique" not in raw:
            raise CompressbenchError(f"{source}: step {number} must be a mapping with a 'technique' key")
        options = dict(raw)
        name = options.pop("technique")
        options.pop("family", None)  # a stored canonical recipe carries it; the technique decides it
        try:
            technique = techniques.get(name)
        except CompressbenchError as error:
            raise CompressbenchError(f"{source}: step {number}: {error}") from None
        steps.append(Step(technique, validate_config(technique, options, f"{source}: step {number} ({name})")))
    recipe = Recipe(str(document.get("name", source)), tuple(steps))
    check_recipe(recipe, source)
    return recipe


def validate_config(technique: type[Technique], options: dict[str, Any], where: str) -> TechniqueConfig:
    """Validate step options; the error names the step and the field, with a close match for a misspelt field."""
    try:
        return technique.Config(**options)
    except ValidationError as error:
        # For a union field ('auto' or a list) pydantic reports one error per member, tagged with the member's type
        # in the location: keep the most specific one and drop the tags, so the field reads 'op_types.0'.
        first = max(error.errors(), key=lambda e: len(e["loc"]))
        field = ".".join(str(part) for part in first["loc"] if "[" not in str(part)) or "config"
        hint = ""
        if first["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(first["loc"][0]), list(technique.Config.model_fields), n=1)
            hint = (
                f"; did you mean {close[0]!r}?" if close else f" (fields: {', '.join(technique.Config.model_fields)})"
            )
        raise CompressbenchError(f"{where}: field {field!r}: {first['msg']}{hint}") from None


def check_recipe(recipe: Recipe, source: str) -> None:
    """A step must get the artifact kind it consumes (a torch module after an ONNX graph will not do); name both."""
    kind, producer = TORCH, "the model given"
    for number, step in enumerate(recipe.steps, start=1):
        earlier = {s.technique.name for s in recipe.steps[: number - 1]}
        for required in step.technique.requires:
            if required not in earlier:
                raise CompressbenchError(
                    f"{source}: step {number} ({step.technique.name}) needs a {required} step before it"
                )
        if step.technique.consumes != kind:
            raise CompressbenchError(
                f"{source}: step {number} ({step.technique.name}) needs {describe_kind(step.technique.consumes)}, "
                f"but {producer} produced {describe_kind(kind)}; put {step.technique.name} earlier"
            )
        if step.technique.produces != kind:
            kind, producer = step.technique.produces, f"step {number} ({step.technique.name})"


def final_form(recipe: Recipe) -> tuple[str, str]:
    """The artifact kind a recipe leaves and the precision it asks for: what a runtime must serve."""
    kind, precision = TORCH, "fp32"
    for step in recipe.steps:
        kind = step.technique.produces
        precision = step.technique.precision or precision
    return kind, precision
