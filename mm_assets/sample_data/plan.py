"""The plan: every main record decided up front (what to draw, what to plant, where it goes).

Planning is cheap and sequential; drawing happens later, in any process, from the plan alone.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from . import eval_sets
from .canvas import EXT
from .families import DOMAINS, FAMILIES, families_of
from .rng import rng_for
from .scales import PlantedMix, Scale

# the default planted mix (kept as names for readers; the plan reads `scale.mix`)
NEAR_DUP_RATE = PlantedMix.near_duplicate_rate
LOW_QUALITY_RATE = PlantedMix.low_quality_rate
FIXABLE_RATE = PlantedMix.fixable_rate
LEAK_RATE = PlantedMix.leak_rate

IMAGE_DUP_KINDS = ("exact_copy", "reencoded_jpeg", "crop_resize", "reworded_question")
TEXT_DUP_KINDS = ("text_copy", "text_reworded")
# the chart domain's kinds come from PlantedMix.chart_low_quality_kinds (the unrelated-question share)
LOW_QUALITY_KINDS = {
    "general": ("wrong_answer", "garbled_answer", "truncated_answer"),
    "ocr": ("wrong_answer", "garbled_answer", "truncated_answer"),
    "caption": ("truncated_answer", "garbled_answer", "wrong_answer"),
    "domain_specific": ("wrong_answer", "garbled_answer", "truncated_answer"),
    "code_math": ("wrong_answer", "garbled_answer", "truncated_answer"),
    "language": ("wrong_answer", "garbled_answer", "truncated_answer"),
    "detection": ("wrong_answer", "wrong_answer", "truncated_answer", "garbled_answer"),
}


@dataclass
class Unit:
    """One main record. `kind`: base (drawn fresh), dup (of a base record), leak (eval item)."""
    domain: str
    family: str
    kind: str
    index: int                      # base/dup: draw index in the domain; leak: eval item index
    lq: str | None = None           # planted low-quality kind
    no_image_token: bool = False    # planted fixable <image> mismatch
    dup_kind: str | None = None
    dup_no: int = 0                 # member number inside its group
    group: int | None = None        # near-duplicate group (originals and members)
    bench: str | None = None        # leak: benchmark
    reencode: bool = False          # leak: image re-encoded as JPEG
    ordinal: int = -1
    id: int | str | None = None
    image: str | None = None
    shard: int | None = None


@dataclass
class Plan:
    seed: int
    scale: Scale
    units: list[Unit]                       # in array order
    groups: list[tuple[int, str]]           # (group number, kind)
    n_shards: int
    shard_sizes: list[int] = field(default_factory=list)


def weighted_family(rng, fams):
    x = rng.random() * sum(f.weight for f in fams)
    for f in fams:
        x -= f.weight
        if x < 0:
            return f
    return fams[-1]


def leak_items(scale: Scale, seed: int) -> dict[str, list[int]]:
    out = {}
    for bench in eval_sets.BENCHMARKS:
        candidates = [i for i in range(scale.eval_items) if eval_sets.can_leak(bench, i)]
        rate = scale.mix.leak_rate
        n = max(1, round(rate * scale.eval_items)) if rate > 0 else 0
        out[bench] = sorted(rng_for(seed, "plan", "leak", bench).sample(candidates, min(n, len(candidates))))
    return out


def make_id(style: str, source: str, n: int, seed: int) -> int | str:
    if style == "int":
        return n
    if style == "numstr":
        return str(n)
    if style == "prefixed":
        return f"{source.removeprefix('gen_')}_{n:06d}"
    return hashlib.sha256(f"{seed}/{source}/{n}".encode()).hexdigest()[:12]


def low_quality_kinds(domain: str, mix: PlantedMix) -> tuple[str, ...]:
    return mix.chart_low_quality_kinds() if domain == "chart" else LOW_QUALITY_KINDS[domain]


def build_plan(scale: Scale, seed: int) -> Plan:
    mix = scale.mix
    leaks = leak_items(scale, seed)
    units: list[Unit] = []
    groups: list[tuple[int, str]] = []
    for domain in DOMAINS:
        fams = families_of(domain)
        text_only = fams[0].fmt is None
        domain_leaks = [(b, i) for b, items in leaks.items() if eval_sets.BENCH_DOMAIN[b] == domain
                        for i in items]
        total = scale.records_per_domain
        n_dup = round(mix.near_duplicate_rate * total)
        n_base = total - n_dup - len(domain_leaks)
        n_lq = round(mix.low_quality_rate * total)
        n_fix = 0 if text_only or mix.fixable_rate == 0 else max(1, round(mix.fixable_rate * total))
        if n_base < 0 or n_dup + n_lq + n_fix > n_base:   # a group original may take one each
            raise ValueError(
                f"planted mix {mix} needs up to {n_dup} near-duplicate originals + {n_lq} low-quality "
                f"+ {n_fix} fixable distinct base records in domain {domain!r}, which has only "
                f"{n_base} base records ({total} records, {n_dup} duplicates, {len(domain_leaks)} "
                f"leaks); lower near_duplicate_rate / low_quality_rate / fixable_rate")
        base = []
        for i in range(n_base):
            fam = weighted_family(rng_for(seed, "plan", "family", domain, i), fams)
            base.append(Unit(domain, fam.key, "base", i))
        rng = rng_for(seed, "plan", "plant", domain)
        order = list(range(n_base))
        rng.shuffle(order)
        pos = 0
        remaining = n_dup
        while remaining > 0:
            orig = base[order[pos]]
            pos += 1
            size = min(remaining, rng.choice((1, 1, 1, 2, 2, 3)))
            kind = rng.choice(TEXT_DUP_KINDS if text_only else IMAGE_DUP_KINDS)
            gid = len(groups)
            groups.append((gid, kind))
            orig.group = gid
            for k in range(size):
                units.append(Unit(domain, orig.family, "dup", orig.index, dup_kind=kind, dup_no=k, group=gid))
            remaining -= size
        kinds = low_quality_kinds(domain, mix)
        for _ in range(n_lq):
            u = base[order[pos]]
            pos += 1
            u.lq = rng.choice(kinds)
            if u.lq == "unrelated_question" and domain != "chart":
                u.lq = "wrong_answer"
            # its own stream, so a mix without refusals plans exactly as before
            if mix.refusal_share and rng_for(seed, "plan", "refusal", domain, u.index).random() < mix.refusal_share:
                u.lq = "refusal"
        for _ in range(n_fix):
            base[order[pos]].no_image_token = True
            pos += 1
        units.extend(base)
        for bench, item in domain_leaks:
            units.append(Unit(domain, eval_sets.bench_family(bench, item), "leak", item, bench=bench,
                              reencode=rng_for(seed, "plan", "reencode", bench, item).random() < 0.5))
    _shuffle(units, seed)
    return _assign(units, groups, scale, seed)


def _shuffle(units: list[Unit], seed: int) -> None:
    """Random order in which no two members of a near-duplicate group are neighbours."""
    rng = rng_for(seed, "plan", "shuffle")
    rng.shuffle(units)
    for _ in range(100):
        clashes = [i for i in range(len(units) - 1)
                   if units[i].group is not None and units[i].group == units[i + 1].group]
        if not clashes:
            return
        for i in clashes:
            j = rng.randrange(len(units))
            units[i + 1], units[j] = units[j], units[i + 1]
    raise RuntimeError("could not separate near-duplicates")


def _assign(units: list[Unit], groups, scale: Scale, seed: int) -> Plan:
    per_source: dict[str, int] = {}
    per_dir: dict[str, int] = {}
    n_images = 0
    for ordinal, u in enumerate(units):
        fam = FAMILIES[u.family]
        u.ordinal = ordinal
        n = per_source.get(fam.source, 0)
        per_source[fam.source] = n + 1
        u.id = make_id(fam.id_style, fam.source, n, seed)
        if fam.directory is None:
            continue
        k = per_dir.get(fam.directory, 0)
        per_dir[fam.directory] = k + 1
        if u.kind == "leak":
            ext = "jpg" if u.reencode else EXT[eval_sets.native_fmt(u.bench)]
        elif u.dup_kind == "reencoded_jpeg":
            ext = "jpg"
        else:
            ext = EXT[fam.fmt]
        u.image = f"{fam.directory}/{k:05d}.{ext}"
        n_images += 1
    n_shards = max(2, math.ceil(n_images / scale.images_per_shard))
    sizes = [0] * n_shards
    k = 0
    for u in units:
        if u.image is not None:
            u.shard = k * n_shards // n_images
            sizes[u.shard] += 1
            k += 1
    return Plan(seed, scale, units, groups, n_shards, sizes)
