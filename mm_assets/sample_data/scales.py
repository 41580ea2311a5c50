"""Size presets for the generated data set, and the mix of planted defects."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from fractions import Fraction


@dataclass(frozen=True)
class PlantedMix:
    """How many defects the generator plants (the defaults are the shipped demo's mix).

    `near_duplicate_rate`, `low_quality_rate` and `fixable_rate` are shares of each domain's main
    records; `leak_rate` is the share of each benchmark's eval items copied into the main data
    (at least one item per benchmark while it is above 0); `unrelated_chart_share` is the share
    of chart-domain low-quality records that are unrelated questions (an invented data table);
    the rest of the chart ones, like every other domain's, are wrong, garbled or truncated answers.
    `refusal_share` is the share of every domain's low-quality records whose answers are all
    replaced by a refusal ("I'm sorry, I cannot answer that question."); drawn before the
    domain's other kinds, so 0 leaves the draw as it always was.
    """
    near_duplicate_rate: float = 0.12
    low_quality_rate: float = 0.05
    fixable_rate: float = 0.01
    leak_rate: float = 0.02
    unrelated_chart_share: float = 0.5
    refusal_share: float = 0.0

    MAIN_SHARES = ("near_duplicate_rate", "low_quality_rate", "fixable_rate")

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"PlantedMix.{f.name} must be a finite number, got {v!r}")
            if v < 0:
                raise ValueError(f"PlantedMix.{f.name} must be >= 0, got {v!r}")
        for name in ("leak_rate", "unrelated_chart_share", "refusal_share"):
            if getattr(self, name) > 1:
                raise ValueError(f"PlantedMix.{name} is a share and must be <= 1, got {getattr(self, name)!r}")
        total = sum(getattr(self, name) for name in self.MAIN_SHARES)
        if total >= 0.9:
            raise ValueError(
                "PlantedMix: the shares of main records "
                + " + ".join(f"{n}={getattr(self, n)!r}" for n in self.MAIN_SHARES)
                + f" = {total:.4g} must stay below 0.9")

    def as_dict(self) -> dict:
        return asdict(self)

    def chart_low_quality_kinds(self) -> tuple[str, ...]:
        """Kinds to draw a chart record's low-quality kind from, uniformly.

        The share s = p/q (to 1/1000) becomes 3p unrelated questions and q - p of each other
        kind, so the default 1/2 gives the six-entry tuple the generator has always drawn from.
        """
        share = Fraction(self.unrelated_chart_share).limit_denominator(1000)
        p, q = share.numerator, share.denominator
        return ("unrelated_question",) * (3 * p) + \
            ("wrong_answer",) * (q - p) + ("garbled_answer",) * (q - p) + ("truncated_answer",) * (q - p)


def planted_mix(base: PlantedMix, override: PlantedMix | dict | None) -> PlantedMix:
    """`override` as a whole mix, or a dict of fields replacing those of `base`."""
    if override is None:
        return base
    if isinstance(override, PlantedMix):
        return override
    if isinstance(override, dict):
        unknown = set(override) - {f.name for f in fields(PlantedMix)}
        if unknown:
            raise ValueError(f"unknown PlantedMix field(s) {sorted(unknown)}; expected "
                             f"{[f.name for f in fields(PlantedMix)]}")
        return replace(base, **override)
    raise TypeError(f"mix must be a PlantedMix or a dict, got {type(override).__name__}")


@dataclass(frozen=True)
class Scale:
    name: str
    records_per_domain: int   # main records per domain, planted items included
    eval_items: int           # items per benchmark
    img_min: int              # image side range in pixels
    img_max: int
    images_per_shard: int     # target number of images per main tarball
    chunk_size: int           # records per worker task
    gzip_level: int
    mix: PlantedMix = field(default_factory=PlantedMix)


SCALES: dict[str, Scale] = {
    "demo": Scale("demo", 300, 100, 192, 448, 1000, 40, 6),
    # for the study: ~17x demo, demo's image sizes and gzip level; ~35k images in 14 tarballs.
    # Defects at a share of web-scale instruction data (a fifth low-quality, a fifth
    # near-duplicates) rather than the demo's 5 %: at the demo's mix the oracle removes too
    # little for any recipe's effect to be told from seed and item noise. (A fifth refusals on
    # top, `--mix low_quality_rate=0.4 --mix refusal_share=0.5`, did not widen the oracle's gap:
    # README, "Refusals planted"; half of the records refused does, `--mix refusals` below.)
    "study": Scale("study", 5_000, 500, 192, 448, 2500, 200, 6,
                   PlantedMix(near_duplicate_rate=0.2, low_quality_rate=0.2)),
    "bench": Scale("bench", 12_500, 100, 128, 256, 5000, 500, 1),
}


# Named mixes: `mm-curation study --mix NAME` (later FIELD=VALUE pairs override single fields).
MIX_PRESETS: dict[str, dict[str, float]] = {
    # Half of every domain's records answered by a refusal (0.58 x 0.862), a twelfth other
    # low-quality records, the study's fifth near-duplicates: at this share the refusal becomes the
    # model's answer on the benchmarks (screened at 30/40/50/60 %; README, "Half the answers refused").
    "refusals": {"low_quality_rate": 0.58, "refusal_share": 0.862},
}


def resolve_scale(name: str, records_per_domain: int | None = None,
                  eval_items: int | None = None, mix: PlantedMix | dict | None = None) -> Scale:
    """A preset, optionally shrunk (records, eval items) and with another planted mix.

    `mix` is a whole `PlantedMix` or a dict of the fields to change, e.g. {"low_quality_rate": 0.1}.
    """
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; expected one of {sorted(SCALES)}")
    scale = SCALES[name]
    if records_per_domain is not None:
        # shrink the shards too, so a reduced run still spreads images over several tarballs
        scale = replace(scale, records_per_domain=records_per_domain,
                        images_per_shard=max(1, min(scale.images_per_shard,
                                                    records_per_domain * 7 // 3)))
    if eval_items is not None:
        scale = replace(scale, eval_items=eval_items)
    if mix is not None:
        scale = replace(scale, mix=planted_mix(scale.mix, mix))
    return scale
