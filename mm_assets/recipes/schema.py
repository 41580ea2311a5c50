"""Curation recipes: YAML files validated by a strict schema (no Dagster here).

A recipe is an ordered list of steps plus domain weights:

```yaml
description: SemDeDup at 10 % removal
steps:
  - semdedup: {target_removal: 0.10, clusters: auto, keep: hardest}
domain_weights: {chart: 1.5}
```

Every step decides on the full sample pool, from scores stored once per input version; the
curated dataset applies the decisions in the listed order (a sample leaves at the first step
that drops it). The step keys and their parameters come from the step registry
(`mm_assets/steps.py`). Unknown keys and steps, bad values, YAML aliases and oversized files are
errors that name the file, the key and the reason — a recipe is never half-applied.

```yaml
training: {auto: true, budget_tokens: 400000, seeds: [0, 1, 2]}   # optional: retrain on change; the
                                                                  # token budget; one run per seed
```
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mm_assets.recipes.params import StepParams
from mm_assets.taxonomy import DOMAINS

RECIPE_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")
MAX_RECIPE_BYTES = 64 << 10          # a recipe is a few lines; anything larger is not one


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file, the key and the reason."""

    def __init__(self, path: str | Path, key: str, reason: str):
        self.path, self.key, self.reason = str(path), key, reason
        super().__init__(f"{path}: {key}: {reason}" if key else f"{path}: {reason}")


def check_seeds(seeds: list[int]) -> list[int]:
    """Training seeds: at least one, each a non-negative integer below 2**32, each listed once
    (each seed is one training run)."""
    if not seeds:
        raise ValueError("at least one seed: a list of distinct non-negative integers, e.g. [0, 1, 2]")
    bad = next((s for s in seeds if not 0 <= s < 2**32), None)
    if bad is not None:
        raise ValueError(f"seed {bad} is not a non-negative integer below 2**32")
    twice = next((s for s in seeds if seeds.count(s) > 1), None)
    if twice is not None:
        raise ValueError(f"seed {twice} is listed twice; each seed is one training run")
    return seeds


class TrainingParams(StepParams):
    """`training:` — whether a changed curated dataset retrains automatically, the training
    budget in tokens and the training seeds, one run per seed (defaults: the training
    resource's, the same for every recipe)."""
    auto: bool = True
    budget_tokens: Annotated[int, Field(ge=1000, le=10**15)] | None = None
    seeds: list[int] | None = None

    @field_validator("seeds")
    @classmethod
    def _seeds_listed_once(cls, seeds: list[int] | None) -> list[int] | None:
        return None if seeds is None else check_seeds(seeds)


def _step_models() -> dict[str, type[StepParams]]:
    from mm_assets.steps import STEPS
    return {s.kind: s.params for s in STEPS}


