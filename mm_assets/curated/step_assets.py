"""The Dagster side of the step registry: one decisions asset per registered step, built by one
function from the step's record, and the step's recipe-independent score assets.

Every `<step>_decisions[recipe]` asset reads the recipe's parameters of its step, calls the
step's plain `decide`, writes the decisions table content-addressed (its data version is the
decisions themselves, so an edit that decides the same way changes nothing downstream) and
reports what every step reports — decision counts, removal per domain, canary recall and lift
— next to the step's own metadata.
"""


import base64
import importlib
import time

import dagster as dg
import polars as pl

from mm_assets.automation import ON_CHANGED_DATA
from mm_assets.curated.ledger import STEP_DECISION_COLUMNS
from mm_assets.curation_step import CurationStep, Decided, Markdown, PngImage, StepInputs
from mm_assets.metadata import content_digest, markdown_table
from mm_assets.partitions import recipe_partitions
from mm_assets.recipes.assets import section_key
from mm_assets.steps import STEPS
from mm_assets.storage import Storage
from resources.json_io_manager import read_pointers

NOT_IN_RECIPE = "not-in-recipe"


def to_metadata(value):
    """A step's metadata value as the Dagster UI shows it."""
    if isinstance(value, PngImage):
        return dg.MetadataValue.md(f"![{value.title}](data:image/png;base64,{base64.b64encode(value.data).decode()})")
    if isinstance(value, Markdown):
        return dg.MetadataValue.md(value.text)
    if isinstance(value, pl.DataFrame):
        return dg.MetadataValue.md(markdown_table(value))
    if isinstance(value, (dict, list, tuple)):
        return dg.MetadataValue.json(value)
    if value is None:
        return dg.MetadataValue.text("")
    return value


def write_decisions(st: Storage, asset: str, recipe: str, code_version: str, params_hash: str,
                    decided: Decided) -> tuple[str, str]:
    """Write `decisions.parquet`, the files and the reports under a content-addressed root;
    returns (root, data version). The version covers the decisions and the files read
    downstream, not the reports."""
    decisions = decided.decisions
    if "params_hash" not in decisions.columns:
        decisions = decisions.with_columns(pl.lit(params_hash, dtype=pl.String).alias("params_hash"))
    missing = set(STEP_DECISION_COLUMNS) - set(decisions.columns)
    if missing:
        raise ValueError(f"{asset}[{recipe}]: decisions lack columns {sorted(missing)}")
    extra = [c for c in decisions.columns if c not in STEP_DECISION_COLUMNS]
    decisions = decisions.select(*STEP_DECISION_COLUMNS, *extra).sort("sample_id")
    version = content_digest([decisions.select("sample_id", "decision", "related_id", *extra).rows(),
                              {k: content_digest(v.hex()) for k, v in decided.files.items()}])
    root = f"{asset}/{recipe}/{content_digest([code_version, params_hash, version])}"
    st.write_parquet(f"{root}/decisions.parquet", decisions)
    for name, data in {**decided.files, **decided.reports}.items():
        st.write_bytes(f"{root}/{name}", data)
    return root, version


def decisions_metadata(decisions: pl.DataFrame, canaries: tuple[list[str], str] | None) -> dict:
    """Counts per decision, removal per domain and, when there are canaries, the step's recall
    on them and its lift (recall ÷ removal fraction)."""
    from mm_assets.canaries import canary_report

    counts = dict(decisions.group_by("decision").len().sort("decision").iter_rows())
    per_domain = (decisions.group_by("domain")
                  .agg((pl.col("decision") == "drop").mean().alias("removed")).sort("domain"))
    md = {"decisions": dg.MetadataValue.json({k: int(v) for k, v in counts.items()}),
          "removal_per_domain": dg.MetadataValue.json({d: round(float(r), 4) for d, r in per_domain.iter_rows()})}
    if canaries is not None:
        ids, source = canaries
        report = canary_report(decisions, ids)
        md.update({"canary_recall": report["recall"], "canary_lift": report["lift"],
                   "canary_report": dg.MetadataValue.json(dict(report, source=source))})
    return md


