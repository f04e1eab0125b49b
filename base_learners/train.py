"""Train one level-0 learner on face crops, and predict logits with it.

Leakage (docs/design.md rule 2): `fit` only ever receives the training folds. Early stopping, when on,
watches an inner grouped split of those (GroupShuffleSplit on `groups`: a fake and its original stay
on one side), never the held-out fold. With `inner_val_frac = 0` it trains a fixed number of epochs.

Class balance and log loss: the final metric is log loss, and the held-out folds have the same ~4:1
fake:real prior as the training folds, so plain BCE (`balance: none`, the default) already estimates
P(fake | face) at the right prior. Re-weighting (`pos_weight`) or re-sampling (`sampler`) trains a
model whose logits are shifted by log(n_real / n_fake); with `prior_correction` (default on) that
shift is undone after training by the model's `logit_offset` buffer (saved in its state dict), so
every balance mode returns logits on the training prior (exactly so at the optimum of the
re-weighted loss, approximately for a real model). The stacker calibrates again on top.

Determinism: on CPU, the same seed gives bit-identical weights and predictions (seeded torch RNG
for dropout, batch order and augmentation drawn from (seed, epoch[, row]) so the worker count does
not matter, and deterministic algorithms while fitting). Weight initialisation happens in
`build_learner`: call `seed_everything(seed)` before building the model.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from sklearn.model_selection import GroupShuffleSplit
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from base_learners.augment import AugmentConfig, augment, center_crop, resize
from base_learners.finetune import head_only, lambda_scheduler, param_groups
from base_learners.sbi import (
    LABELS,
    SELF_BLENDED,
    TARGETS,
    BlendBatchSampler,
    BlendedCrops,
    FaceRegions,
    SBIConfig,
    copies_needed,
    reals_only,
    validation_set,
)
from base_learners.views import AlignedCrops, source_landmarks, view_crops
from features.common import ConfigError, added_field
from features.devices import resolve_device  # noqa: F401  (benchmarks and oof.py import it from here)
from features.losses import log_loss_from_logits

BALANCE_MODES = ("none", "pos_weight", "sampler")
AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
WARMUP_START_FACTOR = 0.01  # the first warmup step runs at 1 % of the peak learning rate
PIXEL_MAX = 255.0


@dataclass
class TrainConfig:
    """How one learner is trained and how it predicts. CUDA-only flags are no-ops on CPU."""

    epochs: int = 3
    batch_size: int = 32
    predict_batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_frac: float = 0.1  # fraction of all steps spent in linear warmup
    min_lr_frac: float = 0.01  # cosine decays to lr * min_lr_frac
    grad_clip_norm: float = 0.0  # 0: off
    balance: str = "none"  # none | pos_weight | sampler (see the module docstring)
    prior_correction: bool = True  # undo the prior shift of pos_weight / sampler after training
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    inner_val_frac: float = 0.0  # fraction of training groups held out for early stopping
    early_stopping_patience: int = 0  # 0: fixed epochs
    amp: bool = True  # autocast on CUDA
    amp_dtype: str = "bfloat16"  # bfloat16 | float16 (float16 adds a GradScaler)
    channels_last: bool = True  # on CUDA
    tta_flip: bool = False  # predict_logits averages the logits of the crop and its mirror
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int | None = None  # torch threads during fit/predict (None: as is); 1 avoids
    # oversubscription when other processes share a small CPU
    num_workers: int = 0
    deterministic: bool = True  # torch.use_deterministic_algorithms while fitting
    # what the learner learns to separate: labels (the training folds' reals and fakes) or
    # self_blended (their reals and blends of them, base_learners.sbi; the fakes are not read).
    # Added fields: at their defaults they are left out of every unit key (features.common.added_field)
    target: str = added_field(LABELS)
    sbi: SBIConfig | None = added_field(None)  # the recipe of self_blended (None there: SBIConfig())
    # fine-tuning a pretrained trunk (base_learners.finetune): its rate is lr * trunk_lr_mult, and
    # the first head_only_epochs train the head alone on the fixed trunk
    trunk_lr_mult: float = added_field(1.0)
    head_only_epochs: int = added_field(0)

    def __post_init__(self) -> None:
        if self.target == SELF_BLENDED and self.sbi is None:
            self.sbi = SBIConfig()  # resolved here, so a unit key holds the recipe it trained with
        validate(self)  # on load, not after the face stage


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict]
    inner_val_idx: np.ndarray | None = None  # rows of the training data used for early stopping
    best_epoch: int | None = None
    logit_offset: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA); call before build_learner so initial weights are reproducible."""
    torch.manual_seed(seed)


