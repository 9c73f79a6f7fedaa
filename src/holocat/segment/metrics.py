"""Instance-segmentation metrics by one-to-one IoU matching (SCIENCE.md §4, Metrics).

Definitions follow StarDist's ``stardist.matching.matching`` (criterion "iou"):
every ground-truth/prediction pair gets IoU = |T ∩ P| / |T ∪ P|; an optimal one-to-one
assignment (``scipy.optimize.linear_sum_assignment``, maximising first the number of pairs
with IoU >= thresh, then their summed IoU) yields TP = matched pairs with IoU >= thresh,
FP = n_pred - TP, FN = n_true - TP, and

- precision = TP / (TP + FP), recall = TP / (TP + FN),
- accuracy ("AP" in StarDist/DSB usage) = TP / (TP + FP + FN), f1 = 2 TP / (2 TP + FP + FN),
- mean_true_score = Σ matched IoU / n_true, mean_matched_score = Σ matched IoU / TP,
- panoptic_quality = Σ matched IoU / (TP + FP/2 + FN/2),

each 0 when its denominator (or TP, for the ratios of counts) is 0. Works for 2D and 3D labels.

IoUs come from a sparse contingency table (``np.unique`` over the object-id pairs of voxels
that are foreground in both arrays), never from a dense n_true × n_pred table over the image.
The assignment is solved separately on each connected component of the overlap graph (objects
that overlap nothing are unmatched in any case), so a volume with thousands of particles never
needs an n_true × n_pred matrix either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Matching", "matching", "matching_dataset", "matched_pairs", "evaluate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Matching:
    """Matching statistics at one IoU threshold (field names as in StarDist's ``matching``)."""

    thresh: float
    criterion: str
    fp: int
    tp: int
    fn: int
    precision: float
    recall: float
    accuracy: float
    f1: float
    n_true: int
    n_pred: int
    mean_true_score: float
    mean_matched_score: float
    panoptic_quality: float


def _safe_divide(x: float, y: float) -> float:
    return float(x) / float(y) if y != 0 else 0.0


def _check_label_array(y: Any, name: str) -> np.ndarray:
    if not isinstance(y, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array of labels; got {type(y).__name__}")
    if y.ndim not in (2, 3):
        raise ValueError(
            f"{name}: expected a (ny, nx) or (nz, ny, nx) label array; got shape {y.shape}"
        )
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: expected integer labels (0 = background); got dtype {y.dtype}")
    if y.size and np.issubdtype(y.dtype, np.signedinteger) and int(y.min()) < 0:
        raise ValueError(f"{name}: expected non-negative labels; found {int(y.min())}")
    return y


def _check_thresh(thresh: Any, name: str = "thresh") -> float:
    if isinstance(thresh, bool) or not isinstance(thresh, int | float | np.integer | np.floating):
        raise TypeError(f"{name}: expected a real number in (0, 1]; got {thresh!r}")
    t = float(thresh)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"{name}: expected an IoU threshold in (0, 1]; got {t}")
    return t


def _compact(y: np.ndarray) -> tuple[np.ndarray, NDArray[np.int64]]:
    """Map nonzero labels to 0..n-1 (-1 for background); return the map and object sizes."""
    flat = y.ravel()
    top = int(flat.max()) if flat.size else 0
    if top <= max(4 * flat.size, 1 << 16):
        sizes_all = np.bincount(flat, minlength=top + 1)
        present = sizes_all > 0
        present[0] = False
        lut = np.full(top + 1, -1, dtype=np.int64)
        lut[present] = np.arange(int(present.sum()), dtype=np.int64)
        return lut[flat], sizes_all[present].astype(np.int64)
    values, inverse, sizes = np.unique(flat, return_inverse=True, return_counts=True)
    ids = np.arange(values.size, dtype=np.int64)
    if values[0] == 0:
        ids -= 1
        sizes = sizes[1:]
    return ids[inverse], sizes.astype(np.int64)


@dataclass(frozen=True)
class _Overlaps:
    """Sparse IoU table: one entry per overlapping (true, pred) pair, 0-based object ids."""

    n_true: int
    n_pred: int
    true_idx: NDArray[np.int64]
    pred_idx: NDArray[np.int64]
    iou: NDArray[np.float64]


def _overlaps(y_true: np.ndarray, y_pred: np.ndarray) -> _Overlaps:
    t, t_sizes = _compact(y_true)
    p, p_sizes = _compact(y_pred)
    both = (t >= 0) & (p >= 0)
    n_pred = int(p_sizes.size)
    keys, inter = np.unique(t[both] * max(n_pred, 1) + p[both], return_counts=True)
    ti, pi = np.divmod(keys, max(n_pred, 1))
    union = t_sizes[ti] + p_sizes[pi] - inter
    return _Overlaps(
        n_true=int(t_sizes.size),
        n_pred=n_pred,
        true_idx=ti.astype(np.int64),
        pred_idx=pi.astype(np.int64),
        iou=inter / union,
    )


def _match(ov: _Overlaps, thresh: float) -> tuple[Matching, float]:
    """Optimal one-to-one matching at ``thresh``; returns the statistics and Σ matched IoU."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_true, n_pred = ov.n_true, ov.n_pred
    n_matched = min(n_true, n_pred)
    tp = 0
    sum_matched = 0.0
    candidate = ov.iou >= thresh
    if n_matched > 0 and candidate.any():
        # components of the bipartite overlap graph (nodes: true 0..n_true-1, then pred)
        rows = ov.true_idx
        cols = ov.pred_idx + n_true
        graph = coo_matrix(
            (np.ones(rows.size), (rows, cols)), shape=(n_true + n_pred, n_true + n_pred)
        )
        _, comp = connected_components(graph, directed=False)
        edge_comp = comp[rows]
        # only components holding a pair above threshold can contribute a TP
        for c in np.unique(edge_comp[candidate]):
            sel = edge_comp == c
            ti, pi, s = ov.true_idx[sel], ov.pred_idx[sel], ov.iou[sel]
            ut, ti_local = np.unique(ti, return_inverse=True)
            up, pi_local = np.unique(pi, return_inverse=True)
            scores = np.zeros((ut.size, up.size))
            scores[ti_local, pi_local] = s
            # StarDist's cost: count of pairs >= thresh first, summed IoU as tie-breaker
            costs = -(scores >= thresh).astype(float) - scores / (2 * n_matched)
            r, q = linear_sum_assignment(costs)
            ok = scores[r, q] >= thresh
            tp += int(np.count_nonzero(ok))
            sum_matched += float(scores[r, q][ok].sum())
    fp = n_pred - tp
    fn = n_true - tp
    stats = Matching(
        thresh=float(thresh),
        criterion="iou",
        fp=fp,
        tp=tp,
        fn=fn,
        precision=_safe_divide(tp, tp + fp) if tp > 0 else 0.0,
        recall=_safe_divide(tp, tp + fn) if tp > 0 else 0.0,
        accuracy=_safe_divide(tp, tp + fp + fn) if tp > 0 else 0.0,
        f1=_safe_divide(2 * tp, 2 * tp + fp + fn) if tp > 0 else 0.0,
        n_true=n_true,
        n_pred=n_pred,
        mean_true_score=_safe_divide(sum_matched, n_true),
        mean_matched_score=_safe_divide(sum_matched, tp),
        panoptic_quality=_safe_divide(sum_matched, tp + fp / 2 + fn / 2),
    )
    return stats, sum_matched


def _pair(y_true: Any, y_pred: Any) -> _Overlaps:
    yt = _check_label_array(y_true, "y_true")
    yp = _check_label_array(y_pred, "y_pred")
    if yt.shape != yp.shape:
        raise ValueError(
            f"y_true, y_pred: expected equal shapes; got y_true {yt.shape} and y_pred {yp.shape}"
        )
    return _overlaps(yt, yp)


def matching(y_true: np.ndarray, y_pred: np.ndarray, *, thresh: float = 0.5) -> Matching:
    """Match predicted to ground-truth instances one-to-one by IoU and score the result.

    Parameters
    ----------
    y_true, y_pred : ndarray of non-negative ints, shape (ny, nx) or (nz, ny, nx)
        Instance labels, 0 = background; ids need not be sequential.
    thresh : float
        IoU threshold in (0, 1] for a matched pair to count as a true positive.

    Returns
    -------
    Matching
        Counts and scores as defined in the module docstring.

    Raises
    ------
    ValueError
        Shapes differ, labels are not integers or are negative, or ``thresh`` is outside (0, 1].
    TypeError
        A label argument is not a numpy array.

    Examples
    --------
    >>> y_true = np.zeros((20, 20), np.uint16); y_true[2:12, 2:12] = 1
    >>> y_pred = np.zeros((20, 20), np.uint16); y_pred[2:12, 4:14] = 5
    >>> m = matching(y_true, y_pred, thresh=0.5)
    >>> m.tp, m.fp, m.fn, round(m.mean_matched_score, 4)
    (1, 0, 0, 0.6667)
    """
    t = _check_thresh(thresh)
    stats, _ = _match(_pair(y_true, y_pred), t)
    return stats


def matching_dataset(
    ys_true: Sequence[np.ndarray],
    ys_pred: Sequence[np.ndarray],
    *,
    thresh: float = 0.5,
    by_image: bool = False,
) -> Matching:
    """Matching statistics over a set of images (StarDist's ``matching_dataset``).

    With ``by_image=False`` (default) counts and matched IoUs are pooled over all images
    and the ratios computed once from the totals (Σ matched IoU / Σ n_true etc.); with
    ``by_image=True`` counts are summed and every ratio is the mean of the per-image ratios.

    Parameters
    ----------
    ys_true, ys_pred : sequences of label arrays
        Equal-length sequences of pairs with equal shapes (see ``matching``).
    thresh : float
        IoU threshold in (0, 1].
    by_image : bool
        Average ratios per image instead of pooling.

    Returns
    -------
    Matching

    Examples
    --------
    >>> a = np.zeros((8, 8), np.int32); a[1:4, 1:4] = 1
    >>> b = np.zeros((8, 8), np.int32)
    >>> m = matching_dataset([a, a], [a, b], thresh=0.5)
    >>> m.tp, m.fn, m.accuracy
    (1, 1, 0.5)
    """
    t = _check_thresh(thresh)
    ys_true = list(ys_true)
    ys_pred = list(ys_pred)
    if len(ys_true) != len(ys_pred):
        raise ValueError(
            f"ys_true, ys_pred: expected the same number of images; got {len(ys_true)} and "
            f"{len(ys_pred)}"
        )
    if not ys_true:
        raise ValueError("ys_true: expected at least one image; got an empty sequence")
    per_image = [_match(_pair(yt, yp), t) for yt, yp in zip(ys_true, ys_pred, strict=True)]
    return _aggregate(per_image, t, by_image=bool(by_image))


def _aggregate(per_image: list[tuple[Matching, float]], thresh: float, *, by_image: bool):
    tp = sum(m.tp for m, _ in per_image)
    fp = sum(m.fp for m, _ in per_image)
    fn = sum(m.fn for m, _ in per_image)
    n_true = sum(m.n_true for m, _ in per_image)
    n_pred = sum(m.n_pred for m, _ in per_image)
    if by_image:
        n = len(per_image)

        def mean(field: str) -> float:
            return float(sum(getattr(m, field) for m, _ in per_image)) / n

        ratios = {
            k: mean(k)
            for k in (
                "precision",
                "recall",
                "accuracy",
                "f1",
                "mean_true_score",
                "mean_matched_score",
                "panoptic_quality",
            )
        }
    else:
        s = float(sum(sm for _, sm in per_image))
        ratios = dict(
            precision=_safe_divide(tp, tp + fp) if tp > 0 else 0.0,
            recall=_safe_divide(tp, tp + fn) if tp > 0 else 0.0,
            accuracy=_safe_divide(tp, tp + fp + fn) if tp > 0 else 0.0,
            f1=_safe_divide(2 * tp, 2 * tp + fp + fn) if tp > 0 else 0.0,
            mean_true_score=_safe_divide(s, n_true),
            mean_matched_score=_safe_divide(s, tp),
            panoptic_quality=_safe_divide(s, tp + fp / 2 + fn / 2),
        )
    return Matching(
        thresh=thresh,
        criterion="iou",
        fp=fp,
        tp=tp,
        fn=fn,
        n_true=n_true,
        n_pred=n_pred,
        **ratios,
    )


def evaluate(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    thresholds: Iterable[float] = (0.3, 0.5, 0.7),
):
    """Matching statistics of one label pair at several IoU thresholds, as a table.

    The IoU table is computed once and reused for every threshold.

    Parameters
    ----------
    y_true, y_pred : ndarray of non-negative ints, shape (ny, nx) or (nz, ny, nx)
        Instance labels, 0 = background.
    thresholds : iterable of float
        IoU thresholds in (0, 1]; at least one.

    Returns
    -------
    pandas.DataFrame
        One row per threshold, index ``thresh``, columns the other ``Matching`` fields.

    Examples
    --------
    >>> y = np.zeros((10, 10), np.int32); y[2:6, 2:6] = 1
    >>> evaluate(y, y, thresholds=(0.5, 0.9))["accuracy"].tolist()
    [1.0, 1.0]
    """
    import pandas as pd

    ts = [_check_thresh(t, "thresholds") for t in thresholds]
    if not ts:
        raise ValueError("thresholds: expected at least one IoU threshold; got none")
    ov = _pair(y_true, y_pred)
    rows = [asdict(_match(ov, t)[0]) for t in ts]
    return pd.DataFrame(rows).set_index("thresh")


def matched_pairs(
    y_true: np.ndarray, y_pred: np.ndarray, *, thresh: float = 0.5
) -> NDArray[np.int64]:
    """Label pairs (true, pred) that match one-to-one with IoU ≥ ``thresh`` (``thresh`` ≥ 0.5).

    At IoU ≥ 0.5 an object can overlap at most one other object that much, so the pairs are the
    unique optimal matching; they let per-object quantities (attributes) be compared.

    Returns
    -------
    ndarray, shape (n_matched, 2), int64
        Columns: ground-truth label, predicted label; sorted by the ground-truth label.

    Examples
    --------
    >>> a = np.zeros((4, 6), np.int32); a[:, :3] = 1; a[:, 3:] = 2
    >>> b = np.zeros((4, 6), np.int32); b[:, :3] = 7; b[:, 4:] = 9
    >>> matched_pairs(a, b).tolist()
    [[1, 7], [2, 9]]
    """
    thresh = _check_thresh(thresh)
    if thresh < 0.5:
        raise ValueError(
            f"thresh: matched_pairs needs thresh >= 0.5 for unique pairs; got {thresh}"
        )
    ov = _pair(y_true, y_pred)
    yt = np.asarray(y_true)
    yp = np.asarray(y_pred)
    true_labels = np.unique(yt[yt > 0]).astype(np.int64)
    pred_labels = np.unique(yp[yp > 0]).astype(np.int64)
    ok = ov.iou >= thresh
    pairs = np.stack([true_labels[ov.true_idx[ok]], pred_labels[ov.pred_idx[ok]]], axis=1)
    if len(np.unique(pairs[:, 0])) != len(pairs) or len(np.unique(pairs[:, 1])) != len(pairs):
        # exact IoU == 0.5 ties: keep the best pair per object
        order = np.argsort(-ov.iou[ok], kind="stable")
        seen_t: set[int] = set()
        seen_p: set[int] = set()
        keep = []
        for i in order:
            t, p = int(pairs[i, 0]), int(pairs[i, 1])
            if t not in seen_t and p not in seen_p:
                keep.append(i)
                seen_t.add(t)
                seen_p.add(p)
        pairs = pairs[np.sort(np.asarray(keep, dtype=np.int64))]
    return pairs[np.argsort(pairs[:, 0], kind="stable")].astype(np.int64).reshape(-1, 2)
