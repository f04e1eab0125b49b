"""dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) as a torch.nn.Module.

Why: the descriptor net behind `dlib.face_recognition_model_v1` (99.38 % on LFW) is a pretrained
face backbone that ships with `face_recognition_models`, so it is available offline. dlib only runs
it as a black box; ported to PyTorch it can be batched, fine-tuned, given a fresh head, and run on a
GPU. The port reads dlib's own serialisation directly (no dlib needed to load it) and reproduces
`compute_face_descriptor` to < 1e-6 max abs difference (tests/test_dlib_resnet.py; descriptor
entries are ~0.1). On one CPU thread a 150 px chip takes ~16 ms at batch 32 (~11 ms with the model
and input in `torch.channels_last`).

The file (dlib/dnn/core.h, layers.h, tensor.h, serialize.h) is the network serialised outside-in:
`add_loss_layer` (version, loss_metric_ details, subnet), then every wrapper's version int down to
the input layer (add_layer = 2, tag/skip = 1), then the innermost add_layer's input layer
(`input_rgb_image_sized`: channel means, 150, 150) and its layer, then, on the way back out, each
add_layer's layer details (`con_4`, `affine_`, `relu_`, `max_pool_2`, `avg_pool_2`, `add_prev_`,
`fc_2`) followed by its three state bools and cached tensors. Integers are dlib's varints (a control
byte: low nibble = byte count, 0x80 = negative; then little-endian bytes); floats/doubles are a
(mantissa int64, exponent int16) pair meaning mantissa * 2**exponent; tensors (version 2) hold raw
little-endian float32. The file holds `affine_` layers (batch norm already folded, as dlib does for
inference): y = x * gamma[c] + beta[c].

Architecture (tools/python/src/face_recognition.cpp): conv 7x7/2 (32) -> affine -> relu ->
max-pool 3x3/2 -> residual blocks 3 x 32, 4 x 64 (first /2), 3 x 128 (first /2), 3 x 256 (first /2),
1 x 256 (/2) -> global average pool (256) -> fc 256 -> 128 without bias. A down-sampling block's
shortcut is a 2x2/2 average pool whose output is added with dlib's `add_prev` semantics: tensors of
different shapes are zero-padded at the end of every dimension (extra channels, bottom/right
pixels), which also pads the shortcut's missing channels. At 150 px the spatial sizes are
72, 35, 17, 8, 4 (the 3x3 main path gives 3, the pool 4: the main path is padded), 2.

Preprocessing contract (dlib/dnn/input.h, `input_rgb_image_sized<150>::to_tensor`): an aligned RGB
chip of exactly CHIP_SIZE x CHIP_SIZE (`dlib.get_face_chip(img, shape, size=150, padding=0.25)`),
x[c] = (pixel[c] - PIXEL_MEAN[c]) / PIXEL_SCALE, channels in R, G, B order. `to_input` does this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from features.faces.dlib_models import RESNET_FILE, model_file

log = logging.getLogger(__name__)

__all__ = ["CHIP_SIZE", "PIXEL_MEAN", "PIXEL_SCALE", "FEATURE_DIM", "EMBED_DIM", "DlibFaceNet",
           "DlibResNetLearner", "DLIB_VARIANTS", "load_dlib_resnet", "model_file", "parse_dlib_net", "to_input"]

CHIP_SIZE = 150  # input_rgb_image_sized<150>: dlib refuses any other chip size
PIXEL_MEAN = (122.782, 117.001, 104.298)  # R, G, B means serialised in the file (checked on load)
PIXEL_SCALE = 256.0  # to_tensor divides by 256.0 (not 255, and no std)
FEATURE_DIM = 256  # pooled trunk output
EMBED_DIM = 128  # the face descriptor
MEAN_TOLERANCE = 1e-3  # the file's means are float32 renderings of the decimals above

_SIGN_BIT, _SIZE_MASK = 0x80, 0x0F  # dlib varint control byte
_INF_EXPONENTS = {32000: np.inf, 32001: -np.inf, 32002: np.nan}  # float_details is_inf/is_ninf/is_nan
_FLOAT_BYTES = 4
_TAG_OR_SKIP_VERSION = 1  # add_tag_layer / add_skip_layer; add_layer is version 2
_ADD_LAYER_VERSION = 2
_INPUT_ADD_LAYER_VERSIONS = (2, 3)  # version 3 also stores _sample_expansion_factor
_INPUT_PREFIX = b"input"  # every dlib input layer's serialised name starts so
_STATE_BOOLS = 3  # this_layer_setup_called, gradient_input_is_stale, get_output_and_gradient_input_disabled


class _Reader:
    """Sequential reader of dlib's binary serialisation (dlib/serialize.h)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read_raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"dlib file truncated at byte {self.pos} (wanted {n} more)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def read_int(self) -> int:
        control = self.read_raw(1)[0]
        value = int.from_bytes(self.read_raw(control & _SIZE_MASK), "little")
        return -value if control & _SIGN_BIT else value

    def read_float(self) -> float:
        mantissa, exponent = self.read_int(), self.read_int()
        return float(_INF_EXPONENTS.get(exponent, np.ldexp(float(mantissa), exponent)))

    def read_string(self) -> str:
        return self.read_raw(self.read_int()).decode("latin-1")

    def read_bool(self) -> bool:
        ch = self.read_raw(1)
        if ch not in (b"0", b"1"):
            raise ValueError(f"bad dlib bool {ch!r} at byte {self.pos - 1}")
        return ch == b"1"

    def read_tensor(self) -> np.ndarray:
        """resizable_tensor: version 2 = raw float32 LE, version 1 = one float_details per value."""
        version = self.read_int()
        shape = tuple(self.read_int() for _ in range(4))  # num_samples, k, nr, nc
        n = int(np.prod(shape))
        if version == 2:
            return np.frombuffer(self.read_raw(n * _FLOAT_BYTES), "<f4").reshape(shape).copy()
        if version == 1:
            return np.array([self.read_float() for _ in range(n)], np.float32).reshape(shape)
        raise ValueError(f"unknown dlib tensor version {version}")

    def read_alias(self) -> tuple[int, int, int, int]:
        if self.read_int() != 1:
            raise ValueError("unknown dlib alias_tensor version")
        return tuple(self.read_int() for _ in range(4))


