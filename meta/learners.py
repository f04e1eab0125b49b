"""Level-1 meta-learners (scikit-learn estimator contract) and the META_LEARNERS registry.

Every estimator takes the video_features table (a DataFrame; extra columns such as label, fold,
status are ignored) and selects its own columns `{learner}__{stat}` from a feature-selection spec:
`learners` (None = every learner found in X at fit time; the pipeline passes a subset for
leave-one-learner-out) and `stats`. `fit(X, y, groups=None)`; `predict_proba(X)` -> (n, 2).

Videos without faces (all selected learners' features NaN) are not guessed at: they are left out
of fitting and get the training prior `prior_` (the fake share of y); `no_face_mask(X)` says which
rows those are, so the pipeline can report them in a status column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from features.aggregate import SEP, learners_in, stat_kind
from features.common import Registry
from meta.calibration import safe_logit
from meta.metrics import DECISION_THRESHOLD, log_loss

META_LEARNERS: Registry[type] = Registry("meta-learner")

PRESENCE_STAT = "mean"  # a learner "saw a face" in a video iff its mean probability is present
LGBM_VIDEO_COLUMNS = ("n_frames", "n_faces", "det_prob_mean")
LOGREG_STATS = ("logit_mean", "confident")
LGBM_EARLY_STOP_ROUNDS = 20  # patience of the inner-CV search for the number of trees


def build_meta(name: str, **params) -> BaseEstimator:
    """A fresh meta-learner by registry name (unknown names list the valid ones)."""
    return META_LEARNERS.get(name)(**params)


def _check_frame(X) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"meta-learners take the video_features DataFrame, got {type(X).__name__}")
    return X


def no_face_mask(X: pd.DataFrame, learners) -> np.ndarray:
    """True for rows where none of `learners` has a feature (no face seen): they get the prior."""
    X = _check_frame(X)
    cols = [f"{l}{SEP}{PRESENCE_STAT}" for l in learners]
    missing = [c for c in cols if c not in X.columns]
    if missing:
        raise KeyError(f"video_features lacks {missing}; has learners {learners_in(X)}")
    return X[cols].isna().all(axis=1).to_numpy()


class MetaLearner(ClassifierMixin, BaseEstimator):
    """Shared plumbing: column selection, the prior for no-face rows, the (n, 2) output.

    Subclasses implement `_fit(Xs, y, groups)` on the selected columns of face rows and
    `_predict(Xs) -> P(FAKE)`.
    """

    learners = None  # subclasses set it in __init__; here so helpers can read it

    def _resolve_learners(self, X: pd.DataFrame) -> list[str]:
        found = learners_in(X)
        if self.learners is None:
            return found
        unknown = sorted(set(self.learners) - set(found))
        if unknown:
            raise KeyError(f"learners {unknown} not in video_features; found {found}")
        return list(self.learners)

    def _columns(self, X: pd.DataFrame) -> list[str]:
        raise NotImplementedError

    def fit(self, X, y, groups=None):
        X = _check_frame(X)
        y = np.asarray(y, dtype=int)
        if set(np.unique(y)) - {0, 1}:
            raise ValueError(f"labels must be 0/1, got {np.unique(y)}")
        self.classes_ = np.array([0, 1])
        self.learners_ = self._resolve_learners(X)
        self.feature_names_ = self._columns(X)
        self.prior_ = float(y.mean())
        face = ~no_face_mask(X, self.learners_)
        if not face.any():
            raise ValueError("every training video lacks faces; nothing to fit a meta-learner on")
        g = None if groups is None else np.asarray(groups)[face]
        self._fit(X.loc[face, self.feature_names_], y[face], g)
        return self

    def no_face_mask(self, X) -> np.ndarray:
        """Rows predicted as the training prior because no selected learner saw a face."""
        check_is_fitted(self, "prior_")
        return no_face_mask(X, self.learners_)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "prior_")
        X = _check_frame(X)
        p = np.full(len(X), self.prior_, dtype=float)
        face = ~self.no_face_mask(X)
        if face.any():
            p[face] = self._predict(X.loc[face, self.feature_names_])
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > DECISION_THRESHOLD).astype(int)

    def _fit(self, Xs, y, groups):  # pragma: no cover - overridden
        raise NotImplementedError

    def _predict(self, Xs) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


def _stat_columns(learners, stats, X: pd.DataFrame) -> list[str]:
    cols = [f"{l}{SEP}{s}" for l in learners for s in stats]
    missing = [c for c in cols if c not in X.columns]
    if missing:
        raise KeyError(f"video_features lacks columns {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return cols


@META_LEARNERS.register("lgbm")
class LGBMMeta(MetaLearner):
    """LightGBM with small-data settings: few leaves, shallow trees, enough rows per leaf.

    `stats=None` uses every `{learner}__*` column of the selected learners, plus the video
    columns present (n_frames, n_faces, det_prob_mean); NaN is handled natively.

    `monotone=True` constrains every probability-like feature (mean, quantiles, top-k, share,
    confident, mean logit) to push P(FAKE) up only: the one prior we are sure of, and a guard
    against fitting noise on a few hundred videos. Other columns (std, temporal, video) get 0.
    `n_trees="fixed"` uses n_estimators; "cv" picks the number of trees (<= n_estimators) by
    lightgbm.cv with early stopping on PRECOMPUTED StratifiedGroupKFold splits over `groups`
    (lightgbm.cv cannot group by itself), then refits on all rows given.
    """

    def __init__(self, learners=None, stats=None, video_columns=LGBM_VIDEO_COLUMNS,
                 monotone: bool = True, n_trees: str = "fixed", n_estimators: int = 150,
                 learning_rate: float = 0.05, num_leaves: int = 6, max_depth: int = 3,
                 min_child_samples: int = 15, subsample: float = 0.8,
                 colsample_bytree: float = 0.8, reg_lambda: float = 1.0, cv_k: int = 3,
                 seed: int = 0):
        self.learners = learners
        self.stats = stats
        self.video_columns = video_columns
        self.monotone = monotone
        self.n_trees = n_trees
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.cv_k = cv_k
        self.seed = seed

    def _columns(self, X):
        video = [c for c in self.video_columns if c in X.columns]
        if self.stats is None:  # every statistic the aggregation produced for these learners
            return [c for l in self.learners_ for c in X.columns if c.startswith(f"{l}{SEP}")] + video
        return _stat_columns(self.learners_, self.stats, X) + video

    def _params(self) -> dict:
        return dict(objective="binary", learning_rate=self.learning_rate,
                    num_leaves=self.num_leaves, max_depth=self.max_depth,
                    min_child_samples=self.min_child_samples, subsample=self.subsample,
                    subsample_freq=1, colsample_bytree=self.colsample_bytree,
                    reg_lambda=self.reg_lambda, random_state=self.seed, n_jobs=1,
                    deterministic=True, force_row_wise=True, verbose=-1)

    def _constraints(self) -> list[int]:
        def sign(col: str) -> int:
            if SEP not in col:
                return 0
            return int(stat_kind(col.split(SEP, 1)[1]) in ("prob", "logit"))

        return [sign(c) if self.monotone else 0 for c in self.feature_names_]

    def _choose_trees(self, Xs: pd.DataFrame, y, groups) -> int:
        import lightgbm as lgb

        if groups is None:
            raise ValueError("LGBMMeta(n_trees='cv') needs groups (fit(X, y, groups=...))")
        splitter = StratifiedGroupKFold(n_splits=self.cv_k, shuffle=True, random_state=self.seed)
        folds = list(splitter.split(Xs, y, groups))
        params = {**self._params(), "monotone_constraints": self.monotone_constraints_,
                  "metric": "binary_logloss"}
        params["seed"] = params.pop("random_state")
        params["num_threads"] = params.pop("n_jobs")
        data = lgb.Dataset(Xs.to_numpy(dtype=float), label=y, free_raw_data=False)
        res = lgb.cv(params, data, num_boost_round=self.n_estimators, folds=folds,
                     callbacks=[lgb.early_stopping(LGBM_EARLY_STOP_ROUNDS, verbose=False)])
        return len(next(iter(v for k, v in res.items() if k.endswith("binary_logloss-mean"))))

    def _fit(self, Xs, y, groups):
        from lightgbm import LGBMClassifier

        self.monotone_constraints_ = self._constraints()
        if self.n_trees not in ("fixed", "cv"):
            raise ValueError(f"n_trees must be 'fixed' or 'cv', got {self.n_trees!r}")
        self.n_trees_ = self.n_estimators if self.n_trees == "fixed" else self._choose_trees(Xs, y, groups)
        self.model_ = LGBMClassifier(n_estimators=self.n_trees_,
                                     monotone_constraints=self.monotone_constraints_,
                                     **self._params())
        self.model_.fit(Xs.to_numpy(dtype=float), y)

    def _predict(self, Xs):
        return self.model_.predict_proba(Xs.to_numpy(dtype=float))[:, 1]

    @property
    def feature_importances_(self) -> pd.Series:
        """Total gain per feature (for the importance plot), indexed by column name."""
        gain = self.model_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.feature_names_, name="gain")


@META_LEARNERS.register("logreg")
class LogRegMeta(MetaLearner):
    """Scaled logistic regression on logit-type features.

    Probability-like stats are turned into logits (clipped at `prob_eps`) so the model is linear
    in log-odds; missing values (a learner without a face in a video where another had one) get
    the training median plus a missing indicator.
    """

    def __init__(self, learners=None, stats=LOGREG_STATS, C: float = 1.0,
                 prob_eps: float = 1e-4, seed: int = 0):
        self.learners = learners
        self.stats = stats
        self.C = C
        self.prob_eps = prob_eps
        self.seed = seed

    def _columns(self, X):
        return _stat_columns(self.learners_, self.stats, X)

    def _design(self, Xs: pd.DataFrame) -> np.ndarray:
        out = Xs.to_numpy(dtype=float).copy()
        for j, col in enumerate(self.feature_names_):
            if stat_kind(col.split(SEP, 1)[1]) == "prob":
                nan = np.isnan(out[:, j])
                out[~nan, j] = safe_logit(out[~nan, j], self.prob_eps)
        return out

    def _fit(self, Xs, y, groups):
        self.model_ = make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed),
        )
        self.model_.fit(self._design(Xs), y)

    def _predict(self, Xs):
        return self.model_.predict_proba(self._design(Xs))[:, 1]


@META_LEARNERS.register("caruana")
class CaruanaMeta(MetaLearner):
    """Greedy ensemble selection with replacement (Caruana et al. 2004; AutoGluon's last layer).

    Start empty; `n_iter` times add the learner whose inclusion most lowers the log loss of the
    running average; weight = times chosen / n_iter (non-negative, sums to 1). Averages
    probabilities for a probability stat, logits (then sigmoid) for a `logit_*` stat. A learner
    missing in a video (NaN) counts as the training prior there.
    """

    def __init__(self, learners=None, stat: str = "mean", n_iter: int = 50):
        self.learners = learners
        self.stat = stat
        self.n_iter = n_iter

    def _columns(self, X):
        return _stat_columns(self.learners_, (self.stat,), X)

    def _matrix(self, Xs: pd.DataFrame) -> np.ndarray:
        m = Xs.to_numpy(dtype=float)
        if stat_kind(self.stat) == "logit":
            return np.where(np.isnan(m), safe_logit(self.prior_), m)
        return np.where(np.isnan(m), self.prior_, m)

    def _to_prob(self, avg: np.ndarray) -> np.ndarray:
        return expit(avg) if stat_kind(self.stat) == "logit" else avg

    def _fit(self, Xs, y, groups):
        m = self._matrix(Xs)
        counts = np.zeros(m.shape[1], dtype=int)
        total = np.zeros(m.shape[0])
        self.loss_path_ = []
        for it in range(self.n_iter):
            losses = [log_loss(y, self._to_prob((total + m[:, j]) / (it + 1)))
                      for j in range(m.shape[1])]
            j = int(np.argmin(losses))  # ties: the first learner, deterministic
            counts[j] += 1
            total += m[:, j]
            self.loss_path_.append(losses[j])
        self.weights_ = pd.Series(counts / counts.sum(), index=self.learners_, name="weight")

    def _predict(self, Xs):
        return self._to_prob(self._matrix(Xs) @ self.weights_.to_numpy())


@META_LEARNERS.register("average")
class AverageMeta(MetaLearner):
    """Baseline: the plain average of the learners' mean frame probability (fit learns nothing).

    Learners missing in a video are left out of that video's average.
    """

    def __init__(self, learners=None, stat: str = "mean"):
        self.learners = learners
        self.stat = stat

    def _columns(self, X):
        return _stat_columns(self.learners_, (self.stat,), X)

    def _fit(self, Xs, y, groups):
        pass

    def _predict(self, Xs):
        return np.nanmean(Xs.to_numpy(dtype=float), axis=1)


@META_LEARNERS.register("single")
class SingleMeta(MetaLearner):
    """Baseline: one learner's mean frame probability, as is (`learner` is required)."""

    def __init__(self, learner: str | None = None, stat: str = "mean"):
        self.learner = learner
        self.stat = stat

    def _resolve_learners(self, X):
        found = learners_in(X)
        if self.learner not in found:
            raise KeyError(f"SingleMeta(learner={self.learner!r}): choose one of {found}")
        return [self.learner]

    def _columns(self, X):
        return _stat_columns(self.learners_, (self.stat,), X)

    def _fit(self, Xs, y, groups):
        pass

    def _predict(self, Xs):
        return Xs.to_numpy(dtype=float)[:, 0]
