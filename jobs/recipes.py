"""The recipe sensor and the automation sensor that together recompute only what changed.

`recipe_sensor` watches the recipe directory: a new file becomes a `recipe` partition, and any
change to the files launches one observation of the recipe sections. Observations whose hash
is unchanged count as no update, so only the sections that really changed trigger the
automation sensor, which then materializes exactly their downstream assets, by data version.
Both start RUNNING (Dagster's default automation sensor would start STOPPED); the automation
sensor's target is derived from the assets: every asset that carries an automation condition.
"""

import hashlib

import dagster as dg

from mm_assets.partitions import recipe_partitions
from mm_assets.recipes.assets import RECIPE_SECTION_ASSETS
from mm_assets.recipes.schema import MAX_RECIPE_BYTES, recipe_files
from resources.recipes import RecipesResource

OBSERVE_RECIPES_JOB = dg.define_asset_job(
    "observe_recipes_job", selection=dg.AssetSelection.keys(*(a.key for a in RECIPE_SECTION_ASSETS)),
    description="Observe every recipe section: its hash per recipe is its data version.")


def directory_digest(directory: str) -> str:
    """A hash of the recipe files as they are (a recipe is at most MAX_RECIPE_BYTES: what is
    larger, or not a regular file, counts by its size and kind, and is rejected when loaded)."""
    h = hashlib.sha256()
    for name, path in recipe_files(directory).items():
        h.update(name.encode() + b"\0")
        if path.is_file():
            with open(path, "rb") as f:
                h.update(f.read(MAX_RECIPE_BYTES + 1) + str(path.stat().st_size).encode())
        else:
            h.update(b"<not a regular file>")
        h.update(b"\0")
    return h.hexdigest()[:20]


@dg.sensor(job=OBSERVE_RECIPES_JOB, minimum_interval_seconds=5, default_status=dg.DefaultSensorStatus.RUNNING,
           description="New recipe files become recipe partitions; any edit triggers one observation.")
def recipe_sensor(context: dg.SensorEvaluationContext, recipes: RecipesResource):
    names = recipes.partition_names()
    known = set(context.instance.get_dynamic_partitions(recipe_partitions.name))
    new = [n for n in names if n not in known]
    digest = directory_digest(recipes.directory)
    if digest == context.cursor and not new:
        return dg.SkipReason("recipe files unchanged")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"recipes-{digest}")],
        dynamic_partitions_requests=[recipe_partitions.build_add_request(new)] if new else [],
        cursor=digest)


def automated_keys(assets) -> list[dg.AssetKey]:
    """Every asset key that carries an automation condition."""
    return sorted((k for a in assets if isinstance(a, dg.AssetsDefinition)
                   for k, c in a.automation_conditions_by_key.items() if c is not None),
                  key=lambda k: k.to_user_string())


def build_automation_sensor(assets) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "curation_automation", target=dg.AssetSelection.assets(*automated_keys(assets)),
        # 15 s: a tick over the filled graph costs the daemon about a second of CPU; every 5 s, an idle
        # `dagster dev` on a filled instance took 27 % of a core's time in its daemon, 15 % at 30 s
        default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=15,
        description="Materializes every automated asset whose inputs changed data version: the curation chain, "
                    "training, the leaderboard.")