def validate(cfg: TrainConfig) -> None:
    if cfg.balance not in BALANCE_MODES:
        raise ConfigError(f"balance {cfg.balance!r} is not one of {BALANCE_MODES}")
    if cfg.amp_dtype not in AMP_DTYPES:
        raise ConfigError(f"amp_dtype {cfg.amp_dtype!r} is not one of {sorted(AMP_DTYPES)}")
    if cfg.early_stopping_patience > 0 and not 0.0 < cfg.inner_val_frac < 1.0:
        raise ConfigError(
            "early_stopping_patience > 0 needs 0 < inner_val_frac < 1 (an inner split of the "
            f"training data); got inner_val_frac={cfg.inner_val_frac}"
        )
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be >= 1; got {cfg.epochs}, {cfg.batch_size}")
    if not cfg.trunk_lr_mult > 0:
        raise ConfigError(f"trunk_lr_mult must be > 0 (head_only_epochs fixes the trunk); got {cfg.trunk_lr_mult}")
    if not 0 <= cfg.head_only_epochs < cfg.epochs:
        raise ConfigError(f"head_only_epochs must be in [0, epochs={cfg.epochs}) so the trunk trains "
                          f"at all (a frozen trunk is a learner variant); got {cfg.head_only_epochs}")
    _validate_target(cfg)


def _validate_target(cfg: TrainConfig) -> None:
    if cfg.target not in TARGETS:
        raise ConfigError(f"target {cfg.target!r} is not one of {TARGETS}")
    if cfg.target == LABELS and cfg.sbi is not None:
        raise ConfigError("sbi is the recipe of target self_blended; with target labels set sbi to null")
    if cfg.target == SELF_BLENDED:
        if cfg.balance != "none":  # every batch holds reals and blends in sbi.blend_ratio already
            raise ConfigError(f"target self_blended balances its batches itself; set balance none, not {cfg.balance!r}")
        cfg.sbi.batch_split(cfg.batch_size)


def _check_crops(crops) -> None:
    """(N, S, S, 3) uint8 RGB crops, or the crop stacks of pair/track items (base_learners.inputs)."""
    shape = crops.frame_shape if hasattr(crops, "frame_shape") else crops.shape[1:]
    if len(shape) != 3 or shape[-1] != 3 or crops.dtype != np.uint8:
        raise ValueError(f"crops must be (N, S, S, 3) uint8 RGB; got (N, {', '.join(map(str, shape))}) {crops.dtype}")


