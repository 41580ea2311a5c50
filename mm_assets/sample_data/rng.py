"""Deterministic random streams, one per drawn item.

Every item is drawn from its own stream keyed by (seed, *key), so an item's content does not
depend on which process draws it or in which order items are drawn.
"""

from __future__ import annotations

import hashlib
import random


def rng_for(seed: int, *key: object) -> random.Random:
    """A `random.Random` whose state depends only on `seed` and `key` (ints and strings)."""
    digest = hashlib.sha256(repr((int(seed), *key)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))