def stored_pointers(context: dg.AssetExecutionContext, st: Storage, asset: str) -> dict:
    """The stored pointer of an asset the step reads: {partition: pointer} over all of its
    partitions, or the pointer of an unpartitioned one."""
    pdef = context.job_def.asset_layer.asset_graph.get(dg.AssetKey(asset)).partitions_def
    if pdef is None:
        return read_pointers(st, asset)
    with dg.partition_loading_context(dynamic_partitions_store=context.instance):
        return read_pointers(st, asset, list(pdef.get_partition_keys()))


def build_decisions_asset(step: CurationStep) -> dg.AssetsDefinition:
    deps = [*(dg.AssetDep(a, partition_mapping=dg.AllPartitionMapping()) for a in step.reads),
            *(section_key(s) for s in step.decided_by)]

    automation = ON_CHANGED_DATA
    if step.optional_reads:
        automation = ON_CHANGED_DATA.replace("any_deps_missing", dg.AutomationCondition.any_deps_missing().ignore(
            dg.AssetSelection.assets(*step.optional_reads)))

    @dg.asset(name=step.decisions_asset, group_name=step.group, partitions_def=recipe_partitions,
              code_version=step.code_version, kinds={"parquet"}, automation_condition=automation, deps=deps,
              description=step.description,
              required_resource_keys={"storage", "recipes", "canaries", "mammoth", "ray_cluster", "checkpoints"})
    def _decisions(context: dg.AssetExecutionContext) -> dg.Output[dict]:
        name = context.partition_key
        params = context.resources.recipes.get(name).step(step.kind)
        if params is None:
            context.log.info(f"recipe {name} has no {step.kind} step: nothing to decide")
            return dg.Output({"root": None, "version": NOT_IN_RECIPE, "in_recipe": False},
                             data_version=dg.DataVersion(NOT_IN_RECIPE), metadata={"in_recipe": False})
        st = context.resources.storage.get()
        mammoth, canaries = context.resources.mammoth, context.resources.canaries
        inputs = StepInputs(recipe=name, params=params, storage=st,
                            pointers=lambda asset: stored_pointers(context, st, asset),
                            planted_truth=mammoth.planted_truth,
                            canary_ids=lambda pool: canaries.ids(pool, mammoth.planted_truth), log=context.log.info,
                            ray=context.resources.ray_cluster.placement(),
                            checkpoints=context.resources.checkpoints.get(),
                            image_content=mammoth.image_content or None)
        started = time.perf_counter()
        decided = step.decide(inputs)
        params_hash = decided.params_hash or step.params_hash(params)
        root, version = write_decisions(st, step.decisions_asset, name, step.code_version, params_hash, decided)
        metadata = {"uri": st.uri(root), "in_recipe": True, "params_hash": params_hash,
                    **({"reads_planted_truth": True} if step.reads_planted_truth else {}),
                    "params": dg.MetadataValue.json(params.model_dump(mode="json")),
                    "seconds": time.perf_counter() - started,
                    **decisions_metadata(decided.decisions, inputs.canaries if decided.canaries else None),
                    **{k: to_metadata(v) for k, v in decided.metadata.items()}}
        context.log.info(f"{step.decisions_asset}[{name}]: {metadata['decisions'].value} in "
                         f"{metadata['seconds']:.2f}s")
        return dg.Output({"root": root, "version": version, "in_recipe": True}, data_version=dg.DataVersion(version),
                         metadata=metadata)

    return _decisions


def collect_score_assets(steps=STEPS) -> list[dg.AssetsDefinition]:
    """The recipe-independent score assets of the registered steps, each once, parents first."""
    out: dict[str, dg.AssetsDefinition] = {}
    for step in steps:
        module = importlib.import_module(step.assets_module) if step.assets_module else None
        for name in step.score_assets:
            if name not in out:
                out[name] = getattr(module, name)
    return list(out.values())


DECISIONS_ASSETS = [build_decisions_asset(s) for s in STEPS]
SCORE_ASSETS = collect_score_assets()
