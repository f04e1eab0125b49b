"""`FaceConfig`: every setting of the face stage, in one place.

Its own module because detection, extraction, the cache and the benchmarks all read it: the face
stage's modules import it from here instead of from each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from features.common import ConfigError, runtime_field
from features.faces.decode import CLIP_DECODERS

SINGLE_FRAME_CLIPS = 1  # clip_len of the single-frame sampling every cache before clips was made with
# torch threads per detecting process, whatever the worker count: MTCNN's float results differ in the
# last bits between thread counts (and between batch compositions, hence batch_size is in the cache
# key), and that would make a cache filled with workers=1 differ from one filled by a pool. Parallelism
# comes from processes (workers=0: one per core, see features.faces.pool) instead.
DETECT_THREADS = 1
MIN_MARGIN = -0.5  # crop side = box side * (1 + 2 * margin): a negative margin cuts inside the box (tight face sets)
DEFAULT_DETECTOR = "mtcnn"  # features.faces.detect.DETECTORS; left out of the cache key (older caches stay valid)
NO_LANDMARKS = 0  # `landmarks` off: no predictor runs and the cache key is the one from before landmarks
LANDMARK_POINTS = (NO_LANDMARKS, 5, 68)  # dlib's two shape predictors (features.faces.dlib_models)


@dataclass
class FaceConfig:
    """Every setting of the face stage. The fields that are not runtime fields form the cache key."""

    n_frames: int = 32  # frames (or clips) sampled evenly over each video (DFDC winners used 32)
    clip_len: int = 1  # consecutive frames at each sampled position (temporal learners read them);
    # 1: single frames, as before (and the same cache key)
    detector: str = DEFAULT_DETECTOR  # features.faces.detect.DETECTORS: mtcnn | dlib_hog | dlib_mmod
    landmarks: int = NO_LANDMARKS  # landmark points per face, cached beside the crops (features.faces.cache):
    # 0 none, 5 (dlib's 5-point model: eye corners and nose, enough to align) or 68 (iBUG 300-W
    # training data: research use only)
    decoder: str = "opencv"  # features.faces.decode.DECODERS: opencv (every frame) | pyav_ref (reference frames)
    detect_scale: float = 0.5  # downscale before detection (0.5 suits 1080p)
    detect_max_side: int | None = None  # also cap the long side at this many pixels (mixed resolutions)
    retry_full_res: bool = True  # re-detect frames where the downscaled pass found no face at full res
    min_face_size: int = 40  # smallest face searched, in full-resolution pixels
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # MTCNN P-/R-/O-Net thresholds
    factor: float = 0.709  # MTCNN pyramid step
    det_prob: float = 0.9  # faces below this detection probability are dropped
    max_faces: int = 2  # faces kept per frame, most probable first
    track_iou: float = 0.3  # IoU that links a box to a track of an earlier frame
    detect_every: int = 1  # run MTCNN on every k-th sampled frame (and the last); boxes in between are
    # interpolated along the tracks when the faces barely moved (carry_iou), detected otherwise
    carry_iou: float = 0.5  # keyframe boxes overlapping this much count as "barely moved"
    margin: float = 0.25  # crop square side = longer box side * (1 + 2 * margin)
    crop_size: int = 224  # crops are resized to crop_size x crop_size
    crop_format: str = "npy"  # features.faces.cache.CROP_STORES: npy | jpg
    batch_size: int = 32  # frames per MTCNN call
    channels_last: bool = True  # MTCNN in channels-last memory: ~1.6x faster on CPU (its max-pools)
    workers: int = runtime_field(0)  # processes; 0 = one per core; 1 = in this process
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    decode_threads: int = runtime_field(1)  # FFmpeg threads per worker (workers already fill the cores)

    def __post_init__(self) -> None:
        checks = {
            "n_frames >= 1": self.n_frames >= 1, "0 < detect_scale": self.detect_scale > 0,
            "min_face_size >= 1": self.min_face_size >= 1, "3 thresholds": len(self.thresholds) == 3,
            "0 < factor < 1": 0 < self.factor < 1, "0 <= det_prob <= 1": 0 <= self.det_prob <= 1,
            "max_faces >= 1": self.max_faces >= 1, f"margin > {MIN_MARGIN}": self.margin > MIN_MARGIN,
            "crop_size >= 1": self.crop_size >= 1, "batch_size >= 1": self.batch_size >= 1,
            "workers >= 0": self.workers >= 0, "detect_every >= 1": self.detect_every >= 1,
            f"landmarks in {LANDMARK_POINTS}": self.landmarks in LANDMARK_POINTS,
            "0 < carry_iou <= 1": 0 < self.carry_iou <= 1, "clip_len >= 1": self.clip_len >= 1,
            f"clip_len > 1 only with decoder {' or '.join(CLIP_DECODERS)} (clips need every frame)":
                self.clip_len == 1 or self.decoder in CLIP_DECODERS,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ConfigError(f"FaceConfig: {', '.join(failed)} violated in {self}")