@dataclass
class DlibLayer:
    """One computational layer as stored: its dlib name, parameters and hyper-parameters."""

    kind: str
    params: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


_WINDOW_FIELDS = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")  # in serialisation order


def _ints(r: _Reader, names: tuple[str, ...]) -> dict:
    return {name: r.read_int() for name in names}


def _con(r: _Reader) -> DlibLayer:
    params = r.read_tensor().reshape(-1)
    meta = _ints(r, ("num_filters", *_WINDOW_FIELDS))
    meta.update(filters=r.read_alias(), biases=r.read_alias())
    meta["multipliers"] = [r.read_float() for _ in range(4)]  # learning-rate / weight-decay, unused here
    return DlibLayer("con", params, meta)


def _affine(r: _Reader) -> DlibLayer:
    params = r.read_tensor().reshape(-1)
    meta = dict(gamma=r.read_alias(), beta=r.read_alias(), mode=r.read_int())
    return DlibLayer("affine", params, meta)


def _pool(kind: str):
    def read(r: _Reader) -> DlibLayer:
        return DlibLayer(kind, None, _ints(r, _WINDOW_FIELDS))
    return read


def _fc(r: _Reader) -> DlibLayer:
    meta = dict(num_outputs=r.read_int(), num_inputs=r.read_int())
    params = r.read_tensor().reshape(-1)
    meta.update(weights=r.read_alias(), biases=r.read_alias(), bias_mode=r.read_int())
    meta["multipliers"] = [r.read_float() for _ in range(4)]
    return DlibLayer("fc", params, meta)


