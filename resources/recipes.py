"""The recipes resource: where the curation recipe files live."""

import dagster as dg
from pydantic import Field

from mm_assets.recipes.schema import RECIPE_NAME, Recipe, RecipeError, load_recipe, load_recipes, recipe_files


class RecipesResource(dg.ConfigurableResource):
    """A directory of recipe YAML files, one per recipe; the file name is the recipe name."""

    directory: str = Field(description="directory holding <recipe>.yaml files")

    def names(self) -> list[str]:
        return sorted(recipe_files(self.directory))

    def partition_names(self) -> list[str]:
        """The files whose names can be recipes (a file named `Bad Name.yaml` is rejected by its
        name and never becomes a `recipe` partition)."""
        return [n for n in self.names() if RECIPE_NAME.match(n)]

    def load_all(self) -> dict[str, Recipe | RecipeError]:
        return load_recipes(self.directory)

    def valid(self) -> dict[str, Recipe]:
        """The recipes that can run (rejected files left out)."""
        return {n: r for n, r in self.load_all().items() if isinstance(r, Recipe)}

    def get(self, name: str) -> Recipe:
        """The validated recipe; raises RecipeError (file, key, reason) when it cannot run."""
        path = recipe_files(self.directory).get(name)
        if path is None:
            raise RecipeError(f"{self.directory}/{name}.yaml", "", "recipe file not found (deleted or renamed?)")
        return load_recipe(path)
