"""The packaged detector with the sound learners: stack.py packages audio_cnn's and lipsync's
fold models beside the face learner's, predict.py gives every test video the p_fake of
submission.csv (a silent one too, its audio_status saying so), and the digest covers the audio
model files.

One tiny sound corpus, oof run and stack run are shared by the module (they dominate the cost).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlflow
from base_learners.audio import LEARNER
from features.contract import UNIT_FILES
from features.synth import SynthConfig, generate_corpus
from features.synth.config import SoundConfig
from features.synth.corpus import SOUND_TABLE
from pipelines import predict
from pipelines.scoring import package
from pipelines.scoring.detector import AUDIO_STATUS_COLUMN
from tests.tiny_runs import tiny_oof, tiny_stack

# seed 2 with these settings: of the two test groups one speaks and one is silent, and each fold's
# training part holds two or more speaking real groups, as the lip-sync learner's correlation target
# needs (groups are silent with probability silent_share; the plan is drawn from the seed)
CORPUS = SynthConfig.tiny(seed=2, n_originals=6, n_test_originals=2, n_frames=20, fakes_per_original=(2, 2),
                          sound=SoundConfig(enabled=True, silent_share=0.25))
AUDIO = ("audio.enabled=true", "audio.features.window_s=0.5", "audio.features.min_duration_s=0.5",
         "audio.features.n_mels=32", "audio.train.epochs=2", "audio.train.channels=[4,8]", "faces.n_frames=4",
         "audio.lipsync.enabled=true", "audio.lipsync.train.target=corr", "audio.lipsync.train.mouth_input=landmarks",
         "audio.lipsync.train.audio_span_s=0.1", "faces.landmarks=68")  # the profile's lip-sync learner
LIPSYNC = "lipsync"
# one configuration only, the stack of meso4, audio_cnn and lipsync: no single-learner baselines, no subsets
STACK = ("sweep.baselines=false", "nested=false", "explain_top=1")
ATOL = 1e-6


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """(corpus root, stack result, tracking uri, submission) of a tiny audio oof run and its stack."""
    tmp = tmp_path_factory.mktemp("audio-detector")
    root = generate_corpus(tmp / "corpus", CORPUS, progress=False)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        run = tiny_oof([root], tmp / "work", uri, AUDIO)
        result = tiny_stack(run, tmp / "stack", uri, STACK)
    return root, result, uri, pd.read_csv(tmp / "stack" / "submission.csv")


def _local_copy(uri: str, tracking: str, dest: Path) -> Path:
    mlflow.set_tracking_uri(tracking)
    return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(dest)))


@pytest.mark.slow
def test_predict_reproduces_the_submission_with_the_audio_learner(packaged, tmp_path):
    root, result, uri, submission = packaged
    assert {LEARNER, LIPSYNC} <= set(result.best.ensemble.meta_.learners_) and result.detector_uri, result.detector_note
    sounds = pd.read_parquet(root / SOUND_TABLE).set_index("video_id")["has_audio"]
    assert set(sounds[submission["filename"]]) == {True, False}  # a test video speaks, another is silent
    res = predict.main([str(root / f) for f in submission["filename"]]
                       + ["--model", result.detector_uri, "--tracking-uri", uri, "--out", str(tmp_path / "p.csv"),
                          "--explain", str(tmp_path / "why"), "--set", "progress=false"])
    assert res.timings["audio_s"] > 0  # the sound's own seconds, apart from the face learners' level 0
    out = res.table.assign(filename=lambda t: t["path"].map(lambda p: Path(p).name)).set_index("filename")
    want = submission.set_index("filename")["label"]
    np.testing.assert_allclose(out.loc[want.index, "p_fake"].to_numpy(), want.to_numpy(), rtol=0, atol=ATOL)
    expected = sounds[want.index].map({True: "ok", False: "no_audio"})
    assert (out.loc[want.index, AUDIO_STATUS_COLUMN] == expected).all()
    silent = expected.index[expected == "no_audio"]
    assert out.loc[silent, f"score_{LEARNER}"].isna().all() and out.loc[silent, "score_meso4"].notna().all()
    assert (out.loc[silent, "status"] == "ok").all() and out.loc[silent, "label"].isin(["FAKE", "REAL"]).all()
    vf = result.video_features.set_index("video_id")  # level 0 itself, whatever weight the ensemble gives it
    for learner in (LEARNER, LIPSYNC):  # the soundtrack and the lip-sync learner, as oof scored the test split
        np.testing.assert_allclose(out.loc[want.index, f"score_{learner}"].to_numpy(float),
                                   vf.loc[want.index, f"{learner}__mean"].to_numpy(float), rtol=0, atol=ATOL)
    assert out.loc[silent, f"score_{LIPSYNC}"].isna().all()
    # each report's sound section: a spectrogram and the windows' P(FAKE) where it speaks, words where silent
    reports = {Path(p).name.rsplit("-", 1)[0]: Path(p).read_text() for p in res.reports}
    for name, status in expected.items():
        sound = reports[Path(name).stem].split('<section id="sound">')[1].split("</section>")[0]
        assert ('alt="soundtrack"' in sound) == (status == "ok"), (name, sound)
        assert ("No usable sound (status no_audio)" in sound) == (status == "no_audio"), (name, sound)
        if status == "ok":
            assert re.search(rf"[1-9][0-9]* windows scored by {LEARNER}", sound), sound
    assert result.explanations, result.explain_note  # stack.py's reports: the oof videos' sound too
    assert all('<section id="sound">' in Path(p).read_text() for p in result.explanations)


@pytest.mark.slow
def test_the_audio_models_are_packaged_and_covered_by_the_digest(packaged, tmp_path):
    _, result, uri, _ = packaged
    folder = _local_copy(result.detector_uri, uri, tmp_path / "m")
    artifacts = folder / "artifacts" / "detector"
    spec = json.loads((artifacts / "detector.json").read_text())
    assert spec["audio"]["config"]["learner"] == LEARNER and spec["audio"]["n_frames"] == 4
    assert LEARNER not in spec["learners"] and spec["audio"]["folds"] == [0, 1] == spec["audio"]["lipsync_folds"]
    assert len(list((artifacts / "units" / LIPSYNC).rglob(UNIT_FILES[0]))) == 2
    audio_files = sorted((artifacts / "units" / LEARNER).rglob(UNIT_FILES[0]))
    assert len(audio_files) == 2 and "av==" in (folder / "requirements.txt").read_text()  # the server decodes sound
    predict.load_detector(str(folder), None)  # as packaged: the digest matches
    data = bytearray(audio_files[0].read_bytes())
    data[-1] ^= 1  # one bit of one audio weight
    audio_files[0].write_bytes(bytes(data))
    with pytest.raises(predict.ConfigError, match="differ from what packaging recorded"):
        predict.load_detector(str(folder), None)
    audio_files[1].write_bytes(audio_files[1].read_bytes()[:100])  # truncated: the loader's own refusal
    with pytest.raises(predict.ConfigError, match=f"{LEARNER} fold 1 checkpoint cannot be loaded"):
        package.load_detector_folder(artifacts, None)
