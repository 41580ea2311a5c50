"""Training the tiny SigLIP2 on the sample pool (the embedded default's embedder).

Objective (all three are SigLIP's pairwise sigmoid loss, Zhai et al. 2023: logits =
t * z_a @ z_b.T + b, label +1 on the diagonal and -1 elsewhere, -log sigmoid(label * logit)
summed over the batch matrix and divided by the batch size):

1. image <-> text: the model's own loss (``Siglip2Model(..., return_loss=True)``, which is
   exactly that loss with the model's `logit_scale`/`logit_bias`), on (augmented image, text)
   pairs of the image rows; text = first question + first answer.
2. image <-> image: two independently augmented views of the same images (the
   self-supervised view-consistency term that SigLIP 2 adds to the sigmoid loss; here with
   its own temperature and bias). The augmentations are exactly the near-duplicate
   transforms the embedder has to be invariant to: a small random crop (up to ~6 % per
   side), a rescale by 0.75-1.25, JPEG re-encoding at quality 30-95, small colour jitter.
   Every other image in the batch is a negative, so the embedder also learns to keep
   distinct images of the same family apart.
3. text <-> text: two views of the same text for the text tower (text-only rows are
   embedded by it): common words inserted/replaced/dropped, content words and numbers never
   touched; plus, as extra negatives, a twin of each text with one number changed (a digit
   changed or two swapped): a different sample that reads almost the same.

Batches are half "hard": a few groups of samples whose texts start alike (same template,
hence the same kind of image), so distinct look-alikes are pushed apart.

Defaults (240 steps x 64 images, tiny spec 2+2 layers, width 128, 64 patches) train in about
2.5 minutes on 2 CPU cores at demo scale (~2,100 images + 300 text-only rows).

Deterministic on CPU for a given seed and thread count: batches and augmentations come from
seeded generators (prepared in a background thread, in order), the model is built by
`build_tiny_siglip2(seed)`, torch's RNG is seeded and the thread count is fixed during
training.

No Dagster import here.
"""

from __future__ import annotations

import io
import math
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .inference import decode_image, tokenize, torch_threads
from .model import TinySiglip2Spec, build_tiny_siglip2, save_embedder, text_max_length
from .preprocess import FastSiglip2Preprocess


@dataclass(frozen=True)
class Augment:
    """Image augmentation strengths (per view)."""
    p_crop: float = 0.65              # small random crop ...
    crop_max: float = 0.08            # ... removing up to this fraction of each side in total
    p_rescale: float = 0.2            # else: rescale both sides by a factor in rescale_range
    rescale_range: tuple[float, float] = (0.75, 1.25)
    p_jpeg: float = 0.6               # JPEG re-encode ...
    jpeg_quality: tuple[int, int] = (30, 95)
    p_color: float = 0.5              # brightness/contrast jitter ...
    color_max: float = 0.05           # ... by up to +-5 %
    cache_side: int = 256             # decoded pool images are kept at most this long side


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 240
    batch_size: int = 64              # image rows per step (two views each, plus their texts)
    text_batch_size: int = 48         # texts per step for the text <-> text term (two views each);
                                      # text-only rows when there are any, else the image rows' texts
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    grad_clip: float = 1.0
    num_threads: int = 2              # torch threads while training (fixed: determinism)
    w_image_text: float = 1.0
    w_image_image: float = 2.0       # the term that makes near-duplicate images close
    w_text_text: float = 2.0         # the text tower also embeds the text-only rows
    text_hard_negatives: bool = True  # add a number-perturbed twin of each text as a negative
    hard_fraction: float = 0.5        # share of each batch drawn as same-template groups
    augment: Augment = field(default_factory=Augment)


# ----------------------------------------------------------------------------- loss


