"""The training loop: seeded, resumable, writing sealed checkpoints (no Dagster import).

``train(config, checkpoint_in, shard_paths, out_dir_fn, log_fn)`` fine-tunes a LLaVA-format
checkpoint (``LlavaForConditionalGeneration`` + its processor) on curated WebDataset shards:

* data: :func:`mm_assets.training.data.load_dataset` (chat template, assistant-only labels,
  one BOS); per epoch a seeded permutation (``torch.Generator`` seeded from ``(seed, epoch)``)
  orders the samples, then either :func:`~mm_assets.training.packing.first_fit` packs them
  into rows of ``max_len`` tokens (``packing=True``) or each sample is its own padded row;
  rows are grouped into micro-batches of ``batch_size`` rows and ``grad_accum`` micro-batches
  make one optimizer step. The whole plan (every epoch) is computed up front from the token
  lengths, so the total step count — and the LR schedule — is known and identical for a
  straight and a resumed run. The length of training is ``epochs``, or ``budget_tokens``:
  epochs follow one another (each its own permutation) until the non-padding tokens of the
  steps so far reach the budget, so a recipe that keeps half the data sees it twice as often
  and every recipe trains on the same number of tokens (within one step's worth).
* loss: token-level cross entropy over the target tokens of the *whole step* (sum over all
  micro-batches divided by the step's target-token count), so gradient accumulation gives
  the gradient of the same objective as one large batch. The LM head runs only at labelled
  positions, and a packed row's samples attend one at a time
  (:mod:`~mm_assets.training.segment_attention`, ``attn_implementation="segments"``): the same
  loss and gradients as the dense path (logits everywhere, the 4D block mask over the row,
  tested), 1.6–1.9× its tokens/s on the demo's data.
* optimizer: AdamW (no weight decay on biases and norm weights), gradient clipping, LR from
  :func:`mm_assets.training.schedule.lr_at`. The vision tower is frozen (``requires_grad``
  False, kept in eval mode, not given to the optimizer); projector and language model train.
* checkpoints: at every epoch end (``save_each_epoch``), every ``save_every_steps`` steps, at
  the first step reaching each of ``checkpoint_fractions`` of the token budget (so the
  score-vs-compute curves of runs with the same budget share their x-axis), at the last step
  and when a run stops early (``stop_after_steps``) — ``save_pretrained`` (safetensors) +
  processor, ``optimizer.pt`` (optimizer state + torch RNG state, loaded back with
  ``weights_only=True``), ``trainer_state.json`` (step, plan fingerprint, loss history), then
  :func:`mm_assets.checkpoints.seal_local_checkpoint` (manifest with file hashes, ``COMPLETE``
  marker last). ``out_dir_fn(epoch=, step=)`` names the directory: a local path, or an
  ``s3://`` (any fsspec) URI, in which case the checkpoint is built and sealed in a local
  temporary directory and uploaded through :class:`mm_assets.storage.Storage` (with
  ``storage_options``: endpoint, credentials) with the marker uploaded last.
  ``trainer_state.json`` names no location (the parent and the base model are in the
  manifest, which the checkpoint's version does not hash): the same run writes the same files
  wherever its checkpoints and base model are stored.
* resume: ``resume_from`` (a complete checkpoint written by this trainer, e.g.
  :func:`latest_resumable`) restores weights, optimizer and RNG state and continues at the
  next step of the same plan: the remaining losses and the final weights equal those of an
  uninterrupted run.
* logging: ``log_fn(dict)`` once per optimizer step with ``step``, ``epoch``, ``loss``,
  ``lr``, ``grad_norm``, ``tokens`` (non-padding context + target tokens), ``target_tokens``,
  ``padded_tokens`` (row slots incl. padding), ``step_time_s`` and ``tokens_per_s``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mm_assets.checkpoints import MARKER, seal_local_checkpoint, upload_sealed, verify_checkpoint
from mm_assets.scratch import scratch_dir
from mm_assets.storage import Storage, local_dir

from .data import IGNORE_INDEX, EncodedSample, load_dataset
from .packing import Batch, collate_packed, collate_padded, first_fit
from .schedule import lr_at, warmup_steps
from .segment_attention import NAME as SEGMENT_ATTENTION
from .segment_attention import packed_segments, use_segment_attention

TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"


@dataclass
class TrainConfig:
    training_run: str = "run"
    recipe: str | None = None
    curated_versions: Any = None          # recorded in every manifest (lineage)
    model_name: str = "tiny-llava"        # manifest "model"
    epochs: int = 1
    budget_tokens: int | None = None      # train until this many tokens (replaces `epochs`)
    checkpoint_fractions: tuple[float, ...] = ()   # fractions of the budget that get a checkpoint
    max_steps: int | None = None          # cap on the total optimizer steps of the plan
    batch_size: int = 4                   # rows per micro-batch
    grad_accum: int = 1                   # micro-batches per optimizer step
    max_len: int = 512                    # packed row capacity; longer samples are skipped
    packing: bool = True
    pack_window: int | None = 256         # open rows considered by first-fit (None: all)
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup: int | float = 0               # steps, or a fraction of the total in (0, 1)
    min_lr: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0
    seed: int = 0
    save_every_steps: int | None = None
    save_each_epoch: bool = True
    stop_after_steps: int | None = None   # stop this call after so many steps (checkpointed)
    base_model_version: str | None = None  # the content hash of the model training starts from (lineage)
    base_model_uri: str | None = None      # where that model is stored (default: `checkpoint_in`)
    start_checkpoint: dict | None = None   # {name, version} when training starts from a registered checkpoint
    freeze_vision: bool = True
    # "segments": packed rows attend one sample at a time (segment_attention); "sdpa" or "eager":
    # the packed 4D mask over the whole row (same result, every masked-out block computed too)
    attn_implementation: str = "segments"

    def plan_dict(self) -> dict:
        """The fields that decide the data plan and the optimisation (not logging/saving)."""
        keep = ("epochs", "budget_tokens", "max_steps", "batch_size", "grad_accum", "max_len", "packing", "pack_window",
                "lr", "schedule", "warmup", "min_lr", "weight_decay", "betas", "adam_eps", "max_grad_norm",
                "seed", "freeze_vision")
        d = asdict(self)
        return {k: (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in keep}


@dataclass
class TrainResult:
    checkpoints: list[dict] = field(default_factory=list)   # {"path", "step", "epoch", "manifest"}
    history: list[dict] = field(default_factory=list)       # every step so far (resumed runs included)
    skipped: dict = field(default_factory=dict)             # skip reason -> count
    samples: int = 0
    total_steps: int = 0
    tokens_planned: int = 0                                 # non-padding tokens of the whole plan
    tokens_per_epoch: int = 0                               # non-padding tokens of one pass over the data
    final_step: int = 0
    stopped_early: bool = False


# ----------------------------------------------------------------------------- plan


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).tolist()


def plan_epoch(lengths: Sequence[int], cfg: TrainConfig, epoch: int) -> list[list[list[list[int]]]]:
    """Steps of one epoch: ``steps[k]`` = micro-batches, each a list of rows of sample indices."""
    order = epoch_order(len(lengths), cfg.seed, epoch)
    if cfg.packing:
        packed = first_fit([lengths[i] for i in order], cfg.max_len, window=cfg.pack_window)
        rows = [[order[j] for j in row] for row in packed]
    else:
        rows = [[i] for i in order]
    micro = [rows[i:i + cfg.batch_size] for i in range(0, len(rows), cfg.batch_size)]
    return [micro[i:i + cfg.grad_accum] for i in range(0, len(micro), cfg.grad_accum)]


def step_tokens(step: list, lengths: Sequence[int]) -> int:
    """Non-padding tokens of one planned step (what the loss and the budget count)."""
    return sum(lengths[i] for rows in step for row in rows for i in row)


def _closest_to_budget(step: list, lengths: Sequence[int], remaining: int) -> list:
    """The last step of a budgeted plan cut to the whole rows whose tokens come closest to the
    `remaining` budget (none: the previous step ends the plan): runs of any data size end within
    half a row of it."""
    rows = [(m, row) for m, rows in enumerate(step) for row in rows]
    best, total, best_gap = 0, 0, remaining
    for n, (_, row) in enumerate(rows, start=1):
        total += sum(lengths[i] for i in row)
        gap = abs(total - remaining)
        if gap < best_gap:
            best, best_gap = n, gap
    out: list[list] = [[] for _ in step]
    for m, row in rows[:best]:
        out[m].append(row)
    return [rows_ for rows_ in out if rows_]


def make_plan(lengths: Sequence[int], cfg: TrainConfig) -> list[list]:
    plan, total = [], 0
    if cfg.budget_tokens is not None:
        if sum(lengths) <= 0:
            raise ValueError("no tokens to train on")
        seen, e = 0, 0
        while seen < cfg.budget_tokens:
            steps = []
            for step in plan_epoch(lengths, cfg, e):
                if seen + step_tokens(step, lengths) >= cfg.budget_tokens:
                    last = _closest_to_budget(step, lengths, cfg.budget_tokens - seen)
                    if last:
                        steps.append(last)
                    seen = cfg.budget_tokens
                    break
                steps.append(step)
                seen += step_tokens(step, lengths)
            if steps:
                plan.append(steps)
            e += 1
    else:
        plan = [plan_epoch(lengths, cfg, e) for e in range(cfg.epochs)]
    if cfg.max_steps is not None:
        capped = []
        for steps in plan:
            capped.append(steps[:max(0, cfg.max_steps - total)])
            total += len(capped[-1])
        plan = capped
    return plan


def budget_checkpoints(plan: list[list], lengths: Sequence[int], cfg: TrainConfig) -> tuple[list[int], dict[int, float]]:
    """Cumulative tokens after each global step, and the steps that first reach each fraction
    of the budget (step -> fraction)."""
    cumulative, seen = [], 0
    for steps in plan:
        for step in steps:
            seen += step_tokens(step, lengths)
            cumulative.append(seen)
    marks: dict[int, float] = {}
    if cfg.budget_tokens is not None:
        for f in sorted(cfg.checkpoint_fractions):
            step = next((i + 1 for i, t in enumerate(cumulative) if t >= f * cfg.budget_tokens), len(cumulative))
            marks.setdefault(step, f)
    return cumulative, marks


def plan_fingerprint(samples: Sequence[EncodedSample], cfg: TrainConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(cfg.plan_dict(), sort_keys=True).encode())
    for s in samples:
        h.update(s.sample_id.encode())
        h.update(s.input_ids.numpy().tobytes())
        h.update(s.labels.numpy().tobytes())
    return h.hexdigest()[:20]


# ----------------------------------------------------------------------------- model / loss


def load_model_and_processor(path: str | Path, attn_implementation: str = "sdpa"):
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    kw = dict(trust_remote_code=False, local_files_only=Path(str(path)).is_dir())
    processor = AutoProcessor.from_pretrained(str(path), **kw)
    segments = attn_implementation == "segments"
    model = LlavaForConditionalGeneration.from_pretrained(
        str(path), dtype=torch.float32, attn_implementation="sdpa" if segments else attn_implementation, **kw)
    if segments:
        use_segment_attention(model)
    return model, processor


def encode_shards(checkpoint: str | Path, shard_paths: Iterable[str | Path],
                  max_len: int | None) -> tuple[list[EncodedSample], Counter]:
    """The shards encoded with `checkpoint`'s processor, for :func:`train`'s ``dataset``; samples
    this process encoded before for another run come from its memo
    (:mod:`~mm_assets.training.encoding_memo`)."""
    from transformers import AutoProcessor

    from .encoding_memo import PROCESS_MEMO, processor_fingerprint

    local = Path(str(checkpoint)).is_dir()
    processor = AutoProcessor.from_pretrained(str(checkpoint), trust_remote_code=False, local_files_only=local)
    if not local:
        return load_dataset(shard_paths, processor, max_len=max_len)
    return load_dataset(shard_paths, processor, max_len=max_len, memo=PROCESS_MEMO,
                        processor_key=processor_fingerprint(checkpoint))


def vision_tower(model):
    return model.model.vision_tower


def freeze_vision_tower(model) -> None:
    for p in vision_tower(model).parameters():
        p.requires_grad_(False)


def set_train_mode(model, freeze_vision: bool = True) -> None:
    model.train()
    if freeze_vision:
        vision_tower(model).eval()


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps)


def n_loss_tokens(batch: Batch) -> int:
    """Target tokens after the causal shift (labels[:, 1:]) — what the loss averages over."""
    return int((batch.labels[:, 1:] != IGNORE_INDEX).sum())


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross entropy over labelled positions (logit t predicts label t+1)."""
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, v), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


