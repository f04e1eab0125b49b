"""An ImageNet-pretrained trunk offline: Keras's MobileNetV2 out of the npm package `nsfwjs`.

Why: the self-blended-image learner of Shiohara and Yamasaki (base_learners.sbi) leans on an
ImageNet-pretrained CNN, and timm's `pretrained=True` needs internet. The one ImageNet CNN this
machine's registries carry is inside the npm package `nsfwjs` (MIT): GantMan's NSFW classifier, a
Keras 2.2.4 MobileNetV2 (alpha 1.0, 224 px) whose layers up to `block_10` were frozen while its
top was trained, so those layers are Keras's own ImageNet weights; blocks 11-16 and the 1x1 head
conv were fine-tuned on natural photographs. The weights are stored uint8-quantized per tensor
(`min + q * scale`), 2.6M values in one base64 shard.

`import_nsfwjs` reads the package tarball (`npm pack nsfwjs`; nothing is extracted or executed),
dequantizes every tensor and maps it onto timm's `mobilenetv2_100_keras`, registered here: timm's
`mobilenetv2_100` with TensorFlow's asymmetric "same" padding and Keras's batch-norm epsilon, so
the converted net computes what the Keras one does. The result is a plain tensor state dict for a
learner's `weights_path` (loaded with `weights_only=True`); the NSFW classifier on top is dropped.
The dequantized weights differ from Keras's float ones by at most half a quantization step.

    npm pack nsfwjs
    python -m base_learners.keras_mobilenet nsfwjs-4.3.0.tgz --out weights/mobilenetv2_keras.pt

Input normalisation: Keras's ImageNet MobileNetV2 reads pixels / 127.5 - 1 (mean = std = 0.5).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import re
import sys
import tarfile
from pathlib import Path

import numpy as np
import timm
import torch
from timm.models import register_model
from torch import nn

log = logging.getLogger(__name__)

KERAS_BN_EPS = 1e-3  # Keras BatchNormalization's default epsilon (timm's: 1e-5)
KERAS_MEAN = KERAS_STD = (0.5, 0.5, 0.5)  # pixels / 127.5 - 1, Keras's mobilenet_v2 preprocessing
MODEL_DIR = "package/dist/models/mobilenet_v2"  # inside the nsfwjs tarball
TOPOLOGY_FILE, SHARD_FILE = "model.min.js", "group1-shard1of1.min.js"
# timm's stages after the stem conv: (blocks, in Keras `block_<k>` numbering); Keras's block 0 is
# `expanded_conv` (timm's depthwise-separable stage 0), blocks 1-16 are inverted residuals
STAGE_DEPTHS = (2, 3, 4, 3, 3, 1)
BN_KEYS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


@register_model
def mobilenetv2_100_keras(pretrained: bool = False, **kwargs) -> nn.Module:
    """timm's MobileNetV2 laid out as Keras's: "same" padding (extra row and column at the bottom
    and right of a stride-2 conv) and batch-norm epsilon 1e-3, with Keras's normalisation."""
    if pretrained:
        raise ValueError("mobilenetv2_100_keras has no download: its weights come from "
                         "`python -m base_learners.keras_mobilenet` as a weights_path")
    net = timm.create_model("mobilenetv2_100", pretrained=False, pad_type="same", bn_eps=KERAS_BN_EPS, **kwargs)
    net.pretrained_cfg = dict(net.pretrained_cfg, url="", hf_hub_id=None, architecture="mobilenetv2_100_keras",
                              mean=KERAS_MEAN, std=KERAS_STD, crop_pct=1.0, interpolation="bilinear")
    net.default_cfg = net.pretrained_cfg
    return net


def keras_to_timm_names() -> dict[str, str]:
    """Keras layer name -> timm module path (conv or batch norm), for the MobileNetV2 trunk."""
    names = {"Conv1": "conv_stem", "bn_Conv1": "bn1", "Conv_1": "conv_head", "Conv_1_bn": "bn2",
             "expanded_conv_depthwise": "blocks.0.0.conv_dw", "expanded_conv_depthwise_BN": "blocks.0.0.bn1",
             "expanded_conv_project": "blocks.0.0.conv_pw", "expanded_conv_project_BN": "blocks.0.0.bn2"}
    k = 1
    for stage, depth in enumerate(STAGE_DEPTHS, start=1):
        for i in range(depth):
            prefix = f"blocks.{stage}.{i}"
            for part, conv, bn in (("expand", "conv_pw", "bn1"), ("depthwise", "conv_dw", "bn2"),
                                   ("project", "conv_pwl", "bn3")):
                names[f"block_{k}_{part}"] = f"{prefix}.{conv}"
                names[f"block_{k}_{part}_BN"] = f"{prefix}.{bn}"
            k += 1
    return names