def sigmoid_loss(za: torch.Tensor, zb: torch.Tensor, log_t: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """SigLIP's loss for L2-normalised rows: row i of `za` matches row i of `zb`; every other
    pair is a negative. `zb` may have extra rows (negatives only)."""
    logits = za @ zb.T * log_t.exp() + bias
    labels = -torch.ones_like(logits)
    labels[torch.arange(len(za)), torch.arange(len(za))] = 1
    return -F.logsigmoid(labels * logits).sum() / len(za)


# ----------------------------------------------------------------------------- augmentation


def _cache_image(data: bytes, side: int) -> Image.Image:
    im = decode_image(data)
    if max(im.size) > side:
        s = side / max(im.size)
        im = im.resize((max(16, round(im.width * s)), max(16, round(im.height * s))), Image.BILINEAR)
    return im


def augment_image(im: Image.Image, rng: np.random.Generator, aug: Augment) -> tuple[Image.Image, tuple]:
    """One random view; also returns the colour jitter (applied after normalisation)."""
    w, h = im.size
    u = rng.random()
    if u < aug.p_crop:
        cw = int(w * rng.uniform(0.0, aug.crop_max))
        ch = int(h * rng.uniform(0.0, aug.crop_max))
        left, top = int(rng.integers(0, cw + 1)), int(rng.integers(0, ch + 1))
        im = im.crop((left, top, w - (cw - left), h - (ch - top)))
    elif u < aug.p_crop + aug.p_rescale:
        s = rng.uniform(*aug.rescale_range)
        im = im.resize((max(16, round(w * s)), max(16, round(h * s))), Image.BICUBIC)
    if rng.random() < aug.p_jpeg:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(rng.integers(aug.jpeg_quality[0], aug.jpeg_quality[1] + 1)))
        im = Image.open(io.BytesIO(buf.getvalue()))
        im.load()
        im = im.convert("RGB")
    jitter = (1.0, 0.0)
    if rng.random() < aug.p_color:
        jitter = (1.0 + rng.uniform(-aug.color_max, aug.color_max), rng.uniform(-aug.color_max, aug.color_max))
    return im, jitter


_WORD = re.compile(r"^[A-Za-z][A-Za-z']*$")
_NUM = re.compile(r"\d")


