"""`curated_dataset[recipe × domain]`: a recipe applied to one domain, as an immutable version.

Each version lives at `curated/<recipe>/<domain>/<input hash>/` (shards, `ledger.parquet`,
`manifest.json` written last as the completion marker) and is never overwritten or deleted, so
a checkpoint trained on an older version can always be traced and re-read. The Dagster data
version is the hash of the shards' contents: a recipe edit that keeps the same samples changes
nothing downstream.
"""

import dagster as dg
import polars as pl

from mm_assets.automation import ON_CHANGED_DATA
from mm_assets.curated.compose import add_generated, compose
from mm_assets.curated.writer import write_curated_shards
from mm_assets.metadata import bytes_digest, content_digest, markdown_table
from mm_assets.partitions import recipe_domain_partitions
from mm_assets.recipes.assets import section_key
from mm_assets.recipes.sections import section_versions, step_params_hash
from mm_assets.steps import STEP_BY_KIND, STEPS
from mm_assets.storage import parquet_bytes
from resources.data_source import MammothSourceResource
from resources.json_io_manager import mapped_pointer, read_pointers
from resources.recipes import RecipesResource
from resources.storage import StorageResource

CURATED_CODE_VERSION = "1"
BY_DOMAIN = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="domain")
BY_RECIPE = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="recipe")


@dg.asset(group_name="curated", partitions_def=recipe_domain_partitions, code_version=CURATED_CODE_VERSION,
          kinds={"webdataset", "parquet"}, automation_condition=ON_CHANGED_DATA,
          ins={"raw_shards": dg.AssetIn(partition_mapping=BY_DOMAIN),
               "samples": dg.AssetIn(partition_mapping=BY_DOMAIN)},
          # every registered step's decisions (the step interface: see mm_assets/curated/compose.py)
          deps=[*(dg.AssetDep(s.decisions_asset, partition_mapping=BY_RECIPE) for s in STEPS),
                dg.AssetDep(section_key("plan"), partition_mapping=BY_RECIPE)],
          description="A recipe's decisions applied in order to one domain: an immutable WebDataset version, "
                      "its per-sample decision ledger and a manifest (counts per step, shard hashes, inputs).")
def curated_dataset(context: dg.AssetExecutionContext, raw_shards: dict, samples: dict, storage: StorageResource,
                    recipes: RecipesResource, mammoth: MammothSourceResource) -> dg.Output[dict]:
    keys = context.partition_key.keys_by_dimension
    name, domain = keys["recipe"], keys["domain"]
    recipe = recipes.get(name)
    raw_ptr, samples_ptr = mapped_pointer(raw_shards, domain), mapped_pointer(samples, domain)
    st = storage.get()
    steps_in = [(kind, read_pointers(st, STEP_BY_KIND[kind].decisions_asset, [name])[name])
                for kind, _ in recipe.steps]
    sections = section_versions(recipe)
    version = content_digest([CURATED_CODE_VERSION, raw_ptr["version"], samples_ptr["version"],
                              [(k, p["version"]) for k, p in steps_in], sections["plan"], mammoth.samples_per_shard])
    out = st.child(f"curated/{name}/{domain}/{version}")
    reused = out.exists("manifest.json")
    if reused:
        context.log.info(f"{name}/{domain}: inputs unchanged, reusing {out.uri('')}")
        manifest = out.read_json("manifest.json")
    else:
        table = st.read_parquet(samples_ptr["root"])
        sample_ids = table["sample_id"].to_list()
        step_tables = [(kind, st.read_parquet(f"{p['root']}/decisions.parquet").filter(pl.col("domain") == domain))
                       for kind, p in steps_in]
        weight = recipe.weight(domain)
        ledger, copies = compose(sample_ids, name, step_tables, weight,
                                 weights_hash=content_digest(recipe.domain_weights)[:12])
        raw = st.child(raw_ptr["root"])
        raw_manifest = raw.read_json("manifest.json")
        rewrites = {}
        rephrase = dict(steps_in).get("rephrase")
        if rephrase is not None:
            kept = [sid for sid, n in copies.items() if n]
            rewrites = {sid: js.encode() for sid, js in st.read_parquet(f"{rephrase['root']}/rewrites.parquet")
                        .filter(pl.col("sample_id").is_in(kept)).iter_rows()}
        additions = {}
        generated = dict(steps_in).get("mmgen")
        if generated is not None:
            additions, generated_rows = add_generated(
                st.read_parquet(f"{generated['root']}/generated.parquet").filter(pl.col("domain") == domain),
                copies, name, step_params_hash("mmgen", recipe.step("mmgen")))
            ledger = pl.concat([ledger, generated_rows])
        shards = write_curated_shards(raw, raw_manifest, copies, out, mammoth.samples_per_shard, rewrites, additions)
        ledger_bytes = parquet_bytes(ledger)
        out.write_bytes("ledger.parquet", ledger_bytes)
        per_step = {}
        for (kind, ptr), (_, params) in zip(steps_in, recipe.steps):
            rows = ledger.filter(pl.col("step") == kind)
            per_step[kind] = {"params": params.model_dump(mode="json"),
                              "params_hash": step_params_hash(kind, params),
                              "decisions": {"asset": STEP_BY_KIND[kind].decisions_asset, "partition": name,
                                            "version": ptr["version"]},
                              **{d: int(n) for d, n in rows.group_by("decision").len().iter_rows()}}
        manifest = {
            "recipe": name, "domain": domain, "version": content_digest([s["sha256"] for s in shards]),
            "recipe_text": recipe.text, "recipe_sections": sections,
            "steps": [k for k, _ in recipe.steps], "per_step": per_step, "domain_weight": weight,
            "samples_in": len(sample_ids), "samples_out": sum(s["samples"] for s in shards),
            "unique_samples_out": sum(1 for n in copies.values() if n),
            "generated_samples_out": sum(len(v) for v in additions.values()),
            "inputs": {"raw_shards": {"partition": domain, "version": raw_ptr["version"], "root": raw_ptr["root"],
                                      "shards": {s["tar"]: s["sha256"] for s in raw_manifest["shards"]}},
                       "samples": {"partition": domain, "version": samples_ptr["version"],
                                   "root": samples_ptr["root"]}},
            "shards": shards, "ledger": {"path": "ledger.parquet", "sha256": bytes_digest(ledger_bytes),
                                         "rows": ledger.height},
            "code_version": CURATED_CODE_VERSION,
        }
        out.write_json("manifest.json", manifest)
    counts = {k: {d: v for d, v in s.items() if isinstance(v, int)} for k, s in manifest["per_step"].items()}
    return dg.Output(
        {"root": f"curated/{name}/{domain}/{version}", "version": manifest["version"]},
        data_version=dg.DataVersion(manifest["version"]),
        metadata={
            "uri": out.uri(""), "reused": reused, "version": manifest["version"],
            "samples_in": manifest["samples_in"], "samples_out": manifest["samples_out"],
            "unique_samples_out": manifest["unique_samples_out"],
            "steps": dg.MetadataValue.json(manifest["steps"]), "counts_per_step": dg.MetadataValue.json(counts),
            "shards": len(manifest["shards"]),
            "shard_sha256": dg.MetadataValue.json({s["tar"]: s["sha256"] for s in manifest["shards"]}),
            "ledger_rows": manifest["ledger"]["rows"], "recipe_sections": dg.MetadataValue.json(manifest["recipe_sections"]),
            "preview": dg.MetadataValue.md(markdown_table(pl.DataFrame(manifest["shards"]))),
        },
    )
