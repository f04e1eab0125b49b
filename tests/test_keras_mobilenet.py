"""The nsfwjs MobileNetV2 import (base_learners.keras_mobilenet) on a generated package tarball.

The real package is an npm download CI does not make; these tarballs have its layout (a minified
JS module holding the weights manifest, a JS module holding one base64 shard of uint8 values) with
random weights, so the test checks the parsing, the dequantization and every layout transpose."""

from __future__ import annotations

import base64
import io
import json
import re
import tarfile

import numpy as np
import pytest
import timm
import torch

from base_learners.keras_mobilenet import BN_KEYS, MODEL_DIR, SHARD_FILE, TOPOLOGY_FILE, import_nsfwjs, keras_to_timm_names, main, read_nsfwjs
from base_learners.registry import LearnerConfig, build_learner, load_unit_model
from features.contract import UNIT_FILES

KERAS_BN_KINDS = {v: k for k, v in BN_KEYS.items()}


def _keras_specs() -> list[tuple[str, tuple[int, ...]]]:
    """(Keras weight name, Keras shape) for the trunk, from timm's shapes, plus an NSFW-style top."""
    own = timm.create_model("mobilenetv2_100_keras", num_classes=1).state_dict()
    specs = []
    for layer, path in keras_to_timm_names().items():
        if f"{path}.running_var" in own:
            specs += [(f"{layer}/{KERAS_BN_KINDS[p]}", tuple(own[f"{path}.{p}"].shape)) for p in BN_KEYS.values()]
            continue
        out_ch, in_ch, kh, kw = own[f"{path}.weight"].shape
        if "depthwise" in layer:
            specs.append((f"{layer}/depthwise_kernel", (kh, kw, out_ch, 1)))
        else:
            specs.append((f"{layer}/kernel", (kh, kw, in_ch, out_ch)))
    return specs + [("dense_1/kernel", (1280, 4)), ("dense_1/bias", (4,))]


def _js_number(x: float) -> str:
    """Minified JS style: `.5` and `-.5` without the leading zero."""
    return re.sub(r"^(-?)0\.", r"\1.", repr(float(x)))


def _write_package(path, specs, rng, extra_bytes: int = 0) -> dict[str, np.ndarray]:
    """An nsfwjs-like tarball at `path`; returns the dequantized arrays it encodes."""
    entries, chunks, expected = [], [], {}
    for name, shape in specs:
        lo, scale = float(rng.uniform(-1, 0)), float(rng.uniform(1e-3, 1e-2))
        q = rng.integers(0, 256, size=int(np.prod(shape)), dtype=np.uint8)
        chunks.append(q.tobytes())
        expected[name] = (lo + q.astype(np.float64) * scale).astype(np.float32).reshape(shape)
        entries.append('{name:"%s",shape:%s,dtype:"float32",quantization:{min:%s,scale:%s,dtype:"uint8"}}'
                       % (name, json.dumps(list(shape)).replace(" ", ""), _js_number(lo), _js_number(scale)))
    topology = ('!function(e){module.exports=e()}(function(){return{1:[function(e,a,n){a.exports={modelTopology:'
                '{keras_version:"2.2.4",model_config:{config:{layers:[{name:"Conv1",config:{trainable:!1}}]}}},'
                'weightsManifest:[{paths:["group1-shard1of1"],weights:[%s]}]}},{}]}});' % ",".join(entries))
    data = base64.b64encode(b"".join(chunks) + b"\0" * extra_bytes).decode()
    shard = '!function(e){module.exports=e()}(function(){return{1:[function(e,h,n){h.exports="%s"},{}]}});' % data
    with tarfile.open(path, "w:gz") as tar:
        for fname, text in ((TOPOLOGY_FILE, topology), (SHARD_FILE, shard)):
            blob = text.encode()
            info = tarfile.TarInfo(f"{MODEL_DIR}/{fname}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return expected


def test_import_dequantizes_and_transposes_every_tensor(tmp_path):
    expected = _write_package(tmp_path / "nsfwjs.tgz", _keras_specs(), np.random.default_rng(0))
    arrays = read_nsfwjs(tmp_path / "nsfwjs.tgz")
    assert arrays.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(arrays[name], value, rtol=0, atol=1e-6)
    out = import_nsfwjs(tmp_path / "nsfwjs.tgz", tmp_path / "w" / "mnv2.pt")
    state = torch.load(out, weights_only=True)
    assert not any(k.startswith("classifier") for k in state)  # the NSFW top is not the trunk
    stem = expected["Conv1/kernel"]  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
    assert torch.equal(state["conv_stem.weight"], torch.from_numpy(stem.transpose(3, 2, 0, 1).copy()))
    dw = expected["block_16_depthwise/depthwise_kernel"]  # (kh, kw, ch, 1) -> (ch, 1, kh, kw)
    assert torch.equal(state["blocks.6.0.conv_dw.weight"], torch.from_numpy(dw.transpose(2, 3, 0, 1).copy()))
    assert torch.equal(state["blocks.5.2.bn3.running_var"],
                       torch.from_numpy(expected["block_15_project_BN/moving_variance"]))

    model = build_learner(LearnerConfig("mobilenet", input_size=64, weights_path=str(out))).eval()
    assert torch.equal(model.net.conv_stem.weight, state["conv_stem.weight"])
    assert model.mean == (0.5, 0.5, 0.5) and model.variant == "mobilenetv2_100_keras"
    assert model(torch.randn(2, 3, 64, 64)).shape == (2,)


def test_stride_two_convs_pad_like_tensorflow():
    """Keras pads a stride-2 conv's input at the bottom and right only (TF "same"), not around."""
    net = timm.create_model("mobilenetv2_100_keras", num_classes=1).eval()
    x = torch.randn(1, 3, 32, 32)
    w = net.conv_stem.weight
    keras_way = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), w, stride=2)
    with torch.no_grad():
        assert torch.allclose(net.conv_stem(x), keras_way, atol=1e-6)
    assert net.bn1.eps == pytest.approx(1e-3)


def test_bad_packages_are_named(tmp_path, capsys):
    specs = _keras_specs()
    _write_package(tmp_path / "short.tgz", specs[:-2][:40], np.random.default_rng(1))
    with pytest.raises(ValueError, match="trunk incomplete"):
        import_nsfwjs(tmp_path / "short.tgz", tmp_path / "x.pt")
    _write_package(tmp_path / "long.tgz", specs, np.random.default_rng(1), extra_bytes=3)
    with pytest.raises(ValueError, match="long.tgz: the manifest describes"):
        read_nsfwjs(tmp_path / "long.tgz")
    (tmp_path / "not.tgz").write_bytes(b"plain text")
    assert main([str(tmp_path / "not.tgz"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "not.tgz: not an nsfwjs package tarball" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_a_missing_weights_file_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt.*npm pack nsfwjs"):
        build_learner(LearnerConfig("mobilenet", weights_path=str(tmp_path / "nope.pt")))


def test_a_unit_checkpoint_loads_without_its_starting_weights_file(tmp_path):
    """A packaged detector carries every weight in its units: scoring must not need the file the
    learner started from (it stays on the training machine)."""
    start = tmp_path / "start.pt"
    torch.save(timm.create_model("mobilenetv2_050", num_classes=1000).state_dict(), start)
    cfg = LearnerConfig("mobilenet", variant="mobilenetv2_050", input_size=64, weights_path=str(start))
    trained = build_learner(cfg).eval()
    unit = tmp_path / "unit"
    unit.mkdir()
    torch.save(trained.state_dict(), unit / UNIT_FILES[0])
    start.unlink()
    loaded = load_unit_model(unit, cfg)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))