def function_words(texts: Iterable[str], k: int = 120) -> list[str]:
    """The `k` most frequent alphabetic words of the corpus (the words a paraphrase adds,
    drops or swaps)."""
    c = Counter(w.lower() for t in texts for w in t.split() if _WORD.match(w))
    return [w for w, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def augment_text(text: str, rng: np.random.Generator, vocab: Sequence[str]) -> str:
    """A light, meaning-keeping edit: a few common words put in front; a common word
    replaced by one to three common words, or dropped. Content words (anything outside the
    common-word list) and tokens with digits are never touched: they are what tells two
    samples apart."""
    words = text.split()
    if not words or not vocab:
        return text
    common = set(vocab)
    if rng.random() < 0.5:
        words = [vocab[int(i)] for i in rng.integers(0, len(vocab), int(rng.integers(1, 5)))] + words
    for _ in range(int(rng.integers(0, 3))):   # a common word -> one to three common words
        editable = [i for i, w in enumerate(words) if w.lower() in common]
        if editable:
            i = editable[int(rng.integers(0, len(editable)))]
            new = [vocab[int(j)] for j in rng.integers(0, len(vocab), int(rng.choice([1, 1, 2, 3])))]
            words = words[:i] + new + words[i + 1:]
    editable = [i for i, w in enumerate(words) if w.lower() in common]
    if rng.random() < 0.2 and len(editable) > 1:
        i = editable[int(rng.integers(0, len(editable)))]
        words = words[:i] + words[i + 1:]
    return " ".join(words)


def perturb_text(text: str, rng: np.random.Generator) -> str | None:
    """A *different* sample that reads almost the same (a hard negative): one digit of one
    number changed, at every occurrence of that number. None if the text has no number.
    (Words are not perturbed: a paraphrase may swap a word for a synonym, which a tiny model
    cannot tell from a different word.)"""
    nums = sorted({m.group() for m in re.finditer(r"\d+", text)})
    if not nums:
        return None
    num = nums[int(rng.integers(0, len(nums)))]
    swaps = [k for k in range(len(num) - 1) if num[k] != num[k + 1]]
    if swaps and rng.random() < 0.5:      # two neighbouring digits swapped (109 -> 190)
        k = swaps[int(rng.integers(0, len(swaps)))]
        new = num[:k] + num[k + 1] + num[k] + num[k + 2:]
    else:                                 # one digit changed
        k = int(rng.integers(0, len(num)))
        new = num[:k] + str((int(num[k]) + int(rng.integers(1, 10))) % 10) + num[k + 1:]
    return re.sub(rf"(?<!\d){num}(?!\d)", new, text)


def _template_key(text: str) -> str:
    return " ".join(text.lower().split()[:3])


def _templates(texts: Sequence[str]) -> list[list[int]]:
    by_key: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        by_key.setdefault(_template_key(t), []).append(i)
    return [v for _, v in sorted(by_key.items()) if len(v) > 1]


def _hard_batch(rng: np.random.Generator, n: int, size: int, templates: list[list[int]],
                hard_fraction: float) -> list[int]:
    """`size` distinct indices: about `hard_fraction` of them from a few templates (four
    each), the rest uniformly at random."""
    size = min(size, n)
    pick: list[int] = []
    n_hard = int(size * hard_fraction)
    if templates and n_hard:
        for k in rng.permutation(len(templates)):
            if len(pick) >= n_hard:
                break
            members = templates[int(k)]
            pick += [members[int(j)] for j in rng.permutation(len(members))[:4]]
        pick = pick[:n_hard]
    chosen = set(pick)
    pick += [int(i) for i in rng.permutation(n) if int(i) not in chosen][: size - len(pick)]
    return pick


# ----------------------------------------------------------------------------- batches


class _Batches:
    """Deterministic batch stream, prepared one step ahead in a background thread."""

    def __init__(self, images: list[Image.Image], image_texts: list[str], texts_only: list[str],
                 all_texts: list[str], prep: FastSiglip2Preprocess, tokenizer, max_len: int,
                 cfg: TrainConfig, seed: int):
        self.images, self.image_texts, self.texts_only, self.all_texts = images, image_texts, texts_only, all_texts
        self.prep, self.tokenizer, self.max_len, self.cfg, self.seed = prep, tokenizer, max_len, cfg, seed
        self.vocab = function_words(all_texts)
        # Samples whose texts start alike (same template, hence the same kind of image) go
        # into a batch together: hard negatives for both towers.
        self.text_pool = texts_only or all_texts
        self.text_templates = _templates(self.text_pool)
        self.image_templates = _templates(image_texts)
        self._q: queue.Queue = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tiny-siglip2-batches", daemon=True)
        self._thread.start()

    def _views(self, idx, rng):
        ims, jit = [], []
        for i in idx:
            im, j = augment_image(self.images[i], rng, self.cfg.augment)
            ims.append(im)
            jit.append(j)
        batch = self.prep(ims)
        pv = batch["pixel_values"].numpy()            # shares memory with the tensor
        lengths = batch["pixel_attention_mask"].numpy().sum(axis=1)
        for r, (c, b) in enumerate(jit):
            if (c, b) != (1.0, 0.0):
                pv[r, : lengths[r]] *= np.float32(c)
                pv[r, : lengths[r]] += np.float32(b)
        return batch

    def make(self, step: int) -> dict:
        cfg = self.cfg
        rng = np.random.default_rng([self.seed, step])
        out = {}
        if self.images:
            idx = _hard_batch(rng, len(self.images), cfg.batch_size, self.image_templates, cfg.hard_fraction)
            out["view1"] = self._views(idx, rng)
            out["view2"] = self._views(idx, rng)
            out["text"] = tokenize(self.tokenizer, [self.image_texts[i] for i in idx], self.max_len)
        if cfg.w_text_text > 0 and self.text_pool:
            idx = _hard_batch(rng, len(self.text_pool), cfg.text_batch_size, self.text_templates, cfg.hard_fraction)
            texts = list(dict.fromkeys(self.text_pool[i] for i in idx))   # identical texts: false negatives
            out["text_a"] = tokenize(self.tokenizer, [augment_text(t, rng, self.vocab) for t in texts], self.max_len)
            negs = [perturb_text(t, rng) for t in texts] if cfg.text_hard_negatives else []
            seen = set(texts)
            negs = [t for t in dict.fromkeys(n for n in negs if n) if t not in seen]
            out["text_b"] = tokenize(self.tokenizer, [augment_text(t, rng, self.vocab) for t in texts] + negs,
                                     self.max_len)
        return out

    def _run(self):
        step = 0
        try:
            while not self._stop.is_set() and step < self.cfg.steps:
                item = self.make(step)
                while not self._stop.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                step += 1
        except BaseException as e:  # surfaced in the training loop
            self._q.put(e)

    def get(self) -> dict:
        item = self._q.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)


# ----------------------------------------------------------------------------- training


def _normalize(z) -> torch.Tensor:
    z = z if isinstance(z, torch.Tensor) else z.pooler_output
    return F.normalize(z, dim=-1)