_DETAIL_READERS = {
    "con_4": _con, "affine_": _affine, "relu_": lambda r: DlibLayer("relu"),
    "max_pool_2": _pool("max_pool"), "avg_pool_2": _pool("avg_pool"),
    "add_prev_": lambda r: DlibLayer("add_prev"), "fc_2": _fc,
}


def _details(r: _Reader) -> DlibLayer:
    name = r.read_string()
    if name not in _DETAIL_READERS:
        raise ValueError(f"unsupported dlib layer {name!r} at byte {r.pos}")
    return _DETAIL_READERS[name](r)


def _layer_state(r: _Reader, tensors: int) -> None:
    """Skip an add_layer's training state: three bools and its cached tensors (empty in this file)."""
    for _ in range(_STATE_BOOLS):
        r.read_bool()
    for _ in range(tensors):
        r.read_tensor()


@dataclass
class DlibNet:
    """A parsed dlib metric network: loss and input settings, and its layers input-first."""

    loss: dict
    pixel_mean: tuple[float, float, float]
    chip_shape: tuple[int, int]
    layers: list[DlibLayer]


def _next_is_input_layer(r: _Reader) -> bool:
    """Peek: does a string naming an input layer (`input_...`) start here? It ends the version list."""
    start = r.pos
    try:
        length = r.read_int()
        return length > 0 and r.data[r.pos:r.pos + len(_INPUT_PREFIX)] == _INPUT_PREFIX
    finally:
        r.pos = start


def _read_input_layer(r: _Reader) -> tuple[tuple[float, float, float], tuple[int, int]]:
    name = r.read_string()
    if name != "input_rgb_image_sized":
        raise ValueError(f"expected input_rgb_image_sized, found {name!r}")
    mean = (r.read_float(), r.read_float(), r.read_float())
    return mean, (r.read_int(), r.read_int())


def _read_loss(r: _Reader) -> dict:
    if r.read_int() != 1:
        raise ValueError("unknown dlib add_loss_layer version")
    name = r.read_string()
    if name != "loss_metric_2":
        raise ValueError(f"expected a loss_metric_2 network, found {name!r}")
    return dict(name=name, margin=r.read_float(), distance_threshold=r.read_float())


def parse_dlib_net(path: Path | str) -> DlibNet:
    """Read a dlib `loss_metric<...input_rgb_image_sized<N>>` network file into its layer list."""
    r = _Reader(Path(path).read_bytes())
    loss = _read_loss(r)
    versions = []  # outermost first: one per add_layer / tag / skip wrapper above the input layer
    while not _next_is_input_layer(r):
        versions.append(r.read_int())
    if not versions:
        raise ValueError(f"{path} holds no layers above the input layer")
    input_version = versions.pop()
    if input_version not in _INPUT_ADD_LAYER_VERSIONS:
        raise ValueError(f"unknown dlib input add_layer version {input_version}")
    mean, chip_shape = _read_input_layer(r)
    layers = [_details(r)]
    _layer_state(r, tensors=3)  # x_grad, cached_output, grad_final
    if input_version == 3:
        r.read_int()  # _sample_expansion_factor
    for version in reversed(versions):
        if version == _TAG_OR_SKIP_VERSION:
            continue  # tags and skips have no details: their place is fixed by the architecture
        if version != _ADD_LAYER_VERSION:
            raise ValueError(f"unknown dlib add_layer version {version}")
        layers.append(_details(r))
        _layer_state(r, tensors=3)  # x_grad, cached_output, params_grad
    if r.pos != len(r.data):
        raise ValueError(f"{len(r.data) - r.pos} unread bytes after the network in {path}")
    return DlibNet(loss, mean, chip_shape, layers)


# --- the PyTorch network ------------------------------------------------------------------------

