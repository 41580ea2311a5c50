"""The image-swap control moves every eval item's image to another item, keeping the set of images."""

import polars as pl
import pytest

from mm_assets.evaluation.image_swap import swap_images


@pytest.mark.parametrize("n, seed", [(2, 0), (7, 3), (500, 1)])
def test_every_item_gets_another_items_image(n, seed):
    items = pl.DataFrame({"item_id": [str(i) for i in range(n)], "image": [i.to_bytes(2, "big") for i in range(n)],
                          "question": [f"q{i}" for i in range(n)]})
    swapped = swap_images(items, seed)
    assert swapped["item_id"].to_list() == items["item_id"].to_list()
    assert swapped["question"].to_list() == items["question"].to_list()
    assert all(a != b for a, b in zip(items["image"], swapped["image"]))
    assert sorted(swapped["image"].to_list()) == items["image"].to_list()


def test_one_item_cannot_be_swapped():
    with pytest.raises(ValueError, match="at least two"):
        swap_images(pl.DataFrame({"item_id": ["a"], "image": [b"x"]}))
