"""Check the converted MobileNetV2 trunk against nsfwjs's own model run by TensorFlow.js.

Why: base_learners.keras_mobilenet rebuilds a Keras network in timm from a weights manifest; a
transposed kernel or a padding on the wrong side would still run, just as a different network. This
runs the package's model in Node (@tensorflow/tfjs, pure JS) and the converted one in PyTorch on the
same face crops and reports the largest difference of the last feature map (`out_relu`, 7x7x1280 at
224 px, values in [0, 6]).

    npm pack nsfwjs && npm install --prefix /tmp/tfjs @tensorflow/tfjs@4
    python -m benchmarks.keras_mobilenet nsfwjs-4.3.0.tgz --node-modules /tmp/tfjs/node_modules \
        --faces ../shared/data/dfdc-faces-dev/faces_224
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from base_learners.keras_mobilenet import KERAS_MEAN, KERAS_STD, MODEL_DIR, import_nsfwjs
from features.faces.images import image_files

log = logging.getLogger(__name__)

INPUT_SIZE = 224  # nsfwjs's model is built for 224 px
FEATURE_LAYER = "out_relu"  # the last trunk activation, before the NSFW top
NODE_SCRIPT = r"""
const [modelDir, inFile, outFile, n, size] = process.argv.slice(2);
const tf = require('@tensorflow/tfjs');
const fs = require('fs');
const m = require(modelDir + '/model.min.js');
const shard = require(modelDir + '/group1-shard1of1.min.js');
(async () => {
  const buf = Buffer.from(shard, 'base64');
  const weightData = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
  const model = await tf.loadLayersModel(tf.io.fromMemory({modelTopology: m.modelTopology,
    weightSpecs: m.weightsManifest[0].weights, weightData}));
  const trunk = tf.model({inputs: model.inputs, outputs: model.getLayer('%s').output});
  const raw = fs.readFileSync(inFile);
  const x = tf.tensor4d(new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4), [+n, +size, +size, 3]);
  fs.writeFileSync(outFile, Buffer.from((await trunk.predict(x).data()).buffer));
})();
""" % FEATURE_LAYER


def load_inputs(faces: Path, n: int) -> np.ndarray:
    """(n, S, S, 3) float32 in Keras's normalisation from the first `n` images of a folder."""
    paths = image_files(Path(faces))[:n]
    if len(paths) < n:
        raise ValueError(f"{faces}: {len(paths)} images, {n} wanted")
    mean, std = np.array(KERAS_MEAN, np.float32), np.array(KERAS_STD, np.float32)
    ims = [np.asarray(Image.open(p).convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)) for p in paths]
    return ((np.stack(ims).astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def compare(tgz: Path, node_modules: Path, faces: Path, n: int) -> dict[str, float]:
    """Run both nets on `n` crops; the largest absolute difference of their feature maps."""
    x = load_inputs(faces, n)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with tarfile.open(tgz, "r:gz") as tar:
            for member in (m for m in tar.getmembers() if m.name.startswith(MODEL_DIR + "/") and m.isfile()):
                (tmp / Path(member.name).name).write_bytes(tar.extractfile(member).read())
        x.tofile(tmp / "x.f32")
        (tmp / "run.js").write_text(NODE_SCRIPT)
        subprocess.run(["node", str(tmp / "run.js"), str(tmp), str(tmp / "x.f32"), str(tmp / "y.f32"), str(n),
                        str(INPUT_SIZE)], check=True, env=dict(os.environ, NODE_PATH=str(Path(node_modules).resolve())),
                       capture_output=True)
        reference = np.fromfile(tmp / "y.f32", dtype=np.float32).reshape(n, 7, 7, -1)
        net = timm.create_model("mobilenetv2_100_keras", num_classes=1).eval()
        net.load_state_dict(torch.load(import_nsfwjs(tgz, tmp / "w.pt"), weights_only=True), strict=False)
        with torch.no_grad():
            ours = net.forward_features(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    return {"crops": n, "max_abs_diff": float(np.abs(ours - reference).max()),
            "max_abs_value": float(np.abs(reference).max()), "mean_value": float(reference.mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tgz", type=Path, help="the nsfwjs package tarball (`npm pack nsfwjs`)")
    parser.add_argument("--node-modules", type=Path, required=True, help="a node_modules holding @tensorflow/tfjs")
    parser.add_argument("--faces", type=Path, required=True, help="a folder of face images")
    parser.add_argument("--n", type=int, default=8, help="how many images")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = compare(args.tgz, args.node_modules, args.faces, args.n)
    except (ValueError, OSError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log.info("%s", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
