"""The image-swap control: the same eval items, each shown another item's image. A model that
uses the image loses accuracy; one that answers from the question and the answer prior does not
(no Dagster)."""

from __future__ import annotations

import numpy as np
import polars as pl


def swap_images(items: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """`items` with the `image` column permuted so that no item keeps its own image (a random
    derangement; images that are byte-identical may still coincide)."""
    n = items.height
    if n < 2:
        raise ValueError("the image-swap control needs at least two items")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    order = np.roll(order, 1)[np.argsort(order)]      # item order[i] gets the image of order[i-1]
    return items.with_columns(items["image"].gather(order).alias("image"))