def inner_split(groups: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, inner-val rows) of the TRAINING data, whole groups on each side."""
    if len(np.unique(groups)) < 2:
        raise ValueError("the inner validation split needs at least two groups of training data")
    splitter = GroupShuffleSplit(n_splits=1, test_size=frac, random_state=seed)
    tr, va = next(splitter.split(np.zeros(len(groups)), groups=groups))
    return np.sort(tr), np.sort(va)


class CropDataset(Dataset):
    """Crops -> (the learner's view: central `crop_frac`, augmented, resized uint8 HWC; label).
    Normalisation happens on the device. An item that is a stack of a track's crops (T, S, S, 3)
    gives (T, size, size, 3), every crop cut and augmented alike (one RNG seed per item)."""

    def __init__(self, crops, labels, size: int, aug: AugmentConfig | None, seed: int,
                 crop_frac: float = 1.0):
        self.crops, self.labels, self.size, self.aug, self.seed = crops, labels, size, aug, seed
        self.crop_frac = crop_frac
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int):
        item = self.crops[i]
        if item.ndim == 4:
            img = np.stack([self._view(crop, i) for crop in item])
        else:
            img = self._view(item, i)
        return torch.from_numpy(np.ascontiguousarray(img)), torch.tensor(float(self.labels[i]))

    def _view(self, crop: np.ndarray, i: int) -> np.ndarray:
        img = center_crop(crop, self.crop_frac)
        if self.aug is None:
            return resize(img, self.size)
        # one RNG per (seed, epoch, row): independent of workers and batch order (and the same
        # draws for every crop of a pair or track: augment's draws do not depend on the pixels)
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        return augment(img, self.size, self.aug, rng)


def _crop_frac(model: nn.Module) -> float:
    """The learner's view (registry.build_learner sets it; a bare module sees the whole crop)."""
    return float(getattr(model, "crop_frac", 1.0))


def _to_input(x: torch.Tensor, model: nn.Module, device: torch.device, channels_last: bool):
    """uint8 (B, S, S, 3) -> the learner's input view, normalised float (B, 3, S, S) on the device
    (uint8 is 4x lighter to move; the view filters on the device, in training and prediction alike).
    Pairs (B, 2, S, S, 3) reach the view as (B, 6, S, S), this crop's channels first."""
    x = x.to(device, non_blocking=True)
    if x.ndim == 5:
        x = x.permute(0, 1, 4, 2, 3).flatten(1, 2).float().div_(PIXEL_MAX)
    else:
        x = x.permute(0, 3, 1, 2).float().div_(PIXEL_MAX)
    view = getattr(model, "input_view", None)
    if view is not None:
        x = view(x)
    mean = torch.tensor(model.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(model.std, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _logits(model: nn.Module, x, device: torch.device, cfg: TrainConfig, tta_flip: bool = False) -> torch.Tensor:
    """Float logits of a loader batch: crops (or pairs), or tracks as (frames, lengths)
    (base_learners.inputs.CropSequences.collate); with `tta_flip`, the mean over the inputs and
    their mirror images. The view and normalisation run in float32, the model under autocast."""
    lengths = None
    if isinstance(x, (tuple, list)):
        x, lengths = x
    x = _to_input(x, model, device, cfg.channels_last and device.type == "cuda")

    def run(inputs: torch.Tensor) -> torch.Tensor:
        with _autocast(device, cfg):
            return (model(inputs) if lengths is None else model(inputs, lengths)).float()

    z = run(x)
    return (z + run(torch.flip(x, dims=[3]))) / 2 if tta_flip else z


def _autocast(device: torch.device, cfg: TrainConfig):
    if device.type == "cuda" and cfg.amp:
        return torch.autocast("cuda", dtype=AMP_DTYPES[cfg.amp_dtype])
    return nullcontext()


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """torch.set_num_threads(n) for the duration of a call (None: leave as is), then restore."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _determinism(on: bool) -> Iterator[None]:
    """Deterministic algorithms for the duration of a fit, then the caller's setting back."""
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if on:  # warn_only: an op without a deterministic kernel warns instead of failing the fit
        torch.use_deterministic_algorithms(True, warn_only=not before or before_warn)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


@contextmanager
def _cudnn_autotune(device: torch.device) -> Iterator[None]:
    """cuDNN benchmark mode on CUDA (fixed input sizes: it picks the fastest kernels once), then
    the caller's setting back. GPU results are not bit-reproducible anyway; CPU runs are unaffected."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _make_scheduler(opt, cfg: TrainConfig, total_steps: int):
    """Linear warmup to each group's peak rate, then cosine down to min_lr_frac of it, stepped per
    batch. One group (the default) keeps torch's own schedulers; a trunk group at its own rate
    needs the floor relative to each group, hence base_learners.finetune's factor."""
    warmup = int(round(cfg.warmup_frac * total_steps))
    if len(opt.param_groups) > 1:
        return lambda_scheduler(opt, total_steps, warmup, WARMUP_START_FACTOR, cfg.min_lr_frac)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(1, total_steps - warmup), eta_min=cfg.lr * cfg.min_lr_frac
    )
    if warmup == 0:
        return cosine
    linear = torch.optim.lr_scheduler.LinearLR(
        opt, start_factor=WARMUP_START_FACTOR, end_factor=1.0, total_iters=warmup
    )
    return torch.optim.lr_scheduler.SequentialLR(opt, [linear, cosine], milestones=[warmup])


class EpochSampler(Sampler[int]):
    """Row order for one epoch, a pure function of (seed, epoch), like DistributedSampler.set_epoch.

    A stateful generator would make the order depend on how often the DataLoader calls iter()
    (worker processes prefetch), so runs with and without workers would differ. With `weights`,
    rows are drawn with replacement in proportion to them (the class-balancing sampler).
    """

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None):
        self.n, self.seed, self.epoch = n, seed, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]
        gen = torch.Generator().manual_seed(int(state))
        if self.weights is None:
            order = torch.randperm(self.n, generator=gen)
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=gen)
        return iter(order.tolist())