STEM_FILTERS, STEM_KERNEL, STEM_STRIDE = 32, 7, 2
STEM_POOL_KERNEL, STEM_POOL_STRIDE = 3, 2
BLOCK_KERNEL = 3
DOWN_STRIDE, SHORTCUT_POOL = 2, 2  # a down block: first conv /2 without padding, shortcut avg-pool 2x2/2
# (width, blocks, does the first block downsample): levels 4..0 of face_recognition.cpp
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
_CONV_MODE = 0  # dlib layer_mode: affine_ per channel (CONV_MODE), not per element (FC_MODE)


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the output takes the larger size in every dimension and a tensor's missing
    elements count as 0, i.e. both are zero-padded at the end (extra channels, bottom rows, right
    columns) before adding. A down block needs this twice: the shortcut has half the channels, and
    at 8 px the 3x3/2 main path gives 3x3 while the 2x2/2 shortcut gives 4x4."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:]))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class ChannelAffine(nn.Module):
    """dlib's affine_ in CONV_MODE: y = x * gamma[c] + beta[c] (batch norm folded for inference)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


class DlibResBlock(nn.Module):
    """relu(add_prev(affine(conv(relu(affine(conv(x))))), shortcut(x))); the shortcut is x itself or,
    in a down block, a 2x2/2 average pool of x, zero-padded to the main path's channels."""

    def __init__(self, in_ch: int, out_ch: int, down: bool) -> None:
        super().__init__()
        stride, pad = (DOWN_STRIDE, 0) if down else (1, BLOCK_KERNEL // 2)
        self.conv1 = nn.Conv2d(in_ch, out_ch, BLOCK_KERNEL, stride, pad)
        self.affine1 = ChannelAffine(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, BLOCK_KERNEL, 1, BLOCK_KERNEL // 2)
        self.affine2 = ChannelAffine(out_ch)
        self.shortcut = nn.AvgPool2d(SHORTCUT_POOL, SHORTCUT_POOL) if down else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        return F.relu(add_zero_padded(y, self.shortcut(x)))


class DlibFaceNet(nn.Module):
    """dlib's face-recognition ResNet. Input: `to_input(chips)`, (n, 3, 150, 150) float.

    `feature_map` is the trunk's last activation (n, 256, 2, 2), `features` its global average
    (n, 256): the place to put a fresh head. `embed` / `forward` give dlib's 128-d descriptor
    (not normalised; two faces are the same person when their distance is below
    `distance_threshold`, 0.6)."""

    def __init__(self, stages: tuple = STAGES, distance_threshold: float = 0.6) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM_FILTERS, STEM_KERNEL, STEM_STRIDE, 0)
        self.affine1 = ChannelAffine(STEM_FILTERS)
        self.pool1 = nn.MaxPool2d(STEM_POOL_KERNEL, STEM_POOL_STRIDE)
        blocks, width = [], STEM_FILTERS
        for out_ch, n_blocks, first_down in stages:
            for i in range(n_blocks):
                blocks.append(DlibResBlock(width, out_ch, down=first_down and i == 0))
                width = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(width, EMBED_DIM, bias=False)
        self.distance_threshold = distance_threshold

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.pool1(F.relu(self.affine1(self.conv1(x)))))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)


def to_input(chips: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Aligned RGB uint8 chips, (150, 150, 3) or (n, 150, 150, 3) -> the network's float32 input,
    exactly as dlib's input layer: (pixel - mean[c]) / 256, in float32 like dlib."""
    x = torch.as_tensor(np.asarray(chips) if not isinstance(chips, torch.Tensor) else chips)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if tuple(x.shape[1:]) != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ValueError(f"expected (n, {CHIP_SIZE}, {CHIP_SIZE}, 3) RGB chips, got {tuple(x.shape)}")
    mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32, device=x.device)
    return ((x.to(torch.float32) - mean) / PIXEL_SCALE).permute(0, 3, 1, 2).contiguous()


# --- loading the weights ------------------------------------------------------------------------