def _torch_tensor(kind: str, value: np.ndarray) -> torch.Tensor:
    """A Keras array in PyTorch's layout: conv kernels (kh, kw, in, out) -> (out, in, kh, kw),
    depthwise kernels (kh, kw, ch, 1) -> (ch, 1, kh, kw)."""
    if kind == "kernel":
        value = value.transpose(3, 2, 0, 1)
    elif kind == "depthwise_kernel":
        value = value.transpose(2, 3, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


def keras_state_dict(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Keras weights `<layer>/<kind>` -> the state dict of timm's mobilenetv2_100_keras, without
    its classifier. Every trunk tensor must be present; other layers (the NSFW top) are left out."""
    names = keras_to_timm_names()
    state: dict[str, torch.Tensor] = {}
    for key, value in arrays.items():
        layer, kind = key.split("/", 1)
        if layer not in names:
            continue
        param = "weight" if kind.endswith("kernel") else BN_KEYS.get(kind)
        if param is None:
            raise ValueError(f"unexpected weight {key!r} for MobileNetV2 layer {layer!r}")
        state[f"{names[layer]}.{param}"] = _torch_tensor(kind, value)
    expected = sum(len(BN_KEYS) if path.rsplit(".", 1)[-1].startswith("bn") else 1 for path in names.values())
    if len(state) != expected:
        raise ValueError(f"MobileNetV2 trunk incomplete: {len(state)} of {expected} tensors found")
    return state


def _js_literal_to_json(text: str) -> object:
    """The object literal of a minified JS module as JSON: quote the keys, `!0`/`!1` as booleans,
    numbers written `.5` / `-.5` as `0.5` / `-0.5` (the subset nsfwjs's model files use)."""
    text = re.sub(r"([{,])([A-Za-z_$][\w$]*):", r'\1"\2":', text)
    text = text.replace("!0", "true").replace("!1", "false")
    text = re.sub(r"([:\[,])(-?)\.(\d)", r"\g<1>\g<2>0.\3", text)
    return json.loads(text)


def _bracketed(text: str, start: int) -> str:
    """The balanced [...] or {...} that opens at `start` (no brackets inside strings here)."""
    open_ch = text[start]
    close_ch = {"[": "]", "{": "}"}[open_ch]
    depth = 0
    for i in range(start, len(text)):
        depth += (text[i] == open_ch) - (text[i] == close_ch)
        if depth == 0:
            return text[start:i + 1]
    raise ValueError("unbalanced brackets")


def read_nsfwjs(tgz: str | Path) -> dict[str, np.ndarray]:
    """Every weight of nsfwjs's MobileNetV2 model, dequantized, keyed `<layer>/<kind>`."""
    tgz = Path(tgz)
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            topology = tar.extractfile(f"{MODEL_DIR}/{TOPOLOGY_FILE}").read().decode()
            shard = tar.extractfile(f"{MODEL_DIR}/{SHARD_FILE}").read().decode()
    except (OSError, tarfile.TarError, KeyError, AttributeError) as err:
        raise ValueError(f"{tgz}: not an nsfwjs package tarball with {MODEL_DIR}/ ({err})") from None
    at = topology.find("weightsManifest:")
    found = re.search(r'exports="([A-Za-z0-9+/=]+)"', shard)
    if at < 0 or found is None:
        raise ValueError(f"{tgz}: {MODEL_DIR} holds no weights manifest or no base64 weight shard")
    manifest = _js_literal_to_json(_bracketed(topology, at + len("weightsManifest:")))
    data = np.frombuffer(base64.b64decode(found.group(1)), dtype=np.uint8)
    arrays, offset = {}, 0
    for spec in (w for group in manifest for w in group["weights"]):
        n = int(np.prod(spec["shape"]))
        q = spec.get("quantization")
        if q is None or q.get("dtype") != "uint8":
            raise ValueError(f"{tgz}: weight {spec['name']!r} is not uint8-quantized ({q}); this reader expects it")
        raw = data[offset:offset + n].astype(np.float64)
        arrays[spec["name"]] = (q["min"] + raw * q["scale"]).astype(np.float32).reshape(spec["shape"])
        offset += n
    if offset != data.size:
        raise ValueError(f"{tgz}: the manifest describes {offset} bytes, the shard holds {data.size}")
    return arrays


def import_nsfwjs(tgz: str | Path, out: str | Path) -> Path:
    """Convert nsfwjs's MobileNetV2 trunk to a weights file for `mobilenetv2_100_keras`; checks it
    loads into the timm model strictly (all but the classifier) before writing."""
    state = keras_state_dict(read_nsfwjs(tgz))
    net = timm.create_model("mobilenetv2_100_keras", num_classes=1)
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("classifier.")]
    if missing or result.unexpected_keys:
        raise ValueError(f"converted weights do not fit mobilenetv2_100_keras: missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    log.info("wrote %d tensors (%d values) to %s", len(state), sum(v.numel() for v in state.values()), out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tgz", help="the nsfwjs package tarball (`npm pack nsfwjs`)")
    parser.add_argument("--out", required=True, help="the weights file to write (a learner's weights_path)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        import_nsfwjs(args.tgz, args.out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
