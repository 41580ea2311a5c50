"""Image-text relevance: flag questions that are not about their image (plain functions).

Scores (expensive, computed once per embedder and samples version):

* ``similarity``: cosine between a row's first question (text tower, `<image>` removed) and
  its image (vision tower) — the SigLIP2 similarity the issue asks for;
* ``specificity``: the standard deviation of the question's similarity to a fixed random
  reference set of images of the same domain (its own image left out). A question about
  *its* image prefers some images of the domain over others (bar vs line charts, the labels
  it names); a question that fits every image of the domain alike ("Convert the chart to a
  data table.") has a flat profile;
* ``calibrated``: ``(similarity - mean) / std`` of the same question against the reference
  images — how far its own image stands out from other images of the domain for the same
  question text (the textbook calibration; it needs an embedder that was *not* trained on
  these very pairs: one that was, like the embedded tiny SigLIP2, has memorised them);
* ``specificity_z`` / ``calibrated_z``: robust z-scores (median / 1.4826 MAD) of the two
  signals within the domain, so one threshold reads the same in every domain.

The flag (cheap, per recipe): ``rule`` picks the signal ("specificity", "calibrated" or
"either" = the lower of the two z-scores); a row is flagged when that z-score is at or below
``z_threshold``, and at most ``max_flag_rate`` of a domain's rows are flagged (the lowest
scores first). Nothing here reads the planted truth; `planted_unrelated` exists only for
the quality report.

No Dagster import here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

RULES = ("specificity", "calibrated", "either")
SCORE_SCHEMA = {
    "sample_id": pl.String, "domain": pl.String, "similarity": pl.Float64, "specificity": pl.Float64,
    "calibrated": pl.Float64, "specificity_z": pl.Float64, "calibrated_z": pl.Float64, "references": pl.Int64,
}


def question_text(question: str) -> str:
    """The text a question is embedded by: the first question without `<image>` tokens."""
    return question.replace("<image>", " ").strip()


def embed_questions(model, tokenizer, samples: pl.DataFrame, *, batch_size: int = 128,
                    num_threads: int | None = None) -> tuple[list[str], np.ndarray]:
    """Question-only text-tower embeddings of the samples table's rows (``sample_id``,
    ``question``): ``(sample_ids, float32 [n, d] L2-normalised)`` in table order. Shared with
    mining, which compares eval questions with training questions in this space."""
    from mm_assets.embeddings import embed_texts

    texts = [question_text(q or "") for q in samples["question"].to_list()]
    return samples["sample_id"].to_list(), embed_texts(model, tokenizer, texts, batch_size=batch_size,
                                                       num_threads=num_threads)


def robust_z(x: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 * MAD); falls back to the standard deviation when the MAD is 0."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return x
    med = float(np.median(x))
    scale = 1.4826 * float(np.median(np.abs(x - med)))
    if scale <= 1e-12:
        scale = float(x.std())
    return (x - med) / scale if scale > 1e-12 else np.zeros_like(x)


def _domain_scores(q: np.ndarray, img: np.ndarray, reference_size: int, seed: int, chunk: int) -> dict:
    n = len(q)
    rng = np.random.default_rng(seed)
    ref = np.sort(rng.choice(n, size=min(n, reference_size), replace=False))
    r = np.ascontiguousarray(img[ref], dtype=np.float32)
    own = np.einsum("ij,ij->i", q, img).astype(np.float64)
    in_ref = np.zeros(n, dtype=bool)
    in_ref[ref] = True
    s1 = np.empty(n)
    s2 = np.empty(n)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        s = (q[a:b] @ r.T).astype(np.float64)
        s1[a:b] = s.sum(axis=1)
        s2[a:b] = np.square(s).sum(axis=1)
    # leave the row's own image out of its reference set
    m = len(ref) - in_ref.astype(np.float64)
    s1 -= np.where(in_ref, own, 0.0)
    s2 -= np.where(in_ref, own * own, 0.0)
    m_safe = np.maximum(m, 1.0)
    mean = s1 / m_safe
    std = np.sqrt(np.maximum(s2 / m_safe - mean * mean, 0.0))
    calibrated = (own - mean) / np.maximum(std, 1e-6)
    return {"similarity": own, "specificity": std, "calibrated": calibrated, "references": m.astype(np.int64)}


def relevance_scores(sample_ids: Sequence[str], domains: Sequence[str], question_vectors: np.ndarray,
                     image_vectors: np.ndarray, *, reference_size: int = 1024, seed: int = 0,
                     chunk: int = 8192) -> pl.DataFrame:
    """Relevance scores of image rows (module docstring), one row per sample, in input order.

    Row i of `question_vectors` (text tower, see `embed_questions`) and `image_vectors`
    (vision tower, e.g. the `embeddings` stage's image rows) belong to ``sample_ids[i]``; both
    L2-normalised. Each domain is scored against up to `reference_size` of its own images,
    drawn with `seed`. Text-only rows must not be passed (they have no image).
    """
    q = np.ascontiguousarray(question_vectors, dtype=np.float32)
    img = np.ascontiguousarray(image_vectors, dtype=np.float32)
    ids, doms = list(sample_ids), np.asarray(list(domains), dtype=object)
    if not (len(ids) == len(doms) == len(q) == len(img)):
        raise ValueError(f"{len(ids)} ids, {len(doms)} domains, {len(q)} question and {len(img)} image vectors")
    if q.ndim != 2 or q.shape != img.shape:
        raise ValueError(f"question vectors {q.shape} and image vectors {img.shape} must have one shape")
    if reference_size < 2:
        raise ValueError("reference_size must be at least 2")
    cols = {k: np.zeros(len(ids)) for k in ("similarity", "specificity", "calibrated", "specificity_z",
                                             "calibrated_z")}
    refs = np.zeros(len(ids), dtype=np.int64)
    for d in sorted(set(doms.tolist())):
        rows = np.flatnonzero(doms == d)
        sc = _domain_scores(q[rows], img[rows], reference_size, seed, chunk)
        for k in ("similarity", "specificity", "calibrated"):
            cols[k][rows] = sc[k]
        refs[rows] = sc["references"]
        cols["specificity_z"][rows] = robust_z(sc["specificity"])
        cols["calibrated_z"][rows] = robust_z(sc["calibrated"])
    return pl.DataFrame({"sample_id": ids, "domain": doms.tolist(), **cols, "references": refs}, schema=SCORE_SCHEMA)


def _rule_score(scores: pl.DataFrame, rule: str) -> pl.Expr:
    if rule == "specificity":
        return pl.col("specificity_z")
    if rule == "calibrated":
        return pl.col("calibrated_z")
    if rule == "either":
        return pl.min_horizontal("specificity_z", "calibrated_z")
    raise ValueError(f"unknown relevance rule {rule!r}; known: {RULES}")


def flag_unrelated(scores: pl.DataFrame, *, rule: str = "specificity", z_threshold: float = -2.5,
                   max_flag_rate: float = 0.05) -> pl.DataFrame:
    """The flag table: ``sample_id, domain, similarity, score, flagged, reason`` (+ the
    signals). ``score`` is the rule's z-score; flagged = score <= `z_threshold`, at most
    ``floor(max_flag_rate * rows)`` per domain (lowest scores first)."""
    if not 0.0 <= max_flag_rate <= 1.0:
        raise ValueError(f"max_flag_rate must be in [0, 1], got {max_flag_rate}")
    df = scores.with_columns(_rule_score(scores, rule).alias("score"))
    df = df.with_columns(
        pl.col("score").rank("ordinal").over("domain").alias("_rank"),
        pl.len().over("domain").alias("_n"),
    ).with_columns(
        (pl.col("_n").cast(pl.Float64) * max_flag_rate + 1e-9).floor().cast(pl.Int64).alias("_budget"),
        (pl.col("score") <= z_threshold).alias("_below"),
    ).with_columns((pl.col("_below") & (pl.col("_rank") <= pl.col("_budget"))).alias("flagged"))
    signal = {"specificity": "its similarity to the domain's images is flat",
              "calibrated": "its own image does not stand out among the domain's images",
              "either": "flat similarity profile or own image not standing out"}[rule]
    reasons = []
    for r in df.select("domain", "similarity", "score", "flagged", "_below", "_budget").iter_rows(named=True):
        facts = f"{rule} z {r['score']:.2f} (threshold {z_threshold:g}), own-image similarity {r['similarity']:.3f}"
        if r["flagged"]:
            reasons.append(f"question unrelated to its image: {signal}; {facts}")
        elif r["_below"]:
            reasons.append(f"below threshold but over the {r['domain']} flag budget ({r['_budget']} rows, "
                           f"max_flag_rate {max_flag_rate:g}); {facts}")
        else:
            reasons.append(f"question related to its image; {facts}")
    return df.with_columns(pl.Series("reason", reasons, dtype=pl.String)).select(
        "sample_id", "domain", "similarity", "score", "flagged", "reason", "specificity", "calibrated",
        "specificity_z", "calibrated_z")


def relevance_decisions(flags: pl.DataFrame, samples: pl.DataFrame, *, remove: bool, params_hash: str
                        ) -> pl.DataFrame:
    """The step's decisions table (ledger columns) for every row of `samples`
    (``sample_id``, ``domain``): flagged rows are dropped when `remove`, else kept with the
    flag in the reason; rows without a score (text-only) are kept."""
    from mm_assets.curated.ledger import STEP_DECISION_COLUMNS

    joined = samples.select("sample_id", "domain").join(
        flags.select("sample_id", "score", "flagged", "reason"), on="sample_id", how="left")
    out = joined.with_columns(
        pl.lit(params_hash, dtype=pl.String).alias("params_hash"),
        pl.when(pl.col("flagged").fill_null(False) & pl.lit(remove)).then(pl.lit("drop"))
        .otherwise(pl.lit("keep")).alias("decision"),
        pl.when(pl.col("flagged").is_null()).then(pl.lit("no image: not scored"))
        .when(pl.col("flagged") & pl.lit(not remove)).then(pl.lit("flagged, kept (recipe does not remove): ")
                                                           + pl.col("reason"))
        .otherwise(pl.col("reason")).alias("reason"),
        pl.lit(None, dtype=pl.String).alias("related_id"),
        pl.col("score").cast(pl.Float64),
    )
    return out.select(STEP_DECISION_COLUMNS)


def planted_unrelated(truth: dict, samples: pl.DataFrame, source_name: str = "main") -> list[str]:
    """Sample ids of the planted unrelated-question rows (quality report only)."""
    from mm_assets.planted import sample_ids_of_refs

    return sample_ids_of_refs([x["ref"] for x in truth["low_quality"] if x["kind"] == "unrelated_question"],
                              samples, source_name)


def catch_report(flags: pl.DataFrame, planted: Sequence[str]) -> dict:
    """Catch rate of the planted rows and the flag rate, overall and per domain."""
    planted = set(planted)
    scored = flags.filter(pl.col("sample_id").is_in(list(planted)))
    caught = int(scored["flagged"].sum()) if scored.height else 0
    per_domain = {d: {"rows": g.height, "flagged": int(g["flagged"].sum())}
                  for (d,), g in flags.group_by("domain", maintain_order=True)}
    return {"planted": len(planted), "scored": scored.height, "caught": caught,
            "catch_rate": caught / len(planted) if planted else math.nan,
            "flagged": int(flags["flagged"].sum()), "rows": flags.height,
            "flag_rate": float(flags["flagged"].mean()) if flags.height else 0.0, "per_domain": per_domain}
