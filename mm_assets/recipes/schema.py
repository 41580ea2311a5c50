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
that drops it). Unknown keys, bad values and steps that are not built yet are errors that name
the file, the key and the reason — a recipe is never half-applied.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mm_assets.taxonomy import BENCHMARKS, DOMAINS

RECIPE_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")

# Steps in the schema, and which of them this version can run. A recipe that uses a step not
# built (or switched off) is rejected as a whole rather than silently run without it.
STEP_TYPES = ("semdedup", "perplexity", "relevance", "rephrase", "mining", "decontamination")
AVAILABLE_STEPS = frozenset(STEP_TYPES)

MAX_MINING_K = 1000
Fraction = Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)]


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file, the key and the reason."""

    def __init__(self, path: str | Path, key: str, reason: str):
        self.path, self.key, self.reason = str(path), key, reason
        super().__init__(f"{path}: {key}: {reason}" if key else f"{path}: {reason}")


class StepNotAvailable(RecipeError):
    pass


class _Strict(BaseModel):
    # strict: `yes`/`true` is not a number and '0.1' (a string) is not a fraction
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SemDedupStep(_Strict):
    target_removal: Fraction | None = None
    eps: Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)] | None = None
    clusters: Literal["auto"] | int = "auto"
    keep: Literal["hardest", "easiest", "random"] = "hardest"

    @field_validator("clusters", mode="before")
    @classmethod
    def _clusters(cls, v):
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"must be 'auto' or an integer ≥ 1 (got {v!r})")

    @model_validator(mode="after")
    def _one_threshold(self):
        if (self.target_removal is None) == (self.eps is None):
            raise ValueError("give exactly one of target_removal and eps")
        return self

    def clustering(self) -> dict:
        return {"clusters": self.clusters, "keep": self.keep}

    def threshold(self) -> dict:
        return {"target_removal": self.target_removal, "eps": self.eps}


class PerplexityStep(_Strict):
    keep_fraction: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] | None = None
    slice: Literal["low", "mid", "high"] | None = None
    scorer: str = "tiny"        # "tiny": the reference model trained on the trusted pool; or a checkpoint
    by_domain: bool = False     # apply the threshold within each domain (keeps the domain mix)

    @model_validator(mode="after")
    def _one_selection(self):
        if (self.keep_fraction is None) == (self.slice is None):
            raise ValueError("give exactly one of keep_fraction and slice")
        return self


class RephraseStep(_Strict):
    """`backend`: `template` (rule-based paraphrase of questions, offline and deterministic — not
    a language model), `hf` (any local causal LM at `model`) or `vllm` (the `gpu` extra)."""
    fraction: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
    style: Literal["paraphrase", "concise", "detailed"] = "paraphrase"
    backend: Literal["template", "hf", "vllm"] = "template"
    model: str | None = None
    salt: str = "rephrase"

    @model_validator(mode="after")
    def _model_for_backend(self):
        if self.backend == "template" and self.model is not None:
            raise ValueError("the template backend takes no model")
        if self.backend != "template" and not self.model:
            raise ValueError(f"backend {self.backend!r} needs `model`: a local model path")
        if self.backend == "template" and self.style != "paraphrase":
            raise ValueError(f"the template backend only paraphrases questions (style {self.style!r} needs hf or vllm)")
        return self


class RelevanceStep(_Strict):
    """Flag image rows whose question is unrelated to the image (SigLIP2 question-image
    similarity profile, z-scored within the domain); `remove: false` only reports the flags."""
    remove: bool = True
    rule: Literal["specificity", "calibrated", "either"] = "specificity"
    z_threshold: Annotated[float, Field(ge=-10.0, le=0.0, allow_inf_nan=False)] = -2.5
    max_flag_rate: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.05


class MiningStep(_Strict):
    k: Annotated[int, Field(ge=1, le=MAX_MINING_K)]
    upsample: dict[str, Annotated[float, Field(ge=1.0, le=100.0, allow_inf_nan=False)]] = {}
    space: Literal["question", "image"] = "question"

    @field_validator("upsample")
    @classmethod
    def _benchmarks(cls, v):
        unknown = sorted(set(v) - set(BENCHMARKS))
        if unknown:
            raise ValueError(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
        return v


class DecontaminationStep(_Strict):
    """Remove training samples whose image is at least `threshold` similar to an eval item's."""
    enabled: bool = True
    threshold: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = 0.99