def target_nll(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The next-token NLL at every labelled position of the batch, in row-major order, and the
    ``(B, T - 1)`` mask of those positions (position ``t`` predicts label ``t + 1``).

    The LM head runs only where a label is: image, prompt and padding positions (about four in
    five of a packed row) need no logits; the vocabulary projection and its backward there were
    a quarter of a training step's time. A packed batch attends within each sample when the
    language model uses :mod:`~mm_assets.training.segment_attention`. Inputs go to the model's
    device; the NLL stays there.
    """
    device = next(model.parameters()).device
    kw = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.model_inputs().items()}
    if batch.attention_mask.dim() == 4 and model.config.text_config._attn_implementation == SEGMENT_ATTENTION:
        kw["packed_segments"] = packed_segments(batch.spans)
    hidden = model.model(**kw).last_hidden_state
    targets = batch.labels[:, 1:].to(device)
    keep = targets != IGNORE_INDEX
    logits = model.lm_head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), targets[keep], reduction="none"), keep


def target_loss_sum(model, batch: Batch) -> torch.Tensor:
    """:func:`token_loss_sum` of the batch, computed as :func:`target_nll` does."""
    return target_nll(model, batch)[0].sum()


def accumulate_gradients(model, micro_batches: Sequence[Batch]) -> tuple[float, int]:
    """Forward/backward every micro-batch with the loss normalised by the *step's* target count.

    Gradients accumulate into ``.grad`` (call ``zero_grad`` before). Returns (mean loss over the
    step's target tokens, that token count).
    """
    total = sum(n_loss_tokens(b) for b in micro_batches)
    if total == 0:
        return float("nan"), 0
    loss_sum = 0.0
    for b in micro_batches:
        s = target_loss_sum(model, b)
        (s / total).backward()
        loss_sum += float(s.detach())
    return loss_sum / total, total


# ----------------------------------------------------------------------------- checkpoints


def _is_uri(target: str | Path) -> bool:
    return "://" in str(target)


def _write_checkpoint_files(d: Path, model, processor, optimizer, state: dict) -> None:
    model.save_pretrained(d, safe_serialization=True)
    processor.save_pretrained(d)
    torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}, d / OPTIMIZER)
    (d / TRAINER_STATE).write_text(json.dumps(state, indent=2, sort_keys=True))


def save_checkpoint(target: str | Path, model, processor, optimizer, state: dict, manifest: dict,
                    storage_options: dict | None = None) -> dict:
    """Write and seal one checkpoint at ``target`` (local path or URI); returns the manifest.

    A sealed checkpoint is never overwritten (FileExistsError); an unsealed leftover of a
    crashed writer at the same place is replaced.
    """
    if not _is_uri(target):
        d = Path(target)
        if (d / MARKER).exists():
            raise FileExistsError(f"{d} is already a sealed checkpoint; resume instead of retraining into it")
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        _write_checkpoint_files(d, model, processor, optimizer, state)
        return seal_local_checkpoint(d, manifest)
    st = Storage(str(target), storage_options)
    if st.exists(MARKER):
        raise FileExistsError(f"{target} is already a sealed checkpoint; resume instead of retraining into it")
    with scratch_dir("mm-ckpt-") as tmp:
        d = Path(tmp)
        _write_checkpoint_files(d, model, processor, optimizer, state)
        sealed = seal_local_checkpoint(d, manifest)
        upload_sealed(d, st)
    return sealed


def _split(target: str, storage_options: dict | None = None) -> tuple[Storage, str]:
    target = str(target).rstrip("/")
    parent, _, name = target.rpartition("/")
    return Storage(parent or ".", storage_options), name


def latest_resumable(root: str | Path, prefix: str = "", storage_options: dict | None = None) -> str | None:
    """The complete checkpoint under ``root`` (a directory or URI of checkpoint directories)
    whose name starts with ``prefix``, with a trainer state and the highest step, as a
    path/URI; None if there is none."""
    st = Storage(str(root), storage_options)
    best, best_step = None, -1
    for name in st.list(""):
        if not (name.startswith(prefix) and st.exists(f"{name}/{MARKER}") and st.exists(f"{name}/{TRAINER_STATE}")):
            continue
        step = int(json.loads(st.read_bytes(f"{name}/{TRAINER_STATE}"))["global_step"])
        if step > best_step:
            best, best_step = st.uri(name), step
    return best


# ----------------------------------------------------------------------------- train


def train(config: TrainConfig, checkpoint_in: str | Path, shard_paths: Iterable[str | Path],
          out_dir_fn: Callable[..., str | Path], log_fn: Callable[[dict], None] | None = None,
          resume_from: str | Path | None = None,
          dataset: tuple[list[EncodedSample], Counter] | None = None,
          storage_options: dict | None = None) -> TrainResult:
    """Train ``checkpoint_in`` on the curated shards; see the module docstring.

    ``out_dir_fn(epoch=, step=)`` returns where the checkpoint taken after optimizer step
    ``step`` (1-based, global) in epoch ``epoch`` (1-based) goes. ``resume_from``: a complete
    checkpoint of an earlier call with the same config and data. ``dataset``: the shards already
    encoded by :func:`encode_shards` with this model's processor (training several seeds on the
    same shards encodes them once; at the study's scale encoding costs more than training).
    ``storage_options``: fsspec options of URI checkpoints (written and resumed from).
    """
    cfg = config
    log_fn = log_fn or (lambda _d: None)
    torch.manual_seed(cfg.seed)

    with _opened(resume_from, storage_options) as resume_dir:
        if resume_dir is not None:
            state = json.loads((Path(resume_dir) / TRAINER_STATE).read_text())
            model, processor = load_model_and_processor(resume_dir, cfg.attn_implementation)
        else:
            state = None
            model, processor = load_model_and_processor(checkpoint_in, cfg.attn_implementation)
        samples, skipped = dataset or load_dataset(shard_paths, processor, max_len=cfg.max_len)
        if not samples:
            raise ValueError(f"no trainable samples in the shards (skipped: {dict(skipped)})")
        pad_id = processor.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = processor.tokenizer.eos_token_id
        if cfg.freeze_vision:
            freeze_vision_tower(model)
        optimizer = make_optimizer(model, cfg)
        fingerprint = plan_fingerprint(samples, cfg)
        lengths = [s.length for s in samples]
        plan = make_plan(lengths, cfg)
        cumulative, budget_marks = budget_checkpoints(plan, lengths, cfg)
        total_steps = sum(len(e) for e in plan)
        warm = warmup_steps(total_steps, cfg.warmup)

        result = TrainResult(skipped=dict(skipped), samples=len(samples), total_steps=total_steps,
                             tokens_planned=cumulative[-1] if cumulative else 0, tokens_per_epoch=sum(lengths))
        base_model = cfg.base_model_uri or str(checkpoint_in)
        global_step, parent = 0, base_model
        history: list[dict] = []
        if state is not None:
            if state["plan_fingerprint"] != fingerprint:
                raise ValueError(f"cannot resume from {resume_from}: it was trained with another config or "
                                 f"data (plan {state['plan_fingerprint']} ≠ {fingerprint})")
            opt = torch.load(Path(resume_dir) / OPTIMIZER, weights_only=True)
            optimizer.load_state_dict(opt["optimizer"])
            torch.set_rng_state(opt["torch_rng"])
            global_step = int(state["global_step"])
            history = list(state["history"])
            parent = str(resume_from)

    result.history = history
    set_train_mode(model, cfg.freeze_vision)
    done_this_call = 0
    step_no = 0
    for e, steps in enumerate(plan):
        for k, micro_rows in enumerate(steps):
            step_no += 1
            if step_no <= global_step:
                continue                       # done before the resume point
            lr = lr_at(global_step, total_steps, cfg.lr, cfg.schedule, warm, cfg.min_lr)
            for g in optimizer.param_groups:
                g["lr"] = lr
            t0 = time.perf_counter()
            if cfg.packing:
                micro = [collate_packed([[samples[i] for i in row] for row in rows], pad_id, cfg.max_len)
                         for rows in micro_rows]
            else:
                micro = [collate_padded([samples[row[0]] for row in rows], pad_id) for rows in micro_rows]
            optimizer.zero_grad(set_to_none=True)
            loss, n_targets = accumulate_gradients(model, micro)
            params = [p for grp in optimizer.param_groups for p in grp["params"]]
            if cfg.max_grad_norm is not None:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
            else:
                grad_norm = float(torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
            optimizer.step()
            dt = time.perf_counter() - t0
            global_step += 1
            done_this_call += 1
            tokens = sum(b.n_tokens for b in micro)
            rec = {"step": global_step, "epoch": e + 1, "loss": loss, "lr": lr, "tokens": tokens,
                   "target_tokens": n_targets}
            history.append(rec)
            log_fn(dict(rec, grad_norm=grad_norm, padded_tokens=sum(b.input_ids.numel() for b in micro),
                        rows=sum(b.input_ids.shape[0] for b in micro), samples=sum(len(r) for rows in micro_rows for r in rows),
                        step_time_s=dt, tokens_per_s=tokens / dt if dt > 0 else math.inf,
                        total_steps=total_steps))

            epoch_end = k == len(steps) - 1
            stopping = cfg.stop_after_steps is not None and done_this_call >= cfg.stop_after_steps
            last = global_step == total_steps
            if ((cfg.save_every_steps and global_step % cfg.save_every_steps == 0)
                    or (epoch_end and cfg.save_each_epoch) or global_step in budget_marks or last or stopping):
                target = out_dir_fn(epoch=e + 1, step=global_step)
                state = {"global_step": global_step, "epoch": e + 1, "step_in_epoch": k + 1,
                         "steps_in_epoch": len(steps), "total_steps": total_steps,
                         "plan_fingerprint": fingerprint, "config": _state_config(cfg), "history": history}
                manifest = {"training_run": cfg.training_run, "recipe": cfg.recipe,
                            "curated_versions": cfg.curated_versions, "step": global_step, "epoch": e + 1,
                            "epoch_complete": epoch_end, "parent": parent, "base_model": base_model,
                            "model": cfg.model_name, "samples": len(samples), "total_steps": total_steps,
                            "loss": loss, "tokens_seen": cumulative[global_step - 1],
                            "budget_tokens": cfg.budget_tokens,
                            "budget_fraction": (cumulative[global_step - 1] / cfg.budget_tokens
                                                if cfg.budget_tokens else None),
                            "seed": cfg.seed, **({"base_model_version": cfg.base_model_version}
                                                 if cfg.base_model_version else {}),
                            **({"start_checkpoint": cfg.start_checkpoint} if cfg.start_checkpoint else {})}
                sealed = save_checkpoint(target, model, processor, optimizer, state, manifest, storage_options)
                result.checkpoints.append({"path": str(target), "step": global_step, "epoch": e + 1,
                                           "manifest": sealed})
                parent = str(target)
            if stopping and not last:
                result.stopped_early = True
                result.final_step = global_step
                return result
    result.final_step = global_step
    return result


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def _state_config(cfg: TrainConfig) -> dict:
    """The config as the trainer state records it: without where the base model is stored (a
    hashed file of the checkpoint must not depend on a location; the manifest records it)."""
    return {k: v for k, v in _jsonable(asdict(cfg)).items() if k != "base_model_uri"}


class _opened:
    """Context manager: a local directory for ``resume_from`` (downloaded if it is a URI),
    verified complete (marker + manifest hashes) first; yields None when there is none."""

    def __init__(self, target, storage_options: dict | None = None):
        self.target = target
        self.storage_options = storage_options
        self._cm = None

    def __enter__(self):
        if self.target is None:
            return None
        st, name = _split(str(self.target), self.storage_options)
        verify_checkpoint(st, name)
        self._cm = local_dir(st, name)
        return self._cm.__enter__()

    def __exit__(self, *exc):
        if self._cm is not None:
            return self._cm.__exit__(*exc)
        return False
