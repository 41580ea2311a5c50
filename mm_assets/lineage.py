"""`mm-curation lineage` and `mm-curation why`: answers read from Dagster's event log and the
artifacts' own manifests and ledgers — there is no second bookkeeping store.

Lineage walks the asset graph upward from one materialization. For each parent partition it
takes the parent's event that was current when the child was materialized: the latest one
stored before the child's event. (Dagster's own `dagster/input_data_version/*` tags cannot be
used for this: for mapped partitions they hold a hash over several parent versions.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import dagster as dg
import polars as pl

from mm_assets.curated.ledger import format_path
from mm_assets.storage import Storage

# Per asset: the metadata entries a reader of the lineage needs (hashes, models, code).
SHOWN_METADATA = {
    "raw_shards": ("shard_sha256",),
    "source": ("annotations",),
    "embedder": ("model", "uri"),
    "embeddings": ("uri", "rows"),
    "semdedup_scores": ("n", "computed"),
    "semdedup_mask": ("params", "params_hash", "uri"),
    "curated_dataset": ("uri", "samples_in", "samples_out", "shard_sha256"),
    "checkpoint": ("uri", "model", "lineage"),
    "base_model": ("uri", "version", "files"),
    "training_run": ("training_run", "seeds", "budget_tokens", "tokens_seen", "base_model_version"),
    "eval_scores": ("score", "ci95_low", "ci95_high", "model_id", "prompt_version", "metric_version", "mlflow_run_id"),
    "samples": ("uri", "rows"),
}


class LineageError(LookupError):
    pass


@dataclass
class Node:
    key: str
    partition: str | None
    kind: str                          # materialization | observation | missing
    data_version: str | None = None
    code_version: str | None = None
    run_id: str | None = None
    storage_id: int | None = None
    metadata: dict = field(default_factory=dict)
    parents: list[Node] = field(default_factory=list)
    repeated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.key}[{self.partition}]" if self.partition else self.key


def _records(instance, key: dg.AssetKey, partition: str | None, observation: bool, limit: int = 1000):
    flt = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None)
    fetch = instance.fetch_observations if observation else instance.fetch_materializations
    return fetch(flt, limit=limit).records


def _event(record):
    e = record.event_log_entry.dagster_event.event_specific_data
    return getattr(e, "materialization", None) or getattr(e, "asset_observation", None)


def _node_from(record, key: str, partition: str | None, kind: str) -> Node:
    ev = _event(record)
    tags = ev.tags or {}
    md = {k: v.value for k, v in ev.metadata.items() if k in SHOWN_METADATA.get(key, ())}
    return Node(key, partition, kind, tags.get("dagster/data_version"), tags.get("dagster/code_version"),
                record.run_id, record.storage_id, md)


def _parent_event(instance, graph, key: dg.AssetKey, partition: str | None, before: int):
    observable = graph.get(key).is_observable
    for record in _records(instance, key, partition, observation=observable):
        if record.storage_id < before:
            return record, ("observation" if observable else "materialization")
    return None, "missing"


def _manifest_notes(name: str, event, storage_options: dict) -> list[str]:
    """What the artifact's own manifest adds: the recipe as written and its section hashes."""
    if name != "curated_dataset" or "uri" not in event.metadata:
        return []
    try:
        manifest = Storage(event.metadata["uri"].value, storage_options).read_json("manifest.json")
    except FileNotFoundError:
        return ["manifest missing: the version was deleted"]
    notes = [f"recipe {manifest['recipe']} sections: " +
             ", ".join(f"{k}={v}" for k, v in manifest["recipe_sections"].items())]
    notes += [f"recipe | {line}" for line in manifest["recipe_text"].rstrip().splitlines()]
    notes.append(f"manifest code version {manifest['code_version']}, ledger sha256 {manifest['ledger']['sha256']}")
    return notes


def _curated_versions_of(instance, event) -> list:
    """The curated_dataset events whose data versions a checkpoint's manifest names."""
    lin = event.metadata.get("lineage")
    lin = lin.value if lin is not None else {}
    recipe, versions = lin.get("recipe"), lin.get("curated_versions") or {}
    out = []
    for domain, version in sorted(versions.items()):
        part = dg.MultiPartitionKey({"recipe": recipe, "domain": domain})
        match = [r for r in _records(instance, dg.AssetKey("curated_dataset"), part, observation=False)
                 if (_event(r).tags or {}).get("dagster/data_version") == version]
        out.extend(match[:1])
    return out


def _base_model_of(instance, event) -> list:
    """The base_model event whose data version a checkpoint's manifest names (its files' hash)."""
    lin = event.metadata.get("lineage")
    version = (lin.value if lin is not None else {}).get("base_model_version")
    if not version:
        return []
    return [r for r in _records(instance, dg.AssetKey("base_model"), None, observation=False)
            if (_event(r).tags or {}).get("dagster/data_version") == version][:1]