STEP_MODELS: dict[str, type[_Strict]] = {
    "semdedup": SemDedupStep, "perplexity": PerplexityStep, "relevance": RelevanceStep, "rephrase": RephraseStep,
    "mining": MiningStep, "decontamination": DecontaminationStep,
}


class Recipe(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    description: str = ""
    steps: tuple[tuple[str, _Strict], ...] = ()
    domain_weights: dict[str, float] = {}
    text: str = ""                      # the file as written (for lineage)

    def step(self, kind: str) -> _Strict | None:
        return next((p for k, p in self.steps if k == kind), None)

    def weight(self, domain: str) -> float:
        return self.domain_weights.get(domain, 1.0)


_TOP_KEYS = ("description", "steps", "domain_weights")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice is an error, not "the last one wins"."""

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
        raise RecipeError(path, "", f"recipe name {name!r} must match {RECIPE_NAME.pattern} (it is the file name)")
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise RecipeError(path, "", f"not valid YAML: {exc}".replace("\n", " ")) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise RecipeError(path, "", f"a recipe is a mapping of {list(_TOP_KEYS)}, got {type(doc).__name__}")
    for key in doc:
        if key not in _TOP_KEYS:
            raise RecipeError(path, str(key), f"unknown key; allowed: {list(_TOP_KEYS)}")
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise RecipeError(path, "description", f"must be a string, got {type(description).__name__}")
    raw_steps = doc.get("steps")
    raw_steps = [] if raw_steps is None else raw_steps
    if not isinstance(raw_steps, list):
        raise RecipeError(path, "steps", f"must be a list of steps, got {type(raw_steps).__name__}")
    steps: list[tuple[str, _Strict]] = []
    for i, entry in enumerate(raw_steps):
        where = f"steps[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise RecipeError(path, where, "each step is a mapping with exactly one key, the step type "
                                           f"(one of {list(STEP_TYPES)})")
        (kind, params), = entry.items()
        if kind not in STEP_MODELS:
            raise RecipeError(path, where, f"unknown step type {kind!r}; known: {list(STEP_TYPES)}")
        if any(k == kind for k, _ in steps):
            raise RecipeError(path, f"{where}.{kind}", "step listed twice; a recipe runs each step once")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RecipeError(path, f"{where}.{kind}", f"parameters must be a mapping, got {type(params).__name__}")
        try:
            model = STEP_MODELS[kind].model_validate(params)
        except ValidationError as exc:
            loc, msg = _pydantic_reason(exc)
            raise RecipeError(path, f"{where}.{kind}" + (f".{loc}" if loc else ""), msg) from None
        steps.append((kind, model))
    weights = doc.get("domain_weights")
    weights = {} if weights is None else weights
    if not isinstance(weights, dict):
        raise RecipeError(path, "domain_weights", f"must be a mapping domain → weight, got {type(weights).__name__}")
    for domain, w in weights.items():
        if domain not in DOMAINS:
            raise RecipeError(path, f"domain_weights.{domain}", f"unknown domain; known: {list(DOMAINS)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 <= w <= 100:
            raise RecipeError(path, f"domain_weights.{domain}", f"must be a number in [0, 100], got {w!r}")
    for i, (kind, _) in enumerate(steps):
        if kind not in AVAILABLE_STEPS:
            raise StepNotAvailable(path, f"steps[{i}].{kind}",
                                   f"step {kind!r} is not available yet in this version "
                                   f"(available: {sorted(AVAILABLE_STEPS)}); the recipe is not run")
    return Recipe(name=name, description=description, steps=tuple(steps),
                  domain_weights={d: float(w) for d, w in sorted(weights.items())}, text=text)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(path, "", "not UTF-8 text") from None
    return parse_recipe(text, path.stem, path)


def recipe_files(directory: str | Path) -> dict[str, Path]:
    d = Path(directory)
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def load_recipes(directory: str | Path) -> dict[str, Recipe | RecipeError]:
    """Every recipe in a directory: the parsed recipe, or the error that rejects it."""
    out: dict[str, Recipe | RecipeError] = {}
    for name, path in recipe_files(directory).items():
        try:
            out[name] = load_recipe(path)
        except RecipeError as exc:
            out[name] = exc
    return out