def train_tiny_siglip2(pairs: Iterable[tuple[bytes | None, str]], out_dir=None, steps: int = 240,
                       batch_size: int = 64, seed: int = 0, *, config: TrainConfig | None = None,
                       spec: TinySiglip2Spec | None = None, log_every: int = 0, log=print,
                       on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Build and train a tiny SigLIP2 on ``(image bytes or None, text)`` pairs.

    Image rows feed the image <-> text and image <-> image terms; text-only rows (image None)
    and the image rows' texts feed the text <-> text term. The tokenizer is trained on all the
    texts. If `out_dir` is given the trained model is written there with `save_embedder`
    (a `Storage` is not accepted here: the asset writes a local directory, then uploads it).
    Returns ``{"model", "tokenizer", "image_processor", "path", "seconds", "loss_first",
    "loss_last", "losses", "steps", "images", "texts", "config"}``.
    """
    cfg = config or TrainConfig()
    cfg = TrainConfig(**{**asdict(cfg), "steps": steps, "batch_size": batch_size,
                         "augment": cfg.augment})
    t0 = time.perf_counter()
    images, image_texts, texts_only = [], [], []
    for img, text in pairs:
        if img is None:
            texts_only.append(text)
        else:
            images.append(_cache_image(img, cfg.augment.cache_side))
            image_texts.append(text)
    all_texts = image_texts + texts_only
    model, tokenizer, image_processor = build_tiny_siglip2(seed, all_texts, spec)
    t_data = time.perf_counter() - t0

    aux = torch.nn.ParameterDict({
        "ii_log_t": torch.nn.Parameter(torch.tensor([math.log(10.0)])),
        "ii_bias": torch.nn.Parameter(torch.tensor([-10.0])),
        "tt_log_t": torch.nn.Parameter(torch.tensor([math.log(10.0)])),
        "tt_bias": torch.nn.Parameter(torch.tensor([-10.0])),
    })
    params = list(model.parameters()) + list(aux.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))

    def lr_at(step):
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        prog = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * prog))

    prep = FastSiglip2Preprocess(image_processor)
    batches = _Batches(images, image_texts, texts_only, all_texts, prep, tokenizer, text_max_length(model),
                       cfg, seed)
    losses = []
    model.train()
    try:
        with torch_threads(cfg.num_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for step in range(cfg.steps):
                b = batches.get()
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                loss = torch.zeros(())
                parts = {}
                if "view1" in b:
                    out = model(input_ids=b["text"]["input_ids"], pixel_values=b["view1"]["pixel_values"],
                                pixel_attention_mask=b["view1"]["pixel_attention_mask"],
                                spatial_shapes=b["view1"]["spatial_shapes"], return_loss=True)
                    parts["it"] = out.loss
                    if cfg.w_image_image > 0:
                        z2 = _normalize(model.get_image_features(**b["view2"]))
                        parts["ii"] = sigmoid_loss(out.image_embeds, z2, aux["ii_log_t"], aux["ii_bias"])
                if "text_a" in b:
                    ta = _normalize(model.get_text_features(**b["text_a"]))
                    tb = _normalize(model.get_text_features(**b["text_b"]))
                    parts["tt"] = sigmoid_loss(ta, tb, aux["tt_log_t"], aux["tt_bias"])
                weights = {"it": cfg.w_image_text, "ii": cfg.w_image_image, "tt": cfg.w_text_text}
                for k, v in parts.items():
                    loss = loss + weights[k] * v
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                losses.append({k: round(float(v.detach()), 5) for k, v in parts.items()}
                              | {"total": round(float(loss.detach()), 5)})
                if on_step is not None:
                    on_step(step, losses[-1])
                if log_every and (step % log_every == 0 or step == cfg.steps - 1):
                    log(f"step {step} {losses[-1]} {time.perf_counter() - t0:.1f}s")
    finally:
        batches.close()
    model.eval()
    seconds = time.perf_counter() - t0
    path = save_embedder(model, tokenizer, image_processor, out_dir) if out_dir is not None else None
    return {"model": model, "tokenizer": tokenizer, "image_processor": image_processor, "path": path,
            "seconds": seconds, "data_seconds": t_data, "steps": cfg.steps, "images": len(images),
            "texts": len(all_texts), "text_only": len(texts_only), "losses": losses,
            "loss_first": losses[0]["total"] if losses else None,
            "loss_last": losses[-1]["total"] if losses else None,
            "config": asdict(cfg), "spec": asdict(spec or TinySiglip2Spec())}


def training_pairs(shards: Iterable) -> list[tuple[bytes | None, str]]:
    """``(image bytes or None, text)`` for every sample of the WebDataset shards, in order
    (text = `text_for_sample` of the first question and answer)."""
    from .inference import iter_shard_samples, text_for_sample

    out = []
    for _, meta, fields in iter_shard_samples(shards):
        conv = meta["conversations"]
        text = text_for_sample(conv[0]["value"].replace("<image>", ""), conv[1]["value"] if len(conv) > 1 else "")
        img = meta.get("image")
        out.append((fields[img["ext"]] if img else None, text))
    return out