def _checkpoints_of(instance, event) -> list[tuple[str, object]]:
    """The checkpoints a checkpoint was made from, as its manifest names them (name and
    version): a soup's experts, an expert's start checkpoint. Each with the checkpoint event of
    that version, or None."""
    lin = event.metadata.get("lineage")
    lin = lin.value if lin is not None else {}
    refs = [*((lin.get("soup") or {}).get("experts", [])), *([lin["start_checkpoint"]] if lin.get("start_checkpoint")
                                                              else [])]
    out = []
    for ref in refs:
        match = [r for r in _records(instance, dg.AssetKey("checkpoint"), ref["name"], observation=False)
                 if (_event(r).tags or {}).get("dagster/data_version") == ref["version"]]
        out.append((ref["name"], match[0] if match else None))
    return out


def build_tree(instance, defs: dg.Definitions, key: str, partition: str | None, record=None,
               storage_options: dict | None = None) -> Node:
    storage_options = storage_options or {}
    graph = defs.resolve_asset_graph()
    seen: dict[tuple[str, str | None, int], Node] = {}

    def visit(asset_key: dg.AssetKey, part: str | None, rec, kind: str) -> Node:
        name = asset_key.to_user_string()
        if rec is None:
            return Node(name, part, "missing")
        ident = (name, part, rec.storage_id)
        if ident in seen:
            return Node(name, part, kind, seen[ident].data_version, repeated=True)
        node = _node_from(rec, name, part, kind)
        seen[ident] = node
        node.notes = _manifest_notes(name, _event(rec), storage_options)
        if kind == "observation":
            return node
        in_recipe = _event(rec).metadata.get("in_recipe")
        if in_recipe is not None and in_recipe.value is False:
            # a step the recipe does not have decided nothing: what it would read is not an input
            node.notes.append("not in this recipe: nothing read")
            return node
        if name == "checkpoint":
            # a checkpoint's inputs are named by its manifest (trainers outside this project
            # write the same manifest): the curated versions it was trained on
            for prec in _curated_versions_of(instance, _event(rec)):
                node.parents.append(visit(dg.AssetKey("curated_dataset"), prec.partition_key, prec, "materialization"))
            for prec in _base_model_of(instance, _event(rec)):
                node.parents.append(visit(dg.AssetKey("base_model"), None, prec, "materialization"))
            # a soup's experts, an expert's start: checkpoints at the versions the manifest names
            for source, prec in _checkpoints_of(instance, _event(rec)):
                node.parents.append(visit(dg.AssetKey("checkpoint"), source, prec, "materialization"))
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            parents = graph.get_parents_partitions(asset_key, part).parent_partitions
        for parent in sorted(parents, key=lambda p: (p.asset_key.to_user_string(), p.partition_key or "")):
            prec, pkind = _parent_event(instance, graph, parent.asset_key, parent.partition_key, rec.storage_id)
            child = visit(parent.asset_key, parent.partition_key, prec, pkind)
            node.parents.append(child)
        return node

    asset_key = dg.AssetKey.from_user_string(key)
    if record is None:
        records = _records(instance, asset_key, partition, observation=graph.get(asset_key).is_observable, limit=1)
        if not records:
            raise LineageError(f"{key}{f'[{partition}]' if partition else ''} has never been materialized")
        record = records[0]
    return visit(asset_key, partition, record, "materialization")


def _compact(v) -> str:
    """Hashes shortened to 16 characters; lists of file records as name=hash."""
    if isinstance(v, dict) and v and all(isinstance(h, str) and len(h) == 64 for h in v.values()):
        return ", ".join(f"{t}={h[:16]}" for t, h in v.items())
    if isinstance(v, list) and v and all(isinstance(x, dict) and "sha256" in x for x in v):
        return ", ".join(f"{x.get('source_name') or x.get('uri')}={x['sha256'][:16]}" for x in v)
    return str(v)


def render(node: Node, prefix: str = "", last: bool = True, root: bool = True) -> list[str]:
    head = "" if root else prefix + ("└─ " if last else "├─ ")
    bits = [node.label]
    if node.kind == "missing":
        bits.append("(never materialized)")
    else:
        bits.append(f"data version {node.data_version}")
        if node.code_version:
            bits.append(f"code {node.code_version}")
        if node.run_id and not node.repeated:
            bits.append(f"run {node.run_id[:8]}")
        if node.repeated:
            bits.append("(shown above)")
    lines = [head + "  ".join(bits)]
    pad = prefix if root else prefix + ("   " if last else "│  ")
    if not node.repeated:
        for k, v in node.metadata.items():
            lines.append(pad + f"   · {k}: {_compact(v)}")
        for line in node.notes:
            lines.append(pad + f"   · {line}")
    for i, parent in enumerate(node.parents):
        lines.extend(render(parent, pad, i == len(node.parents) - 1, root=False))
    return lines


