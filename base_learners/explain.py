"""Level-0 explanations: where in a face crop a learner sees a fake, as a heat map per crop.

Two methods (registry MAP_METHODS), both from captum rather than written here:

- `gradcam`: captum's LayerGradCam on the learner's target layer (base_learners.registry
  TARGET_LAYERS, named next to each learner): the layer's activations weighted by the mean
  gradient of the FAKE logit, ReLU'd, upsampled bilinearly to the input. One forward and one
  backward pass per batch of crops: cheap enough for every report.
- `lime`: captum's Lime over a grid of square cells of the learner's input; a perturbed sample
  replaces the cells it switches off with a Gaussian blur of the face, which removes the local
  texture (seams, resampling) the learners read, rather than painting grey (which the high-pass
  view would turn into a hard edge). A linear surrogate, weighted by how many cells a sample kept,
  gives one weight per cell; the map is its positive part. Hundreds of forward passes per crop: the
  slower, model-agnostic check.

Why captum: it is already in the locked dependencies (the team picked it for this), it is kept by
the PyTorch team, it works on any nn.Module given a layer handle (the MesoNets and every timm
family alike), and it offers Grad-CAM and LIME behind the same `attribute` call, so both methods
share the code that takes a map back to the crop. The `grad-cam` package would add a dependency
for the CAM family only, without LIME.

Frames: a learner sees the central `crop_frac` of the cached crop, resized to `input_size`, through
its input view (base_learners.train._to_input). Maps are computed on that input and taken back to
the cached crop's pixel frame (resized to the central square, zero outside it, where the learner
saw nothing), so every map has the crop's shape and can be laid over the crop or compared with a
region drawn in the crop. The method explains the logit of P(FAKE): high = evidence for FAKE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from base_learners.augment import center_crop, resize
from base_learners.registry import has_target_layer, target_layer
from base_learners.train import PIXEL_MAX
from base_learners.views import gaussian_kernel
from features.common import Registry

MAP_METHODS: Registry[Callable[..., np.ndarray]] = Registry("map method")
LAYER_METHODS = frozenset({"gradcam"})  # the methods that read a target layer (registry.TARGET_LAYERS)


@dataclass
class MapConfig:
    """Settings of the heat-map methods (defaults: what the reports and the benchmark use)."""

    method: str = "gradcam"  # MAP_METHODS: gradcam | lime
    batch_size: int = 64  # crops per Grad-CAM pass
    lime_samples: int = 200  # perturbed samples per crop
    lime_grid: int = 8  # LIME cells per side of the learner's input
    lime_blur_sigma: float = 3.0  # Gaussian sigma (input pixels) of what a switched-off cell shows
    lime_kernel_width: float = 0.25  # sample weight exp(-(share of cells off)^2 / width^2)
    lime_batch: int = 50  # perturbed samples per forward pass
    seed: int = 0  # LIME's sampling


class PixelModel(nn.Module):
    """A learner as a function of its input pixels in [0, 1]: view, normalisation, network (what
    train._to_input and the forward pass do), so LIME perturbs pixels, not normalised values."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(model.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(model.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        view = getattr(self.model, "input_view", None)
        if view is not None:
            x = view(x)
        return self.model((x - self.mean) / self.std)


def model_pixels(crops: np.ndarray, model: nn.Module) -> torch.Tensor:
    """uint8 (N, C, C, 3) crops -> the learner's input pixels (N, 3, S, S) in [0, 1]: its central
    crop_frac, resized to input_size with the training resize."""
    frac, size = float(getattr(model, "crop_frac", 1.0)), int(model.input_size)
    views = np.stack([resize(np.ascontiguousarray(center_crop(c, frac)), size) for c in crops])
    return torch.from_numpy(views).permute(0, 3, 1, 2).float().div_(PIXEL_MAX)


def to_crop_frame(maps: np.ndarray, crop_side: int, crop_frac: float) -> np.ndarray:
    """Input-frame maps (N, S, S) -> the cached crop's frame (N, C, C): resized back to the central
    square the learner saw (center_crop's arithmetic), zero around it."""
    keep = max(1, round(crop_side * crop_frac))  # as augment.center_crop
    keep = min(keep, crop_side)
    start = (crop_side - keep) // 2
    out = np.zeros((len(maps), crop_side, crop_side), np.float32)
    for i, m in enumerate(maps):
        out[i, start:start + keep, start:start + keep] = cv2.resize(
            m.astype(np.float32), (keep, keep), interpolation=cv2.INTER_LINEAR)
    return out