class Recipe(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    description: str = ""
    steps: tuple[tuple[str, StepParams], ...] = ()
    domain_weights: dict[str, float] = {}
    training: TrainingParams = TrainingParams()
    text: str = ""                      # the file as written (for lineage)

    def step(self, kind: str) -> StepParams | None:
        return next((p for k, p in self.steps if k == kind), None)

    def weight(self, domain: str) -> float:
        return self.domain_weights.get(domain, 1.0)


_TOP_KEYS = ("description", "steps", "domain_weights", "training")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice is an error, not "the last one wins",
    and that aliases are refused: a recipe needs none, and a few hundred bytes of nested
    aliases expand to gigabytes (the "billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"YAML alias *{event.anchor} is not allowed in a recipe",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _pydantic_reason(err: ValidationError) -> tuple[str, str]:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    if "input" in e and e["type"] not in ("extra_forbidden", "missing") and not isinstance(e["input"], dict) \
            and "(got " not in msg:
        msg += f" (got {e['input']!r})"
    return loc, msg


def parse_recipe(text: str, name: str, path: str | Path = "<recipe>") -> Recipe:
    """Validate one recipe's YAML text; raises RecipeError naming the file, key and reason."""
    if not RECIPE_NAME.match(name):
        raise RecipeError(path, "", f"recipe name {name[:80]!r} must match {RECIPE_NAME.pattern} (it is the file name)")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_RECIPE_BYTES:
        raise RecipeError(path, "", f"{len(text)} characters; a recipe is at most {MAX_RECIPE_BYTES} bytes")
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise RecipeError(path, "", f"not valid YAML: {str(exc)[:500]}".replace("\n", " ")) from None
    except RecursionError:
        raise RecipeError(path, "", "not valid YAML: nested too deeply") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise RecipeError(path, "", f"a recipe is a mapping of {list(_TOP_KEYS)}, got {type(doc).__name__}")
    for key in doc:
        if key not in _TOP_KEYS:
            raise RecipeError(path, str(key)[:80], f"unknown key; allowed: {list(_TOP_KEYS)}")
    models = _step_models()
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise RecipeError(path, "description", f"must be a string, got {type(description).__name__}")
    raw_steps = doc.get("steps")
    raw_steps = [] if raw_steps is None else raw_steps
    if not isinstance(raw_steps, list):
        raise RecipeError(path, "steps", f"must be a list of steps, got {type(raw_steps).__name__}")
    steps: list[tuple[str, StepParams]] = []
    for i, entry in enumerate(raw_steps):
        where = f"steps[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise RecipeError(path, where, "each step is a mapping with exactly one key, the step type "
                                           f"(one of {list(models)})")
        (kind, params), = entry.items()
        if kind not in models:
            raise RecipeError(path, where, f"unknown step type {str(kind)[:80]!r}; known: {list(models)}")
        if any(k == kind for k, _ in steps):
            raise RecipeError(path, f"{where}.{kind}", "step listed twice; a recipe runs each step once")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RecipeError(path, f"{where}.{kind}", f"parameters must be a mapping, got {type(params).__name__}")
        try:
            model = models[kind].model_validate(params)
        except ValidationError as exc:
            loc, msg = _pydantic_reason(exc)
            raise RecipeError(path, f"{where}.{kind}" + (f".{loc}" if loc else ""), msg) from None
        steps.append((kind, model))
    training = doc.get("training")
    training = {} if training is None else training
    if not isinstance(training, dict):
        raise RecipeError(path, "training", f"must be a mapping, got {type(training).__name__}")
    try:
        training = TrainingParams.model_validate(training)
    except ValidationError as exc:
        loc, msg = _pydantic_reason(exc)
        raise RecipeError(path, "training" + (f".{loc}" if loc else ""), msg) from None
    weights = doc.get("domain_weights")
    weights = {} if weights is None else weights
    if not isinstance(weights, dict):
        raise RecipeError(path, "domain_weights", f"must be a mapping domain → weight, got {type(weights).__name__}")
    for domain, w in weights.items():
        if domain not in DOMAINS:
            raise RecipeError(path, f"domain_weights.{str(domain)[:80]}", f"unknown domain; known: {list(DOMAINS)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 <= w <= 100:
            raise RecipeError(path, f"domain_weights.{domain}", f"must be a number in [0, 100], got {w!r}")
    return Recipe(name=name, description=description, steps=tuple(steps),
                  domain_weights={d: float(w) for d, w in sorted(weights.items())}, training=training, text=text)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(path, "", "not a regular file" if path.exists() else "recipe file not found")
    with open(path, "rb") as f:          # never read more than a recipe can be
        data = f.read(MAX_RECIPE_BYTES + 1)
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError(path, "", f"larger than {MAX_RECIPE_BYTES} bytes; a recipe is a few lines of YAML")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError(path, "", "not UTF-8 text") from None
    return parse_recipe(text, path.stem, path)


def recipe_files(directory: str | Path) -> dict[str, Path]:
    """Every `*.yaml` entry of the directory by recipe name (what is not a regular file is listed
    too, and rejected by `load_recipe` with its reason)."""
    d = Path(directory)
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def load_recipes(directory: str | Path) -> dict[str, Recipe | RecipeError]:
    """Every recipe in a directory: the parsed recipe, or the error that rejects it."""
    out: dict[str, Recipe | RecipeError] = {}
    inside = Path(directory).resolve()
    for name, path in recipe_files(directory).items():
        try:
            if path.is_symlink() and not path.resolve().is_relative_to(inside):
                # an error would quote the target's content; a recipe lives in the directory
                raise RecipeError(path, "", "a link to a file outside the recipes directory")
            out[name] = load_recipe(path)
        except RecipeError as exc:
            out[name] = exc
    return out