def _slots(net: DlibFaceNet) -> list[tuple[str, nn.Module | None]]:
    """The module behind each layer of the dlib file, in the file's (input-first) order."""
    slots = [("con", net.conv1), ("affine", net.affine1), ("relu", None), ("max_pool", net.pool1)]
    for b in net.blocks:
        slots += [("con", b.conv1), ("affine", b.affine1), ("relu", None), ("con", b.conv2), ("affine", b.affine2)]
        if isinstance(b.shortcut, nn.AvgPool2d):
            slots.append(("avg_pool", b.shortcut))
        slots += [("add_prev", None), ("relu", None)]
    return slots + [("avg_pool", None), ("fc", net.fc)]


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _check(what: str, ours, theirs) -> None:
    if tuple(ours) != tuple(theirs):
        raise ValueError(f"dlib file does not match the port at {what}: port {ours}, file {theirs}")


def _load_con(conv: nn.Conv2d, layer: DlibLayer) -> None:
    m = layer.meta
    _check("conv filters", conv.weight.shape, m["filters"])
    _check("conv stride", conv.stride, (m["stride_y"], m["stride_x"]))
    _check("conv padding", conv.padding, (m["padding_y"], m["padding_x"]))
    n = conv.weight.numel()
    _check("conv parameter count", (layer.params.size,), (n + conv.out_channels,))
    conv.weight.data.copy_(torch.from_numpy(layer.params[:n]).view_as(conv.weight))
    conv.bias.data.copy_(torch.from_numpy(layer.params[n:]))


def _load_affine(affine: ChannelAffine, layer: DlibLayer) -> None:
    c = affine.weight.numel()
    _check("affine mode", (layer.meta["mode"],), (_CONV_MODE,))
    _check("affine parameter count", (layer.params.size,), (2 * c,))
    affine.weight.data.copy_(torch.from_numpy(layer.params[:c]))
    affine.bias.data.copy_(torch.from_numpy(layer.params[c:]))


def _load_pool(pool: nn.Module | None, layer: DlibLayer) -> None:
    m = layer.meta
    if pool is None:  # avg_pool_everything: dlib stores a 0x0 window
        _check("global pool window", (m["nr"], m["nc"]), (0, 0))
        return
    _check("pool window", _pair(pool.kernel_size), (m["nr"], m["nc"]))
    _check("pool stride", _pair(pool.stride), (m["stride_y"], m["stride_x"]))
    _check("pool padding", _pair(pool.padding), (m["padding_y"], m["padding_x"]))


def _load_fc(fc: nn.Linear, layer: DlibLayer) -> None:
    m = layer.meta
    _check("fc size", (fc.in_features, fc.out_features), (m["num_inputs"], m["num_outputs"]))
    _check("fc parameter count (no bias)", (layer.params.size,), (fc.weight.numel(),))
    w = layer.params.reshape(m["num_inputs"], m["num_outputs"])  # dlib: out = x @ W
    fc.weight.data.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))


_LOADERS = {"con": _load_con, "affine": _load_affine, "max_pool": _load_pool, "avg_pool": _load_pool,
            "fc": _load_fc}


def _check_input(parsed: DlibNet) -> None:
    _check("chip size", parsed.chip_shape, (CHIP_SIZE, CHIP_SIZE))
    if not np.allclose(parsed.pixel_mean, PIXEL_MEAN, atol=MEAN_TOLERANCE):
        raise ValueError(f"dlib file's pixel means {parsed.pixel_mean} differ from PIXEL_MEAN {PIXEL_MEAN}")


def load_dlib_resnet(path: Path | str | None = None) -> DlibFaceNet:
    """dlib's face-recognition ResNet with its pretrained weights, in eval mode. `path` None: the
    file packaged with `face_recognition_models`. Every layer's kind, shape, stride and padding is
    checked against the port, so a different dlib network fails loudly instead of loading wrongly."""
    path = Path(path) if path is not None else model_file(RESNET_FILE)
    parsed = parse_dlib_net(path)
    _check_input(parsed)
    net = DlibFaceNet(distance_threshold=parsed.loss["distance_threshold"])
    slots = _slots(net)
    _check("layer sequence", [k for k, _ in slots], [layer.kind for layer in parsed.layers])
    for (kind, module), layer in zip(slots, parsed.layers):
        if kind in _LOADERS:
            _LOADERS[kind](module, layer)
    log.info("loaded dlib face ResNet from %s (%d layers)", path, len(parsed.layers))
    return net.eval()


