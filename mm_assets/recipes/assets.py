"""`recipe/<section>[recipe]`: observable source assets, one per recipe section.

Each observation reads the recipe files and reports, per recipe partition, the hash of that
section as the data version. Dagster counts an observation as an update only when the data
version changed, so a comment or key reordering in a recipe triggers nothing downstream.
"""

import dagster as dg

from mm_assets.partitions import recipe_partitions
from mm_assets.recipes.schema import RecipeError
from mm_assets.recipes.sections import SECTION_DOC, SECTIONS, section_versions
from resources.recipes import RecipesResource


def section_key(section: str) -> dg.AssetKey:
    return dg.AssetKey(["recipe", section])


def _section_asset(section: str):
    @dg.observable_source_asset(key=section_key(section), partitions_def=recipe_partitions, group_name="recipes",
                                description=f"Hash of each recipe's {SECTION_DOC[section]}.")
    def _observe(context, recipes: RecipesResource) -> dg.DataVersionsByPartition:
        loaded = recipes.load_all()
        known = context.instance.get_dynamic_partitions(recipe_partitions.name)
        versions = {}
        for name in known:
            recipe = loaded.get(name)
            if recipe is None:
                # A deleted recipe keeps its partition and last observed version: what was made
                # from it stays traceable, and nothing downstream is invalidated.
                context.log.info(f"recipe {name}: file gone, keeping its last observed version")
                continue
            if isinstance(recipe, RecipeError):
                context.log.warning(str(recipe))
            versions[name] = section_versions(recipe)[section]
        return dg.DataVersionsByPartition(versions)
    return _observe


RECIPE_SECTION_ASSETS = [_section_asset(s) for s in SECTIONS]
