"""Classification metrics from predictions: global (multi-class) and one-vs-rest for one class.

Inputs are integer labels ``y_true`` [N] and class probabilities ``probs`` [N, C] whose rows sum to 1.
Every metric is computed from *weighted* counts, so one code path gives the point estimate (weights
all 1) and a whole batch of bootstrap resamples (weights [B, N]: how often each test image was drawn).
A confusion matrix is then ``weights @ one_hot(true, predicted)`` and a ROC-AUC a weighted
Mann-Whitney sum over one sort, instead of B calls to scikit-learn (whose values the tests pin).

Conventions:
- The predicted class is the argmax of the probabilities (ties go to the lower class index). The
  one-vs-rest decision for the positive class (MEL by default) is ``argmax == positive``; its ROC and
  PR curves use that class's probability column.
- ``brier`` is the mean over images *and* classes of (p_ic - y_ic)^2, in [0, 1]: Brier's (1950)
  multi-class score divided by C, i.e. what ``np.mean((probs - one_hot) ** 2)`` computes.
  ``brier_multiclass`` is Brier's original sum over classes, in [0, 2] (scikit-learn's multi-class
  ``brier_score_loss``). Why the first reproduces the reference (Brier 0.0302 at accuracy 0.8985): a
  misclassified image has p_predicted >= p_true, so its sum over classes is >= 1/2 and the sum form is
  >= 0.5 x error rate = 0.051 > 0.0302. Its half (scaled to [0, 1]) would need every error to be a
  near 50/50 tie and every correct image >= 0.9 confident; the mean over classes means a sum of 0.151,
  about 1.5 per error, which is what a confident 90 %-accurate softmax classifier gives (every row
  of the reference table has sum / error rate = 1.46-1.55 under this reading).
- Degenerate cases have defined values instead of crashes. A class absent from the test set is left
  out of the macro ROC-AUC and of balanced accuracy (``metric_scope`` records which classes count;
  the caller reports the skipped ones). Macro-F1 averages the classes present in the labels or the
  predictions (scikit-learn's default). A metric whose denominator is a count of test images that is
  zero (sensitivity, ROC-AUC and PR-AUC without positives; specificity without negatives) is undefined:
  NaN here, ``None`` in reports, dropped from bootstrap resamples. A metric whose denominator depends on
  the classifier's decisions takes scikit-learn's conventional value: precision of a class never
  predicted is 0, MCC with a zero denominator (all predictions one class) is 0.
- DOR = (sens / (1 - sens)) / ((1 - spec) / spec) = TP·TN / (FP·FN) (Glas et al. 2003). With a zero
  cell (e.g. sens or spec = 1) 0.5 is added to all four cells (Haldane 1956; Anscombe 1956), the
  correction Glas et al. recommend, and the result is flagged ``dor_corrected``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import InvalidArgument

GLOBAL_METRICS = ("macro_f1", "balanced_accuracy", "mcc", "roc_auc", "accuracy", "brier", "brier_multiclass")
ONE_VS_REST_METRICS = ("f1", "sensitivity", "specificity", "precision", "roc_auc", "pr_auc", "dor")
PROBABILITY_TOLERANCE = 1e-3  # softmax outputs rounded to 4 decimals (e.g. in a CSV) still pass


def validate_predictions(
    y_true, probs, classes: Sequence[str] = CLASSES, *, atol: float = PROBABILITY_TOLERANCE
) -> tuple[np.ndarray, np.ndarray]:
    """Check labels [N] and probabilities [N, C]; return them as int64 and float64 arrays."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(y_true)
    n_classes = len(classes)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise InvalidArgument(
            f"probs must have shape [N, {n_classes}] (columns {list(classes)}), got {probs.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != probs.shape[0]:
        raise InvalidArgument(f"y_true must have shape [{probs.shape[0]}] to match probs, got {labels.shape}")
    if labels.shape[0] == 0:
        raise InvalidArgument("no predictions to evaluate (N = 0)")
    if labels.dtype.kind not in "iuf" or (
        labels.dtype.kind == "f" and not np.all(labels == np.round(labels))
    ):
        raise InvalidArgument(f"y_true must hold integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise InvalidArgument(f"labels must lie in [0, {n_classes}), found {labels.min()}..{labels.max()}")
    if not np.isfinite(probs).all() or probs.min() < -atol or probs.max() > 1 + atol:
        raise InvalidArgument(
            "probabilities must be finite and within [0, 1]", hint="pass softmax outputs, not logits"
        )
    off = np.flatnonzero(np.abs(probs.sum(axis=1) - 1.0) > atol)
    if off.size:
        raise InvalidArgument(
            f"{off.size} probability rows do not sum to 1 within {atol} (row {off[0]} sums to "
            f"{probs[off[0]].sum():.6f})",
            hint="pass softmax outputs, not logits",
        )
    return labels.astype(np.int64), probs


def safe_divide(numerator, denominator, undefined: float = np.nan) -> np.ndarray:
    """numerator / denominator, with ``undefined`` (not a warning) where the denominator is 0."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, float), np.asarray(denominator, float))
    out = np.full(numerator.shape, undefined, dtype=float)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _weight_batch(weights, n_items: int) -> np.ndarray:
    w = np.ones((1, n_items)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=float))
    if w.ndim != 2 or w.shape[1] != n_items:
        raise InvalidArgument(f"weights must have shape [N] or [B, N] with N = {n_items}, got {w.shape}")
    return w


def confusion_matrix(y_true, y_pred, n_classes: int, weights=None) -> np.ndarray:
    """Rows are true classes, columns predicted ones; [C, C] counts, or [B, C, C] for weights [B, N]."""
    pair = np.asarray(y_true) * n_classes + np.asarray(y_pred)
    if weights is None:
        return np.bincount(pair, minlength=n_classes**2).reshape(n_classes, n_classes)
    w = np.asarray(weights, dtype=float)
    one_hot = np.zeros((pair.size, n_classes**2))
    one_hot[np.arange(pair.size), pair] = 1.0
    return (w @ one_hot).reshape(*w.shape[:-1], n_classes, n_classes)


def _class_totals(conf: np.ndarray):
    conf = np.asarray(conf, dtype=float)
    return np.diagonal(conf, axis1=-2, axis2=-1), conf.sum(-1), conf.sum(-2)  # tp, support, predicted


def _macro(values: np.ndarray, scope: np.ndarray | None) -> np.ndarray:
    """Mean over the classes in ``scope`` (NaN if one of them is undefined); over defined ones if None."""
    if scope is None:
        defined = np.isfinite(values)
        return safe_divide(np.where(defined, values, 0.0).sum(-1), defined.sum(-1))
    if not scope.any():
        return np.full(values.shape[:-1], np.nan)
    return values[..., scope].mean(-1)


def accuracy_from_confusion(conf) -> np.ndarray:
    tp, support, _ = _class_totals(conf)
    return safe_divide(tp.sum(-1), support.sum(-1))


def per_class_rates(conf) -> dict[str, np.ndarray]:
    """Precision (0 if never predicted), recall (NaN if absent) and F1 (NaN if absent and never predicted)."""
    tp, support, predicted = _class_totals(conf)
    return {
        "precision": safe_divide(tp, predicted, undefined=0.0),
        "recall": safe_divide(tp, support),
        "f1": safe_divide(2 * tp, support + predicted),
        "support": support,
    }


def macro_f1_from_confusion(conf, scope: np.ndarray | None = None) -> np.ndarray:
    return _macro(per_class_rates(conf)["f1"], scope)


def balanced_accuracy_from_confusion(conf, scope: np.ndarray | None = None) -> np.ndarray:
    return _macro(per_class_rates(conf)["recall"], scope)


def matthews_corrcoef_from_confusion(conf) -> np.ndarray:
    """Multi-class MCC (Gorodkin 2004, R_K); 0 when a marginal is constant (scikit-learn's convention)."""
    tp, support, predicted = _class_totals(conf)
    total = support.sum(-1)
    covariance = tp.sum(-1) * total - (support * predicted).sum(-1)
    spread = (total**2 - (support**2).sum(-1)) * (total**2 - (predicted**2).sum(-1))
    return safe_divide(covariance, np.sqrt(np.maximum(spread, 0.0)), undefined=0.0)


def one_vs_rest_counts(conf, positive_index: int) -> tuple[np.ndarray, ...]:
    conf = np.asarray(conf, dtype=float)
    tp = conf[..., positive_index, positive_index]
    fn = conf[..., positive_index, :].sum(-1) - tp
    fp = conf[..., :, positive_index].sum(-1) - tp
    return tp, fp, fn, conf.sum((-2, -1)) - tp - fp - fn


def diagnostic_odds_ratio(tp, fp, fn, tn) -> tuple[np.ndarray, np.ndarray]:
    """DOR = TP·TN / (FP·FN) with the Haldane-Anscombe +0.5 correction on a zero cell; (dor, corrected)."""
    cells = np.stack(np.broadcast_arrays(*(np.asarray(c, dtype=float) for c in (tp, fp, fn, tn))))
    undefined = (cells[0] + cells[2] == 0) | (cells[1] + cells[3] == 0)  # no positives or no negatives
    corrected = (cells == 0).any(axis=0) & ~undefined
    cells = cells + 0.5 * corrected
    dor = safe_divide(cells[0] * cells[3], cells[1] * cells[2])
    return np.where(undefined, np.nan, dor), corrected


def one_vs_rest_rates(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    dor, corrected = diagnostic_odds_ratio(tp, fp, fn, tn)
    return {
        "f1": safe_divide(2 * tp, 2 * tp + fp + fn),
        "sensitivity": safe_divide(tp, tp + fn),
        "specificity": safe_divide(tn, tn + fp),
        "precision": safe_divide(tp, tp + fp, undefined=0.0),
        "dor": dor,
        "dor_corrected": corrected,
    }


def _grouped_by_score(scores, is_positive, weights, descending: bool):
    """Weighted positives and negatives per distinct score ([B, G] each), scores sorted once."""
    scores = np.asarray(scores, dtype=float)
    is_positive = np.asarray(is_positive, dtype=bool)
    order = np.argsort(-scores if descending else scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # tied scores form one group
    w = _weight_batch(weights, scores.size)[:, order]
    pos = is_positive[order]
    pos_w, neg_w = np.where(pos, w, 0.0), np.where(pos, 0.0, w)
    if starts.size == scores.size:  # no ties (the usual case for softmax outputs): groups are the items
        return pos_w, neg_w
    return np.add.reduceat(pos_w, starts, axis=1), np.add.reduceat(neg_w, starts, axis=1)


def roc_auc(scores, is_positive, weights=None) -> np.ndarray:
    """Binary ROC-AUC = P(score_pos > score_neg) + P(tie) / 2 (Mann-Whitney); NaN without both classes."""
    pos, neg = _grouped_by_score(scores, is_positive, weights, descending=False)
    negatives_below = np.cumsum(neg, axis=1) - neg
    wins = (pos * (negatives_below + 0.5 * neg)).sum(axis=1)
    auc = safe_divide(wins, pos.sum(axis=1) * neg.sum(axis=1))
    return auc if weights is not None and np.ndim(weights) == 2 else auc[0]


def average_precision(scores, is_positive, weights=None) -> np.ndarray:
    """PR-AUC as scikit-learn's average precision: sum over thresholds of (R_k - R_k-1) · P_k."""
    pos, neg = _grouped_by_score(scores, is_positive, weights, descending=True)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    precision = safe_divide(tp, tp + fp, undefined=0.0)  # only where the group has no weight: adds 0
    ap = safe_divide((pos * precision).sum(axis=1), tp[:, -1])
    return ap if weights is not None and np.ndim(weights) == 2 else ap[0]


def multiclass_brier_score(y_true, probs, weights=None) -> np.ndarray:
    """Brier (1950): mean over images of sum over classes of (p_ic - y_ic)^2, in [0, 2]."""
    probs = np.asarray(probs, dtype=float)
    one_hot = np.eye(probs.shape[1])[np.asarray(y_true)]
    per_image = ((probs - one_hot) ** 2).sum(axis=1)
    w = _weight_batch(weights, per_image.size)
    score = safe_divide(w @ per_image, w.sum(axis=1))
    return score if weights is not None and np.ndim(weights) == 2 else score[0]


def brier_score(y_true, probs, weights=None) -> np.ndarray:
    """Mean over images and classes of (p_ic - y_ic)^2, in [0, 1]: the reference study's Brier."""
    return multiclass_brier_score(y_true, probs, weights) / np.shape(probs)[1]


def metric_scope(y_true, y_pred, n_classes: int) -> dict[str, np.ndarray]:
    """Which classes each macro average covers, fixed by the full test set (so resamples share it)."""
    support = np.bincount(y_true, minlength=n_classes)
    predicted = np.bincount(y_pred, minlength=n_classes)
    return {
        "f1": (support + predicted) > 0,
        "recall": support > 0,
        "roc_auc": (support > 0) & (support < len(y_true)),
    }


def batched_metrics(y_true, probs, positive_index: int, weights=None, *, ranking: bool = True) -> dict:
    """Every metric for each row of ``weights`` [B, N] (default one row of ones): {"global", "melanoma"}.

    Inputs must already be validated. ``ranking=False`` skips ROC-AUC and PR-AUC (the costly ones).
    """
    n_items, n_classes = probs.shape
    w = _weight_batch(weights, n_items)
    y_pred = probs.argmax(axis=1)
    scope = metric_scope(y_true, y_pred, n_classes)
    conf = confusion_matrix(y_true, y_pred, n_classes, w)
    global_ = {
        "macro_f1": macro_f1_from_confusion(conf, scope["f1"]),
        "balanced_accuracy": balanced_accuracy_from_confusion(conf, scope["recall"]),
        "mcc": matthews_corrcoef_from_confusion(conf),
        "accuracy": accuracy_from_confusion(conf),
        "brier": brier_score(y_true, probs, w),
        "brier_multiclass": multiclass_brier_score(y_true, probs, w),
    }
    melanoma = one_vs_rest_rates(*one_vs_rest_counts(conf, positive_index))
    if ranking:
        aucs = np.full((w.shape[0], n_classes), np.nan)
        for k in range(n_classes):
            if scope["roc_auc"][k] or k == positive_index:
                aucs[:, k] = roc_auc(probs[:, k], y_true == k, w)
        global_["roc_auc"] = _macro(aucs, scope["roc_auc"])
        melanoma["roc_auc"] = aucs[:, positive_index]
        melanoma["pr_auc"] = average_precision(probs[:, positive_index], y_true == positive_index, w)
    return {"global": global_, "melanoma": melanoma}


def _point(value) -> float | None:
    value = float(np.asarray(value).reshape(-1)[0])
    return value if np.isfinite(value) else None


def global_metrics(y_true, probs, classes: Sequence[str] = CLASSES) -> dict[str, float | None]:
    y, p = validate_predictions(y_true, probs, classes)
    return {name: _point(v) for name, v in batched_metrics(y, p, 0)["global"].items()}


def melanoma_metrics(y_true, probs, classes: Sequence[str] = CLASSES, positive: str = "MEL") -> dict:
    """One-vs-rest metrics of ``positive`` (decision: argmax == positive); ``dor_corrected`` is a bool."""
    y, p = validate_predictions(y_true, probs, classes)
    values = batched_metrics(y, p, positive_index(classes, positive))["melanoma"]
    return {name: bool(v[0]) if name == "dor_corrected" else _point(v) for name, v in values.items()}


def positive_index(classes: Sequence[str], positive: str) -> int:
    if positive not in classes:
        raise InvalidArgument(f"positive class {positive!r} is not one of {list(classes)}")
    return list(classes).index(positive)


def per_class_report(y_true, probs, classes: Sequence[str] = CLASSES) -> dict[str, dict]:
    """{class: {precision, recall, f1, support}}; None where undefined (see the module docstring)."""
    y, p = validate_predictions(y_true, probs, classes)
    rates = per_class_rates(confusion_matrix(y, p.argmax(axis=1), len(classes)))
    return {
        name: {
            "precision": _point(rates["precision"][k]),
            "recall": _point(rates["recall"][k]),
            "f1": _point(rates["f1"][k]),
            "support": int(rates["support"][k]),
        }
        for k, name in enumerate(classes)
    }
