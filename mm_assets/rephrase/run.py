"""Rephrase the text of selected samples: select, generate through the cache, validate, decide.

Plain Python, no Dagster import. The flow for one pool of samples (one domain):

1. `select_for_rephrase` picks ``round(fraction * n)`` samples by a salted hash of the sample
   id: the same samples across runs and recipes, and a larger fraction picks a superset.
2. `rephrase_samples` splits each selected record into turn *units* (the human questions, or
   the gpt answers, depending on the back end's style); leading/trailing ``<image>``
   placeholders are cut off and put back afterwards, so the model only sees text. Distinct
   texts missing from the cache are generated in batches; every completed batch is a cache
   chunk, so a killed run restarts where it stopped. Every output is cleaned and validated
   (`validate_rewrite`); a rejected rewrite leaves the original turn and records the reason.
3. `rephrase_decisions` turns the results into the step decisions table (``rewrite`` or
   ``keep`` with the reason) and `rewritten_record` applies accepted rewrites to a record.

Turns with structured markup (``<points ...>``, boxes) or no text besides placeholders are
not sent to a model: they stay as they are, counted under ``skipped``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import polars as pl

from mm_assets.curated.ledger import STEP_DECISION_COLUMNS
from mm_assets.shard_map import RayPlacement, map_shards
from mm_assets.storage import Storage

from .backends import PROMPTS, Rephraser, clean_generation
from .by_batch import RephraseBatchTask, RephraserSpec, rephrase_batch
from .cache import RephraseCache, text_key
from .validate import IMAGE_PLACEHOLDER, final_answer, reason_code, validate_rewrite

ROLE_OF_SPEAKER = {"human": "question", "user": "question", "gpt": "answer", "assistant": "answer"}
RESULT_SCHEMA = {
    "sample_id": pl.String, "turn": pl.Int32, "role": pl.String, "original": pl.String,
    "generated": pl.String, "rewritten": pl.String, "ok": pl.Boolean, "reason": pl.String, "cached": pl.Boolean,
}
_EDGE_PLACEHOLDERS = re.compile(r"^((?:\s*<image>)*\s*)(.*?)((?:\s*<image>)*\s*)$", re.DOTALL)
_MARKUP = re.compile(r"<(?!image>)/?[A-Za-z][^<>]*>")


# ----------------------------------------------------------------------------- selection


def selection_score(sample_id: str, salt: str = "rephrase") -> float:
    """A sample's position in the selection order, uniform in [0, 1)."""
    digest = hashlib.sha256(f"rephrase-select/{salt}/{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def select_for_rephrase(sample_ids: Iterable[str], fraction: float, salt: str = "rephrase") -> set[str]:
    """The ``round(fraction * n)`` samples with the lowest `selection_score`: stable across runs
    and recipes; for a fixed pool a larger fraction selects a superset."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    ids = sorted(set(sample_ids), key=lambda s: (selection_score(s, salt), s))
    return set(ids[:round(fraction * len(ids))])


# ----------------------------------------------------------------------------- turn units


@dataclass(frozen=True)
class TextUnit:
    sample_id: str
    turn: int                     # index into record["conversations"]
    role: str                     # "question" or "answer"
    original: str                 # the full turn text
    prefix: str                   # leading placeholders and whitespace, kept verbatim
    body: str                     # what the model rewrites (the cache key's text)
    suffix: str                   # trailing placeholders and whitespace, kept verbatim
    answers: tuple[str, ...]      # for validate_rewrite
    skip: str | None              # why the turn is not sent to a model (None: it is)


def split_placeholders(text: str) -> tuple[str, str, str]:
    """``(prefix, body, suffix)``: ``"<image>\\nWhat is X?"`` -> ``("<image>\\n", "What is X?", "")``."""
    m = _EDGE_PLACEHOLDERS.match(text)
    return m.group(1), m.group(2), m.group(3)


def skip_reason(body: str) -> str | None:
    if not body.strip():
        return "not_rephrasable: no text besides image placeholders"
    m = _MARKUP.search(body)
    if m:
        return f"not_rephrasable: structured markup {m.group(0)[:24]!r}"
    return None


def text_units(sample_id: str, record: dict, role: str) -> list[TextUnit]:
    """The turns of `record` that a `role` rewrite touches, in conversation order."""
    conv = record.get("conversations") or []
    units = []
    for i, turn in enumerate(conv):
        value = turn.get("value")
        if ROLE_OF_SPEAKER.get(str(turn.get("from", "")).lower()) != role or not isinstance(value, str):
            continue
        prefix, body, suffix = split_placeholders(value)
        if role == "question":
            nxt = conv[i + 1] if i + 1 < len(conv) else None
            answers = (nxt["value"],) if nxt and ROLE_OF_SPEAKER.get(str(nxt.get("from", "")).lower()) == "answer" \
                and isinstance(nxt.get("value"), str) else ()
        else:
            short = final_answer(body)
            answers = (short,) if short else ()
        units.append(TextUnit(sample_id, i, role, value, prefix, body, suffix, answers, skip_reason(body)))
    return units


# ----------------------------------------------------------------------------- rephrasing


def rephrase_samples(records: Iterable[tuple[str, dict]], backend: Rephraser, cache_storage: Storage, *,
                     batch_size: int = 64, on_batch: Callable[[int, int], None] | None = None,
                     remote: tuple[RephraserSpec, RayPlacement] | None = None) -> tuple[pl.DataFrame, dict]:
    """Rephrase the turns of `records` (``(sample_id, record)`` pairs, already selected).

    Returns ``(results, stats)``: `results` has one row per turn unit (`RESULT_SCHEMA`):
    ``generated`` is the raw model output, ``rewritten`` the full new turn text when it passed
    validation (else None), ``cached`` whether the output came from the cache. `stats`:
    ``samples``, ``turns``, ``unique_texts``, ``from_cache`` and ``generated`` (distinct texts;
    ``unique_texts = from_cache + generated``), ``batches``, ``rewritten``, ``rejected``
    (``{reason code: turns}``), ``skipped`` (``{reason: turns}``), ``samples_rewritten``,
    ``seconds_generating``. `on_batch(done, total)` is called after each generated batch.
    `remote`: the back end's spec and a Ray placement: the missing texts are generated as Ray
    tasks (each worker loads the back end from the spec), in the same batches as in process.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    spec = PROMPTS[backend.style]
    cache = RephraseCache(cache_storage, backend.model_id, backend.prompt_version)
    n_samples = 0
    units: list[TextUnit] = []
    for sample_id, record in records:
        n_samples += 1
        units.extend(text_units(sample_id, record, spec.role))

    texts = list(dict.fromkeys(u.body for u in units if u.skip is None))     # distinct, first-seen order
    keys = {t: text_key(t) for t in texts}
    outputs = cache.load(keys.values())
    was_cached = set(outputs)
    missing = [t for t in texts if keys[t] not in outputs]
    t0 = time.perf_counter()
    batches = [missing[s:s + batch_size] for s in range(0, len(missing), batch_size)]
    if remote is None:
        for k, batch in enumerate(batches):
            generated = backend.rephrase(batch)
            if len(generated) != len(batch):
                raise RuntimeError(f"{backend.name} returned {len(generated)} rewrites for {len(batch)} texts")
            cache.append(batch, generated)
            outputs.update((keys[t], g) for t, g in zip(batch, generated))
            if on_batch is not None:
                on_batch(min((k + 1) * batch_size, len(missing)), len(missing))
    else:
        backend_spec, placement = remote
        tasks = [RephraseBatchTask(cache_storage.root, cache_storage.storage_options, backend_spec, tuple(b), k)
                 for k, b in enumerate(batches)]
        done = [0]

        def finished(result) -> None:
            done[0] += len(result.record["outputs"])
            if on_batch is not None:
                on_batch(done[0], len(missing))

        results = map_shards(rephrase_batch, tasks, shard_names=[t.shard for t in tasks], ray=placement,
                             on_result=finished)
        for task, result in zip(tasks, results):
            outputs.update((keys[t], g) for t, g in zip(task.texts, result.record["outputs"]))
    seconds = time.perf_counter() - t0

    rows = []
    rejected: Counter = Counter()
    skipped: Counter = Counter()
    for u in units:
        if u.skip is not None:
            skipped[u.skip] += 1
            rows.append((u.sample_id, u.turn, u.role, u.original, None, None, False, u.skip, False))
            continue
        key = keys[u.body]
        raw = outputs[key]
        candidate = u.prefix + clean_generation(raw) + u.suffix
        ok, reason = validate_rewrite(u.original, candidate, answers=u.answers, role=u.role, **spec.checks)
        if not ok:
            rejected[reason_code(reason)] += 1
        rows.append((u.sample_id, u.turn, u.role, u.original, raw, candidate if ok else None, ok, reason,
                     key in was_cached))
    results = pl.DataFrame(rows, schema=RESULT_SCHEMA, orient="row")
    stats = {
        "samples": n_samples, "turns": len(units), "unique_texts": len(texts),
        "from_cache": len(texts) - len(missing), "generated": len(missing), "batches": len(batches),
        "rewritten": int(results["ok"].sum()) if len(results) else 0,
        "rejected": dict(sorted(rejected.items())), "skipped": dict(sorted(skipped.items())),
        "samples_rewritten": results.filter(pl.col("ok"))["sample_id"].n_unique() if len(results) else 0,
        "seconds_generating": round(seconds, 3),
    }
    return results, stats


# ----------------------------------------------------------------------------- applying


def rewrites_by_sample(results: pl.DataFrame) -> dict[str, dict[int, str]]:
    """``{sample_id: {turn index: new text}}`` for the accepted rewrites."""
    out: dict[str, dict[int, str]] = {}
    for sid, turn, text in results.filter(pl.col("ok")).select("sample_id", "turn", "rewritten").iter_rows():
        out.setdefault(sid, {})[int(turn)] = text
    return out


def rewritten_record(record: dict, new_texts: Mapping[int, str]) -> dict:
    """A copy of `record` whose conversation turns `new_texts` (``{turn index: text}``) replace;
    every other field and turn is the same object, key order unchanged (so it serialises to the
    same bytes except the replaced values). Raises ValueError for a turn that does not exist
    or a new text whose ``<image>`` count differs from the original's."""
    conv = record["conversations"]
    new_conv = list(conv)
    for i, text in new_texts.items():
        if not 0 <= i < len(conv):
            raise ValueError(f"turn {i} does not exist (the conversation has {len(conv)} turns)")
        old = conv[i]["value"]
        if old.count(IMAGE_PLACEHOLDER) != text.count(IMAGE_PLACEHOLDER):
            raise ValueError(f"turn {i}: the new text has {text.count(IMAGE_PLACEHOLDER)} '<image>', "
                             f"the original {old.count(IMAGE_PLACEHOLDER)}")
        new_conv[i] = {**conv[i], "value": text}
    return {k: (new_conv if k == "conversations" else v) for k, v in record.items()}


# ----------------------------------------------------------------------------- decisions


def _summary(rows: list[dict], role: str) -> tuple[str, str]:
    """(decision, reason) for one selected sample from its turn rows."""
    sent = [r for r in rows if r["generated"] is not None]
    done = [r for r in sent if r["ok"]]
    failed = [r for r in sent if not r["ok"]]
    if not sent:
        return "keep", rows[0]["reason"] if rows else "not_rephrasable: no text turns"
    if done:
        reason = f"rewrote {len(done)}/{len(rows)} {role} turn(s)"
        if failed or len(sent) < len(rows):
            kept = [f"turn {r['turn']}: {r['reason']}" for r in rows if not r["ok"]]
            reason += "; kept " + "; ".join(kept)
        return "rewrite", reason
    return "keep", "rejected " + "; ".join(f"turn {r['turn']}: {r['reason']}" for r in failed)


def rephrase_decisions(sample_ids: Iterable[str], results: pl.DataFrame, *, fraction: float,
                       salt: str = "rephrase", domain: str, params_hash: str) -> pl.DataFrame:
    """The step decisions table (`STEP_DECISION_COLUMNS`) for every sample of the pool.

    ``rewrite``: at least one turn was rewritten and passed validation. ``keep``: not selected,
    nothing rephrasable, or every rewrite rejected (the reason names each turn's validation
    failure). ``score`` is the sample's `selection_score` (selected = among the lowest)."""
    ids = list(dict.fromkeys(sample_ids))
    selected = select_for_rephrase(ids, fraction, salt)
    by_sample: dict[str, list[dict]] = {}
    for r in results.iter_rows(named=True):
        by_sample.setdefault(r["sample_id"], []).append(r)
    stray = sorted(set(by_sample) - selected)
    if stray:
        raise ValueError(f"{len(stray)} rephrase result(s) for samples the selection (fraction {fraction}, "
                         f"salt {salt!r}) does not pick, e.g. {stray[0]}")
    rows = []
    for sid in ids:
        if sid not in selected:
            decision, reason = "keep", f"not selected for rephrasing (fraction {fraction})"
        else:
            turns = by_sample.get(sid, [])
            decision, reason = _summary(turns, turns[0]["role"] if turns else "text")
        rows.append((sid, domain, params_hash, selection_score(sid, salt), decision, reason, None))
    return pl.DataFrame(rows, orient="row", schema={
        "sample_id": pl.String, "domain": pl.String, "params_hash": pl.String, "score": pl.Float64,
        "decision": pl.String, "reason": pl.String, "related_id": pl.String}).select(STEP_DECISION_COLUMNS)
