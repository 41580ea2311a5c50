"""Dagster assets of the mixing stage's reports: the mixing table of every evaluated soup
(`mm_assets/mixing/table.py`) and the proxy check, soups against models trained on the same
mixtures (`mm_assets/mixing/proxy.py`). The training and sweep assets are in experts.py."""

import base64
import io
import json

import dagster as dg
import polars as pl

from mm_assets.metadata import bytes_digest, content_digest, markdown_table
from mm_assets.mixing.proxy import of_start, rank_agreement
from mm_assets.mixing.table import AVERAGE, best_mixtures, marginal_contributions, of_experts, plot_mixing, \
    search_report, soup_rows, subset_table
from mm_assets.storage import parquet_bytes
from resources.evaluation import MlflowResource
from resources.storage import StorageResource

ALL = {"partition_mapping": dg.AllPartitionMapping(), "metadata": {"allow_missing_partitions": True}}


@dg.asset(group_name="mixing", kinds={"parquet", "png", "mlflow"}, ins={"eval_scores": dg.AssetIn(**ALL)},
          deps=["soup_sweep"],
          description="Every evaluated soup (uniform merge of expert checkpoints) × benchmark: the subset table "
                      "with the average over benchmarks, the best mixture per benchmark and on average, each "
                      "expert's mean gain when added, and greedy soup / beam search replayed against the "
                      "exhaustive table (evaluations spent vs best found). Materialize it once the soups' evals "
                      "are in (`mm-curation soups`, then the checkpoint sensor).")
def mixing_table(context: dg.AssetExecutionContext, eval_scores: dict, storage: StorageResource,
                 mlflow: MlflowResource) -> dg.Output[dict]:
    from resources.json_io_manager import read_pointers

    st = storage.get()
    summaries = [st.read_json(pointer["summary"]) for pointer in eval_scores.values() if "summary" in pointer]
    rows = soup_rows(summaries)
    try:        # the latest sweep's experts; without a sweep (soups of `mm-curation soups`) every soup
        sweep_experts = {e["name"] for e in read_pointers(st, "soup_sweep")["experts"].values()}
    except FileNotFoundError:
        sweep_experts = None
    left_out = 0
    if sweep_experts is not None:
        kept = of_experts(rows, sweep_experts)
        left_out, rows = rows["soup"].n_unique() - kept["soup"].n_unique(), kept
    table = subset_table(rows)
    best, gains = best_mixtures(table), marginal_contributions(table)
    try:
        searches, curves = search_report(table)
        search_note = ""
    except ValueError as incomplete:            # some subsets not (yet) evaluated on every benchmark
        searches, curves, search_note = pl.DataFrame(), [], str(incomplete)
    png = io.BytesIO()
    plot_mixing(table, gains, curves, png)
    parts = {"soups.parquet": parquet_bytes(rows), "subsets.parquet": parquet_bytes(table),
             "best.parquet": parquet_bytes(best), "marginal_contributions.parquet": parquet_bytes(gains),
             "searches.parquet": parquet_bytes(searches)}
    version = content_digest({name: bytes_digest(data) for name, data in parts.items()})
    root = f"mixing_table/{version}"
    for name, data in {**parts, "mixing.png": png.getvalue()}.items():
        st.write_bytes(f"{root}/{name}", data)
    if table.height:
        _log_mlflow(mlflow, context.run_id, best, gains, searches, png.getvalue(), table)
    benches = [c for c in table.columns if c not in ("label", "experts", "size")]
    shown = table.select("label", "size", *benches).sort(AVERAGE, descending=True, nulls_last=True) \
        if table.height else table
    return dg.Output(
        {"root": root, "version": version}, data_version=dg.DataVersion(version),
        metadata={"uri": st.uri(root), "soups": table.height, "soups_of_other_experts_left_out": left_out,
                  "weighted_soups": rows.filter(
                      pl.col("weights").is_not_null())["soup"].n_unique(),
                  "subsets": dg.MetadataValue.md(markdown_table(shown.head(20))),
                  "best": dg.MetadataValue.md(markdown_table(best)),
                  "marginal_contributions": dg.MetadataValue.md(markdown_table(
                      gains.pivot(on="benchmark", index="expert", values="mean_gain") if gains.height else gains)),
                  "searches": dg.MetadataValue.md(markdown_table(searches) if searches.height else search_note
                                                  or "no soups evaluated"),
                  "plot": dg.MetadataValue.md(f"![mixing](data:image/png;base64,"
                                              f"{base64.b64encode(png.getvalue()).decode()})")})