def _init_loader_worker(worker_id: int) -> None:
    """One torch thread per DataLoader worker: the workers already fill the cores, and each one's
    default pool (a thread per core) would oversubscribe them. (OpenCV is left alone: calling
    cv2.setNumThreads in a forked worker hangs when the parent has used OpenCV's pool.)"""
    torch.set_num_threads(1)


class _BlendDataset(CropDataset):
    """CropDataset over base_learners.sbi.BlendedCrops (or its aligned view): its blends are drawn
    from the epoch too."""

    def __init__(self, blended: BlendedCrops, *args, **kwargs):
        self.blended = blended  # before CropDataset sets the epoch
        super().__init__(*args, **kwargs)

    @property
    def epoch(self) -> int:
        return self.blended.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.blended.epoch = value


def _blend_view(model: nn.Module, items: BlendedCrops):
    """Real crops and their blends as the learner reads them: with `align`, every item aligned by its
    real crop's landmarks. Blending happens on the crop, before alignment, as a face swap happens in
    the frame: the target keeps its geometry (only the pasted source is shifted and scaled), so the
    real crop's landmarks hold for its blends."""
    if not getattr(model, "align", False) or isinstance(items.crops, AlignedCrops):  # blended as given
        return items
    points = source_landmarks(items.crops)  # item j blends real row j % n (BlendedCrops.source)
    return AlignedCrops(items, np.tile(points, (1 + items.copies, 1, 1)), int(model.input_size))


def _blend_loader(crops, regions: FaceRegions, model: nn.Module, cfg: TrainConfig) -> DataLoader:
    """Seeded batches of real crops and their self-blends (base_learners.sbi), both augmented alike."""
    reals, blends = cfg.sbi.batch_split(cfg.batch_size)
    items = BlendedCrops(crops, regions, cfg.sbi, cfg.seed, copies=copies_needed(reals, blends))
    ds = _BlendDataset(items, _blend_view(model, items), items.labels, model.input_size, cfg.augment, cfg.seed,
                       _crop_frac(model))
    return DataLoader(ds, batch_sampler=BlendBatchSampler(items, reals, blends), num_workers=cfg.num_workers,
                      generator=torch.Generator().manual_seed(cfg.seed),
                      worker_init_fn=_init_loader_worker if cfg.num_workers > 0 else None,
                      pin_memory=resolve_device(cfg.device).type == "cuda")


def _loader(crops, labels, model: nn.Module, cfg: TrainConfig, balance_sampler: bool,
            regions: FaceRegions | None = None) -> DataLoader:
    """Seeded batches of the model's view of the crops; call `_set_epoch` before each epoch."""
    if cfg.target == SELF_BLENDED:
        return _blend_loader(crops, regions, model, cfg)
    ds = CropDataset(view_crops(model, crops), labels, model.input_size, cfg.augment, cfg.seed, _crop_frac(model))
    weights = None
    if balance_sampler:  # each class drawn with equal probability
        counts = np.bincount(labels.astype(int), minlength=2)
        weights = 1.0 / counts[labels.astype(int)]
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        sampler=EpochSampler(len(ds), cfg.seed, weights),
        generator=torch.Generator().manual_seed(cfg.seed),  # worker base seeds
        num_workers=cfg.num_workers,
        worker_init_fn=_init_loader_worker if cfg.num_workers > 0 else None,
        drop_last=len(ds) > cfg.batch_size,  # no size-1 batch for batch norm
        pin_memory=resolve_device(cfg.device).type == "cuda",
        collate_fn=getattr(crops, "collate", None),  # pairs and tracks (base_learners.inputs)
    )


