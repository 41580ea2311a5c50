"""A fast, exact equivalent of SigLIP2's PIL image preprocessing.

`Siglip2ImageProcessor(Pil)` resizes each image (PIL, bilinear) to the largest size whose
patch grid fits `max_num_patches`, rescales to [0, 1], normalises with mean/std, cuts
`patch_size` patches and pads the patch axis to `max_num_patches`. Its per-image Python and
float64 overhead costs more than the tiny model's forward pass, so inference and training
use this vectorised re-implementation when the processor is a plain SigLIP2 one (checked
by `is_plain_siglip2_processor`); the result equals the processor's to float32 rounding
(tested). Any other processor is called as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

try:  # the processor module's own size rule, so the two can never disagree
    from transformers.models.siglip2.image_processing_pil_siglip2 import get_image_size_for_max_num_patches
except Exception:  # pragma: no cover - transformers without SigLIP2
    get_image_size_for_max_num_patches = None


def is_plain_siglip2_processor(p) -> bool:
    """True if `p` is a SigLIP2 image processor with the standard pipeline (resize with a PIL
    filter, rescale, normalise, patchify) that `FastSiglip2Preprocess` reproduces."""
    if type(p).__name__ not in ("Siglip2ImageProcessorPil", "Siglip2ImageProcessor"):
        return False
    if get_image_size_for_max_num_patches is None:
        return False
    try:
        resample = int(p.resample)
    except (TypeError, ValueError):
        return False
    return (bool(p.do_resize) and bool(p.do_rescale) and bool(p.do_normalize)
            and resample in (Image.NEAREST, Image.BILINEAR, Image.BICUBIC, Image.LANCZOS, Image.BOX,
                             Image.HAMMING)
            and np.size(p.image_mean) == 3 and np.size(p.image_std) == 3)


class FastSiglip2Preprocess:
    """Callable ``images -> {"pixel_values", "pixel_attention_mask", "spatial_shapes"}``."""

    def __init__(self, image_processor):
        p = image_processor
        self.patch = int(p.patch_size)
        self.max_patches = int(p.max_num_patches)
        self.resample = int(p.resample)
        self.scale = np.float32(p.rescale_factor)
        self.mean = np.asarray(p.image_mean, dtype=np.float32)
        self.std = np.asarray(p.image_std, dtype=np.float32)
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        key = (height, width)
        if key not in self._sizes:
            self._sizes[key] = get_image_size_for_max_num_patches(height, width, self.patch, self.max_patches)
        return self._sizes[key]

    def resize(self, im: Image.Image) -> Image.Image:
        """The processor's resize (as PIL), before normalisation."""
        h, w = self.target_size(im.height, im.width)
        return im if (im.height, im.width) == (h, w) else im.resize((w, h), resample=self.resample)

    def patches_into(self, im: Image.Image, pixel_values: np.ndarray, mask: np.ndarray) -> tuple[int, int]:
        """Write one resized RGB image's patches into preallocated rows; returns the grid."""
        ps = self.patch
        a = np.asarray(im, dtype=np.uint8)
        h, w = a.shape[:2]
        gh, gw = h // ps, w // ps
        x = a.astype(np.float32)
        x *= self.scale
        x -= self.mean
        x /= self.std                                        # [h, w, 3] float32
        x = x.reshape(gh, ps, gw, ps, 3).transpose(0, 2, 1, 3, 4).reshape(gh * gw, ps * ps * 3)
        pixel_values[: gh * gw] = x
        mask[: gh * gw] = 1
        return gh, gw

    def __call__(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        n, d = len(images), self.patch * self.patch * 3
        pv = np.zeros((n, self.max_patches, d), dtype=np.float32)
        mask = np.zeros((n, self.max_patches), dtype=np.int32)
        shapes = np.zeros((n, 2), dtype=np.int64)
        for i, im in enumerate(images):
            if im.mode != "RGB":
                im = im.convert("RGB")
            shapes[i] = self.patches_into(self.resize(im), pv[i], mask[i])
        return {"pixel_values": torch.from_numpy(pv), "pixel_attention_mask": torch.from_numpy(mask),
                "spatial_shapes": torch.from_numpy(shapes)}


def make_preprocess(image_processor, fast: bool = True):
    """``images -> model inputs``: the fast path for a plain SigLIP2 processor, else the
    processor itself."""
    if fast and is_plain_siglip2_processor(image_processor):
        return FastSiglip2Preprocess(image_processor)

    def call(images):
        return dict(image_processor(images=list(images), return_tensors="pt"))
    return call