# --- the level-0 learner ------------------------------------------------------------------------
# Why a learner on it: every strong DFDC detector fine-tuned a pretrained backbone, and the one
# pretrained face network used here before (MTCNN's O-Net, 48 px) was the real profile's best
# learner; this one was trained on ~3 million faces at 150 px (issue 27).

DLIB_VARIANTS = ("finetune", "frozen")  # frozen: the pretrained trunk as a fixed feature extractor
# under a fresh head, the baseline row that says what fine-tuning adds
HEAD_INIT_STD = 0.01  # the new classifier starts near zero, as the other learners' heads


class DlibResNetLearner(nn.Module):
    """dlib's face ResNet trunk -> 256-d pooled features -> dropout -> one logit (+ logit_offset).

    Preprocessing contract (what `base_learners.train` must hand it, declared by the registry):
    150 px RGB (CHIP_SIZE; the pretrained features were learnt at that scale, so other sizes are
    refused), normalised as dlib's input layer does, (pixel - PIXEL_MEAN[c]) / PIXEL_SCALE (the
    registry's mean/std are that on [0, 1] pixels), and ideally aligned the way dlib aligned its
    training chips (5 landmarks, `dlib.get_face_chip`): the learner option `align` does that from
    the face cache's landmarks (base_learners.views.AlignedCrops). The head reads `features` (the
    trunk's pooled 256-d output), not the 128-d identity descriptor, which metric learning tuned to
    ignore everything but who the face is; the descriptor layer `fc` is kept (checkpoints stay
    whole) but frozen and unused.
    """

    HEAD_PREFIXES = ("out.", "logit_offset")  # may be missing from a weights file

    def __init__(self, pretrained: bool = True, frozen: bool = False, drop_rate: float = 0.2,
                 input_size: int = CHIP_SIZE):
        super().__init__()
        if input_size != CHIP_SIZE:
            raise ValueError(f"dlib_resnet: the pretrained trunk takes {CHIP_SIZE} px chips; "
                             f"got input_size {input_size}")
        # a frozen random trunk loads (a fold checkpoint brings the trained weights: the packaged
        # detector builds learners with pretrained false) but must not train: base_learners.train
        # and oof.py's learner check refuse a model whose `untrainable` says why
        self.untrainable = ("dlib_resnet: variant 'frozen' keeps the pretrained trunk fixed; it needs "
                            "pretrained: true") if frozen and not pretrained else None
        self.backbone = load_dlib_resnet() if pretrained else DlibFaceNet()
        self.backbone.fc.requires_grad_(False)
        self.frozen = frozen
        if frozen:
            self.backbone.requires_grad_(False)
        self.dropout = nn.Dropout(drop_rate)
        self.out = nn.Linear(FEATURE_DIM, 1)
        nn.init.normal_(self.out.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.out.bias)
        # added to the logit; set by training when class rebalancing shifted the prior (train.py)
        self.register_buffer("logit_offset", torch.zeros(()))

    @property
    def embed_dim(self) -> int:
        return FEATURE_DIM

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 256) pooled trunk features (a sequence learner's per-frame features too); while
        training, without gradient through a frozen trunk, which also saves its activations' memory
        (in eval mode gradients flow, so Grad-CAM can read the trunk's maps)."""
        if tuple(x.shape[-2:]) != (CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"dlib_resnet takes {CHIP_SIZE}x{CHIP_SIZE} inputs, got {tuple(x.shape[-2:])}")
        if self.frozen and self.training:
            with torch.no_grad():
                return self.backbone.features(x)
        return self.backbone.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.embed(x))).squeeze(-1) + self.logit_offset