@MAP_METHODS.register("gradcam")
def gradcam(model: nn.Module, x: torch.Tensor, cfg: MapConfig) -> np.ndarray:
    """Grad-CAM maps (N, S, S) of the FAKE logit at the learner's target layer (non-negative)."""
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(PixelModel(model), target_layer(model))
    out = []
    for start in range(0, len(x), cfg.batch_size):
        batch = x[start:start + cfg.batch_size]
        attr = cam.attribute(batch, relu_attributions=True)
        attr = LayerAttribution.interpolate(attr, tuple(batch.shape[-2:]), interpolate_mode="bilinear")
        out.append(attr.detach()[:, 0].clamp_min(0.0).numpy())
    return np.concatenate(out).astype(np.float32)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 3, S, S), borders reflected (LIME's 'switched off' cells)."""
    taps = gaussian_kernel(sigma)
    r = min((len(taps) - 1) // 2, x.shape[-1] - 1)
    taps = taps[(len(taps) - 1) // 2 - r:(len(taps) - 1) // 2 + r + 1]
    taps = taps / taps.sum()
    c = x.shape[1]
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def grid_mask(size: int, cells: int) -> torch.Tensor:
    """(1, 1, S, S) integer cell ids of a cells x cells grid over an S x S input (LIME's features)."""
    edges = np.minimum(np.arange(size) * cells // size, cells - 1)
    ids = edges[:, None] * cells + edges[None, :]
    return torch.from_numpy(ids.astype(np.int64)).view(1, 1, size, size)


@MAP_METHODS.register("lime")
def lime(model: nn.Module, x: torch.Tensor, cfg: MapConfig) -> np.ndarray:
    """LIME maps (N, S, S): each grid cell carries the positive part of its surrogate weight."""
    from captum._utils.models.linear_model import SkLearnLinearRegression
    from captum.attr import Lime

    width = cfg.lime_kernel_width

    def similarity(original, perturbed, interpretable, **kwargs):
        off = 1.0 - interpretable.float().mean()
        return torch.exp(-(off ** 2) / width ** 2)

    explainer = Lime(PixelModel(model), interpretable_model=SkLearnLinearRegression(), similarity_func=similarity)
    mask = grid_mask(x.shape[-1], cfg.lime_grid)
    baselines = _blur(x, cfg.lime_blur_sigma)
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for i in range(len(x)):
            attr = explainer.attribute(x[i:i + 1], baselines=baselines[i:i + 1], feature_mask=mask,
                                       n_samples=cfg.lime_samples, perturbations_per_eval=cfg.lime_batch)
            out.append(attr.detach()[0, 0].clamp_min(0.0).numpy())
    return np.stack(out).astype(np.float32)


def mappable(model: nn.Module, method: str) -> bool:
    """Whether `method` can draw this learner's map: Grad-CAM needs a spatial layer (LIME needs none)."""
    return method not in LAYER_METHODS or has_target_layer(model)


def face_maps(models: list[nn.Module], crops: np.ndarray, cfg: MapConfig | None = None) -> np.ndarray:
    """Heat maps (N, C, C) of one learner on uint8 crops (N, C, C, 3), in the crops' pixel frame.

    `models` are the fold models of one learner that score these crops (the detector averages their
    logits): the map is the mean of their maps. Runs on the CPU with gradients on, whatever the
    caller's mode."""
    cfg = cfg or MapConfig()
    method = MAP_METHODS.get(cfg.method)
    if len(crops) == 0:
        return np.zeros((0,) + crops.shape[1:3], np.float32)
    if crops.ndim != 4 or crops.shape[1] != crops.shape[2] or crops.dtype != np.uint8:
        raise ValueError(f"face_maps takes uint8 (N, C, C, 3) crops, got {crops.dtype} {crops.shape}")
    maps = []
    with torch.inference_mode(False), torch.enable_grad():
        for model in models:
            device = next(model.parameters()).device  # a scoring detector's model goes back there
            model = model.cpu().eval()
            x = model_pixels(crops, model)
            maps.append(to_crop_frame(method(model, x, cfg), crops.shape[1], float(getattr(model, "crop_frac", 1.0))))
            model.to(device)
    return np.mean(maps, axis=0).astype(np.float32)