def _log_mlflow(mlflow: MlflowResource, dagster_run_id: str, best: pl.DataFrame, gains: pl.DataFrame,
                searches: pl.DataFrame, png: bytes, table: pl.DataFrame) -> None:
    metrics = {f"best/{r['benchmark']}": r["score"] for r in best.iter_rows(named=True)}
    metrics |= {f"gain/{r['expert']}/{r['benchmark']}": r["mean_gain"] for r in gains.iter_rows(named=True)}
    metrics |= {f"search/{r['search']}/evaluations": r["evaluations"] for r in searches.iter_rows(named=True)}
    metrics |= {f"search/{r['search']}/below_best": r["below_exhaustive_best"] for r in searches.iter_rows(named=True)}
    mlflow.log_report("mm-curation-mixing", "mixing_table", params={"soups": table.height},
                      metrics={k.replace("(", "").replace(")", "").replace("+", "_"): v for k, v in metrics.items()},
                      artifacts={"mixing.png": png, "subsets.json": json.dumps(table.to_dicts()).encode()},
                      tags={"dagster/run_id": dagster_run_id})


@dg.asset(group_name="mixing", kinds={"parquet", "mlflow"},
          ins={"eval_scores": dg.AssetIn(**ALL),
               "mixture_run": dg.AssetIn(**ALL),
               "soup_sweep": dg.AssetIn()},
          description="Does the merge proxy rank mixtures as training on them does? For every trained mixture "
                      "(two or more domains) whose soup and real model are evaluated: Spearman's rho between the "
                      "soups' and the real models' scores per benchmark and on the average, with a bootstrap 95% "
                      "interval over mixtures.")
def proxy_check(context: dg.AssetExecutionContext, eval_scores: dict, mixture_run: dict, soup_sweep: dict,
                storage: StorageResource, mlflow: MlflowResource) -> dg.Output[dict]:
    from mm_assets.partitions import checkpoint_benchmark_partitions

    st = storage.get()
    score = {}
    for key, pointer in eval_scores.items():
        dims = checkpoint_benchmark_partitions.get_partition_key_from_str(key).keys_by_dimension
        score[(dims["checkpoint"], dims["benchmark"])] = pointer["score"]
    mixtures, stale = of_start(mixture_run, soup_sweep["start"], soup_sweep["budget_tokens"]) \
        if "start" in soup_sweep else (mixture_run, [])
    rows = []
    for label, run in sorted(mixtures.items()):
        soup = soup_sweep["soups"].get(label)
        for bench in soup_sweep["benchmarks"]:
            rows.append({"mixture": label, "benchmark": bench, "soup": soup, "real": run["name"],
                         "soup_score": score.get((soup, bench)), "real_score": score.get((run["name"], bench))})
    pairs = pl.DataFrame(rows, schema={"mixture": pl.String, "benchmark": pl.String, "soup": pl.String,
                                       "real": pl.String, "soup_score": pl.Float64, "real_score": pl.Float64})
    complete = pairs.filter(pl.col("soup_score").is_not_null() & pl.col("real_score").is_not_null())
    complete = complete.filter(pl.col("mixture").count().over("mixture") == len(soup_sweep["benchmarks"]))
    averages = complete.group_by("mixture").agg(pl.col("soup_score").mean(), pl.col("real_score").mean()) \
        .with_columns(pl.lit(AVERAGE).alias("benchmark"))
    agreement = []
    for bench, part in [*((b, complete.filter(pl.col("benchmark") == b)) for b in soup_sweep["benchmarks"]),
                        (AVERAGE, averages)]:
        proxy, real = dict(zip(part["mixture"], part["soup_score"])), dict(zip(part["mixture"], part["real_score"]))
        found = rank_agreement(proxy, real) if len(proxy) >= 3 else {"mixtures": len(proxy)}
        agreement.append({"benchmark": bench, **{k: (None if isinstance(v, float) and v != v else v)
                                                 for k, v in found.items()}})
    table = pl.DataFrame(agreement, schema={"benchmark": pl.String, "rho": pl.Float64, "ci95_low": pl.Float64,
                                            "ci95_high": pl.Float64, "mixtures": pl.Int64, "resamples": pl.Int64,
                                            "resamples_without_rho": pl.Int64})
    data = {"pairs.parquet": parquet_bytes(pairs), "agreement.parquet": parquet_bytes(table)}
    version = content_digest({name: bytes_digest(blob) for name, blob in data.items()})
    root = f"proxy_check/{version}"
    for name, blob in data.items():
        st.write_bytes(f"{root}/{name}", blob)
    if complete.height:
        mlflow.log_report("mm-curation-mixing", "proxy_check", params={"mixtures": complete["mixture"].n_unique()},
                          metrics={f"rho/{r['benchmark']}": r["rho"] for r in agreement},
                          artifacts={"agreement.json": json.dumps(agreement).encode()},
                          tags={"dagster/run_id": context.run_id})
    return dg.Output({"root": root, "version": version}, data_version=dg.DataVersion(version),
                     metadata={"uri": st.uri(root), "mixtures": complete["mixture"].n_unique(),
                               "mixtures_of_another_start": dg.MetadataValue.json(stale),
                               "not_evaluated_yet": pairs.height - complete.height,
                               "agreement": dg.MetadataValue.md(markdown_table(table)),
                               "pairs": dg.MetadataValue.md(markdown_table(pairs.drop("soup", "real")))})
