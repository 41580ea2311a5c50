"""`mm-curation mixing`: the whole data-mixing flow on a filled home, as the daemon would run it
(the jobs of the mixing group, the checkpoint sensor between them), with where the time went.

1. `mixing_start`, then `domain_expert` for every domain (in the worker processes when the graph
   has some); 2. `soup_sweep` (every subset soup, merged and evaluated in Gray-code order);
3. the checkpoint sensor registers experts and soups (the soups' evals reuse the sweep's);
4. `mixing_table`; 5. with `spread` K: K mixtures of two or more domains spread over the table's
ranking are trained for real (`mixture_run`), evaluated by the sensor, and `proxy_check` ranks
the soups against them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mm_assets import progress


def _timed(seconds: dict, name: str, fn) -> None:
    started = time.perf_counter()
    fn()
    seconds[name] = round(time.perf_counter() - started, 1)


def _evaluate_registered(graph) -> None:
    with progress.stage("checkpoint evals (sensor)", unit="runs") as stage:
        while graph.sensor_tick("checkpoint_sensor", done=stage.advance):
            pass


def run_mixing(graph, domains: Sequence[str] | None = None, spread: int = 0) -> dict:
    """Run the flow on `graph` (a `LocalGraph` whose curated datasets and eval sets exist);
    `domains`: the experts (default: every domain the mixing recipe has data for)."""
    from mm_assets.mixing.proxy import spread_over_ranking
    from mm_assets.partitions import mixture_partitions
    from mm_assets.storage import Storage

    seconds: dict[str, float] = {}
    _timed(seconds, "shared start", lambda: graph.run_stage("mixing: shared start", [("mixing_start_job", None)]))
    start = graph.meta("mixing_start")
    domains = list(domains or start["domain_tokens"])
    _timed(seconds, "domain experts", lambda: graph.run_stage(
        "mixing: domain experts", [("domain_expert_job", d) for d in domains], workers=True))
    _timed(seconds, "soup sweep", lambda: graph.run_stage("mixing: soup sweep", [("soup_sweep_job", None)]))
    sweep = graph.meta("soup_sweep")
    _timed(seconds, "registration and evals", lambda: _evaluate_registered(graph))
    _timed(seconds, "mixing table", lambda: graph.run_stage("mixing table", [("mixing_table_job", None)]))
    table = graph.meta("mixing_table")
    summary = {"domains": domains, "expert_budget_tokens": start["expert_budget_tokens"],
               "soups": sweep["soups"], "evaluations": sweep["evaluations_stored"] + sweep["evaluations_found"],
               "sweep_seconds_merging": round(sweep["seconds_merging"], 1),
               "sweep_seconds_evaluating": round(sweep["seconds_evaluating"], 1),
               "mixing_table": table["uri"], "best": table["best"], "searches": table["searches"]}
    if spread:
        subsets = Storage(table["uri"]).read_parquet("subsets.parquet")
        chosen = spread_over_ranking({r["label"]: r["average"] for r in subsets.iter_rows(named=True)
                                      if r["average"] is not None}, spread)
        graph.instance.add_dynamic_partitions(mixture_partitions.name, chosen)
        _timed(seconds, "real mixtures", lambda: graph.run_stage(
            "mixing: real mixtures", [("mixture_run_job", m) for m in chosen], workers=True))
        _timed(seconds, "real mixtures' evals", lambda: _evaluate_registered(graph))
        _timed(seconds, "proxy check", lambda: graph.run_stage("proxy check", [("proxy_check_job", None)]))
        check = graph.meta("proxy_check")
        summary |= {"mixtures": chosen, "proxy_check": check["uri"], "rank_agreement": check["agreement"]}
    summary["seconds"] = seconds
    return summary


def run_mixing_on_home(home, domains: Sequence[str] | None = None, spread: int = 0) -> dict:
    """`mm-curation mixing`: on a home filled by `mm-curation demo` or `study` (its settings kept),
    with two worker processes as the daemon's pool would run them."""
    import os
    from pathlib import Path

    import dagster as dg

    home = Path(home).resolve()
    if not (home / "dagster_home" / "dagster.yaml").exists():
        raise ValueError(f"{home} is not a filled home: run `mm-curation demo --home {home}` (or study) first")
    os.environ["MM_HOME"], os.environ["DAGSTER_HOME"] = str(home), str(home / "dagster_home")
    from mm_assets.definitions import defs
    from mm_assets.local_runner import LocalGraph

    graph = LocalGraph(defs, dg.DagsterInstance.get())
    graph.start_workers(2)
    try:
        return run_mixing(graph, domains, spread)
    finally:
        graph.stop_workers()
