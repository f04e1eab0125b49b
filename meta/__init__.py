"""fakestack: meta (level 1).

API (helper-6; signatures stable):
- meta.metrics: score(y, p, n_bins=10) -> dict(log_loss, balanced_log_loss, auc, accuracy, brier,
  ece, n); reliability_curve(y, p, n_bins=10) -> DataFrame(bin, lo, hi, mean_pred, frac_pos, count).
- meta.learners: META_LEARNERS registry {lgbm, logreg, caruana, average, single};
  build_meta(name, **params); every estimator takes the video_features DataFrame,
  fit(X, y, groups=None), predict_proba(X) -> (n, 2), no_face_mask(X), prior_, feature_names_.
  Feature selection: learners=(...) (None = all; single uses learner="name").
- meta.calibration: CALIBRATORS {none, platt, isotonic, temperature}; build_calibrator(name);
  prior_shift(p, train_prior, target_prior).
- meta.clipping: CLIP_MODES, clip_probs, choose_bounds(p, y, grid, sample_weight=None).
- meta.ensemble.StackedEnsemble(meta, meta_params, calibration, calibration_params, clip,
  clip_bounds, clip_grid, target_prior, inner_k, seed): fit(X, y, groups=None),
  predict_proba(X), predict_stages(X) -> {"raw", "calibrated", "clipped"}, no_face_mask(X).
- meta.evaluate: outer_cv(est, X, y, folds, groups) -> final OOF P(FAKE);
  outer_cv_stages(...) -> OuterCVResult(stages, estimators, no_face);
  comparison_rows(config, stages, y, extra=None) -> list[dict]; comparison_table(rows).
"""