def _set_epoch(loader: DataLoader, epoch: int) -> None:
    loader.dataset.epoch = epoch
    loader.sampler.epoch = epoch


def _rebalance_weight(labels: np.ndarray, cfg: TrainConfig) -> float:
    """n_real / n_fake: the positive-class weight, and exp(prior shift) of a balanced model."""
    n_fake = int(labels.sum())
    n_real = len(labels) - n_fake
    if cfg.balance != "none" and (n_fake == 0 or n_real == 0):
        raise ValueError(
            f"balance={cfg.balance!r} needs both classes; got {n_real} real, {n_fake} fake"
        )
    return n_real / n_fake if cfg.balance != "none" else 1.0


def _train_epoch(model, loader, opt, sched, scaler, loss_fn, device, cfg, desc, progress) -> tuple[float, int]:
    """One pass over the loader; returns (mean training loss per item, face crops seen)."""
    model.train()
    total, n, faces = 0.0, 0, 0
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress):
        y = y.to(device)
        loss = loss_fn(_logits(model, x, device, cfg), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip_norm > 0:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
        scaler.step(opt)
        scaler.update()
        sched.step()
        total += float(loss.detach()) * len(y)
        n += len(y)
        faces += n_faces(x)
    return total / max(n, 1), faces


def n_faces(batch) -> int:
    """Face crops in a loader batch: one per crop, two per pair, a track's length per track (its
    pairs and one more, for a track read as pairs)."""
    if isinstance(batch, (tuple, list)):
        steps, lengths = batch
        return len(steps) + (len(lengths) if steps.ndim == 5 else 0)
    return batch.shape[0] * batch.shape[1] if batch.ndim == 5 else len(batch)


class _EarlyStopping:
    """Tracks the best inner-val epoch and keeps a copy of its weights (patience 0: never stops)."""

    def __init__(self, patience: int):
        self.patience, self.best, self.best_epoch, self.best_state = patience, math.inf, None, None

    def should_stop(self, epoch: int, val_loss: float | None, model: nn.Module) -> bool:
        if self.patience <= 0:
            return False
        if val_loss < self.best:
            self.best, self.best_epoch = val_loss, epoch
            self.best_state = copy.deepcopy(model.state_dict())
            return False
        return epoch - self.best_epoch >= self.patience


def _check_fit_inputs(crops: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> None:
    _check_crops(crops)
    if not len(crops) == len(labels) == len(groups):
        raise ValueError(
            f"crops, labels, groups differ in length: {len(crops)}, {len(labels)}, {len(groups)}"
        )
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 (REAL) or 1 (FAKE)")


def fit(
    model: nn.Module,
    crops: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    cfg: TrainConfig,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: bool = True,
    regions: FaceRegions | None = None,
) -> FitResult:
    """Train `model` on the training folds' crops; `groups` only shape the inner validation split.

    With `target: self_blended` only the real crops are read, and `regions` (aligned to `crops`;
    base_learners.sbi.face_regions, None: the default face box) say where their faces are.

    History per epoch: epoch, train_loss (the training objective, weighted if pos_weight),
    inner_val_loss (log loss of the prior-corrected logits on the inner split, or None), lr,
    seconds (the whole epoch), train_samples (face crops read: two per pair, T per track) and
    train_seconds (the optimisation steps alone, for throughput). With inner_val_frac > 0 and
    patience 0 the inner split is only monitored.
    """
    validate(cfg)
    if getattr(model, "untrainable", None):  # a setting it can be loaded with, not trained with
        raise ValueError(model.untrainable)
    labels, groups = np.asarray(labels).astype(np.float32), np.asarray(groups)
    _check_fit_inputs(crops, labels, groups)
    if cfg.target == SELF_BLENDED:  # reals only; their blends are the positives
        if hasattr(crops, "frame_shape"):
            raise ValueError("target self_blended trains frame learners only (one crop per item)")
        crops, groups, regions = reals_only(crops, labels, groups, regions, cfg.sbi)
        labels = np.zeros(len(groups), np.float32)
    device = resolve_device(cfg.device)
    tr_idx, va_idx = np.arange(len(crops)), None
    if cfg.inner_val_frac > 0:
        tr_idx, va_idx = inner_split(groups, cfg.inner_val_frac, cfg.seed)
    weight = _rebalance_weight(labels[tr_idx], cfg)
    offset = -math.log(weight) if cfg.prior_correction else 0.0

    with _threads(cfg.num_threads), _determinism(cfg.deterministic and device.type == "cpu"), \
            _cudnn_autotune(device):
        torch.manual_seed(cfg.seed)
        model.to(device)
        if cfg.channels_last and device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        model.logit_offset.zero_()  # train on raw logits; the correction is set at the end
        loader = _loader(
            crops[tr_idx], labels[tr_idx], model, cfg, cfg.balance == "sampler",
            None if regions is None else regions[tr_idx],
        )
        pos_weight = torch.tensor(weight, device=device) if cfg.balance == "pos_weight" else None
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        split = cfg.trunk_lr_mult != 1.0 or cfg.head_only_epochs > 0
        opt = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.trunk_lr_mult, split),
                                lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = _make_scheduler(opt, cfg, cfg.epochs * len(loader))
        fp16 = device.type == "cuda" and cfg.amp and cfg.amp_dtype == "float16"
        scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        history, stopper = [], _EarlyStopping(cfg.early_stopping_patience)
        name = getattr(model, "learner_name", "learner")
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            _set_epoch(loader, epoch)
            desc = f"{name} epoch {epoch + 1}/{cfg.epochs}"
            with head_only(model, epoch < cfg.head_only_epochs):
                train_loss, n_seen = _train_epoch(
                    model, loader, opt, sched, scaler, loss_fn, device, cfg, desc, progress
                )
            train_seconds = time.perf_counter() - t0
            val_loss = None
            if va_idx is not None:
                val_crops, val_labels = crops[va_idx], labels[va_idx]
                if cfg.target == SELF_BLENDED:  # the inner split's reals and a fixed blend of each
                    val_items, val_labels = validation_set(val_crops, regions[va_idx], cfg.sbi, cfg.seed)
                    val_crops = _blend_view(model, val_items)
                logits = predict_logits(model, val_crops, cfg) + offset
                val_loss = log_loss_from_logits(val_labels, logits)
            lr = opt.param_groups[-1]["lr"]  # the head's, where the trunk has its own
            metrics = dict(epoch=epoch, train_loss=train_loss, inner_val_loss=val_loss, lr=lr,
                           seconds=time.perf_counter() - t0, train_samples=n_seen,
                           train_seconds=train_seconds)
            history.append(metrics)
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            if stopper.should_stop(epoch, val_loss, model):
                break
        if stopper.best_state is not None:
            model.load_state_dict(stopper.best_state)
        model.logit_offset.fill_(offset)
        model.eval()
    return FitResult(model, history, va_idx, stopper.best_epoch, offset)


@torch.inference_mode()
def predict_logits(model: nn.Module, crops: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Logits (N,) float32 for every crop (or pair or track item of base_learners.inputs): eval
    mode, resize + normalise, no augmentation.

    Crops are resized in `cfg.num_workers` DataLoader workers with the same OpenCV resize as
    training (in this process when 0): on a GPU, resizing 380 px crops one by one in the main
    process, not the network, limited prediction to ~500 faces/s. With `tta_flip`, the logit is
    the mean over the crop and its horizontal mirror.
    """
    _check_crops(crops)
    device = resolve_device(cfg.device)
    model.to(device).eval()
    ds = CropDataset(view_crops(model, crops), np.zeros(len(crops), np.float32), model.input_size, None,
                     cfg.seed, _crop_frac(model))
    workers = cfg.num_workers if len(crops) > cfg.predict_batch_size else 0
    loader = DataLoader(ds, batch_size=cfg.predict_batch_size, shuffle=False, num_workers=workers,
                        worker_init_fn=_init_loader_worker if workers else None,
                        pin_memory=device.type == "cuda", collate_fn=getattr(crops, "collate", None))
    out = np.empty(len(crops), dtype=np.float32)
    start = 0
    with _threads(cfg.num_threads), _cudnn_autotune(device):
        for batch, _ in loader:
            z = _logits(model, batch, device, cfg, cfg.tta_flip)
            out[start : start + len(z)] = z.cpu().numpy()
            start += len(z)
    return out