_TARGET = re.compile(r"^(?P<key>[A-Za-z0-9_/]+)(\[(?P<part>[^\]]+)\])?$")


def resolve_target(instance, defs: dg.Definitions, target: str):
    """`asset[partition]` (a multi-partition in any order, `/`, `,` or `|` separated), a bare
    asset, a registered checkpoint's name, or a data version (prefix) of a curated dataset,
    checkpoint or eval table."""
    graph = defs.resolve_asset_graph()
    m = _TARGET.match(target)
    if m and graph.has(dg.AssetKey.from_user_string(m["key"])):
        key = dg.AssetKey.from_user_string(m["key"])
        part = m["part"]
        pdef = graph.get(key).partitions_def
        if part and isinstance(pdef, dg.MultiPartitionsDefinition):
            wanted = sorted(re.split(r"[|/,]", part))
            with dg.partition_loading_context(dynamic_partitions_store=instance):
                keys = pdef.get_partition_keys()
            match = [k for k in keys if sorted(k.split("|")) == wanted]
            if not match:
                raise LineageError(f"{m['key']} has no partition {part!r}")
            part = match[0]
        return m["key"], part, None
    from mm_assets.partitions import checkpoint_partitions
    if target in instance.get_dynamic_partitions(checkpoint_partitions.name):
        return "checkpoint", target, None
    for name in ("curated_dataset", "checkpoint", "eval_scores"):
        key = dg.AssetKey(name)
        if not graph.has(key):
            continue
        for record in _records(instance, key, None, observation=False, limit=10000):
            dv = (_event(record).tags or {}).get("dagster/data_version", "")
            if len(target) >= 8 and dv.startswith(target):
                return name, record.partition_key, record
    raise LineageError(f"{target!r} is neither an asset (optionally with [partition]) nor a known data version")


def lineage(instance, defs: dg.Definitions, target: str) -> str:
    key, part, record = resolve_target(instance, defs, target)
    return "\n".join(render(build_tree(instance, defs, key, part, record)))


def recipe_ledger(instance, st: Storage, recipe: str) -> pl.DataFrame:
    """The ledgers of a recipe's latest curated version of every domain, with domain, version
    and run columns added — read from the versions Dagster's event log points at."""
    from mm_assets.partitions import recipe_domain_partitions

    with dg.partition_loading_context(dynamic_partitions_store=instance):
        parts = [k for k in recipe_domain_partitions.get_partition_keys() if k.keys_by_dimension["recipe"] == recipe]
    if not parts:
        raise LineageError(f"no recipe {recipe!r} is registered (known recipes: "
                           f"{sorted(instance.get_dynamic_partitions('recipe'))})")
    frames = []
    for part in parts:
        records = _records(instance, dg.AssetKey("curated_dataset"), part, observation=False, limit=1)
        if not records:
            continue
        md = _event(records[0]).metadata
        ledger = Storage(md["uri"].value, st.storage_options).read_parquet("ledger.parquet")
        frames.append(ledger.with_columns(pl.lit(part.keys_by_dimension["domain"]).alias("domain"),
                                          pl.lit(md["version"].value).alias("version"),
                                          pl.lit(records[0].run_id).alias("run_id")))
    if not frames:
        raise LineageError(f"recipe {recipe!r} has no curated dataset yet; materialize curated_dataset for it")
    return pl.concat(frames)


def explain(ledger: pl.DataFrame, sample_id: str, recipe: str) -> tuple[str, bool]:
    """A sample's path through every step of the recipe and whether it is in the curated dataset."""
    rows = ledger.filter(pl.col("sample_id") == sample_id)
    if not rows.height:
        raise LineageError(f"sample {sample_id!r} is not in any ledger of recipe {recipe!r} "
                           "(not an ingested sample id? quarantined records have no sample_id)")
    inside = rows.filter(pl.col("step") == "curated")["decision"].to_list() == ["in"]
    first = rows.row(0, named=True)
    text = (f"sample {sample_id} in recipe {recipe} (domain {first['domain']}, curated version "
            f"{first['version']}, run {first['run_id'][:8]}):\n{format_path(rows)}\n"
            f"→ {'IN' if inside else 'NOT in'} the curated dataset")
    return text, inside


def why(instance, st: Storage, sample_id: str, recipe: str) -> tuple[str, bool]:
    return explain(recipe_ledger(instance, st, recipe), sample_id, recipe)
