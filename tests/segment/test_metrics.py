"""Tests of holocat.segment.metrics against hand-made cases with known TP/FP/FN and IoU, a dense
brute-force transcription of StarDist's ``matching`` and, when installed, StarDist itself."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from holocat.segment import Matching, evaluate, matching, matching_dataset


def squares(shape, boxes, dtype=np.int32):
    """Label image with label k+1 (or the given id) on each (slices..., id?) box."""
    y = np.zeros(shape, dtype)
    for box in boxes:
        *sl, lab = box
        y[tuple(slice(a, b) for a, b in sl)] = lab
    return y


def dense_reference(y_true, y_pred, thresh):
    """StarDist 0.9 ``matching`` written out with a dense contingency table (test oracle)."""
    t_ids = np.unique(y_true)
    p_ids = np.unique(y_pred)
    t_ids, p_ids = t_ids[t_ids > 0], p_ids[p_ids > 0]
    inter = np.array([[np.sum((y_true == a) & (y_pred == b)) for b in p_ids] for a in t_ids])
    inter = inter.reshape(len(t_ids), len(p_ids)).astype(float)
    st = np.array([np.sum(y_true == a) for a in t_ids], float)
    sp = np.array([np.sum(y_pred == b) for b in p_ids], float)
    union = st[:, None] + sp[None, :] - inter
    scores = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    n_true, n_pred = scores.shape
    n_matched = min(n_true, n_pred)
    tp, s = 0, 0.0
    if n_matched > 0:
        costs = -(scores >= thresh).astype(float) - scores / (2 * n_matched)
        r, c = linear_sum_assignment(costs)
        ok = scores[r, c] >= thresh
        tp, s = int(ok.sum()), float(scores[r, c][ok].sum())
    fp, fn = n_pred - tp, n_true - tp
    return dict(
        tp=tp,
        fp=fp,
        fn=fn,
        n_true=n_true,
        n_pred=n_pred,
        precision=tp / (tp + fp) if tp else 0.0,
        recall=tp / (tp + fn) if tp else 0.0,
        accuracy=tp / (tp + fp + fn) if tp else 0.0,
        f1=2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        mean_true_score=s / n_true if n_true else 0.0,
        mean_matched_score=s / tp if tp else 0.0,
        panoptic_quality=s / (tp + fp / 2 + fn / 2) if (tp + fp + fn) else 0.0,
    )


def test_identical_labels_are_perfect():
    y = squares((30, 30), [((2, 8), (2, 8), 3), ((10, 20), (10, 25), 9), ((22, 28), (1, 4), 4)])
    m = matching(y, y.copy(), thresh=0.9)
    assert isinstance(m, Matching)
    assert (m.tp, m.fp, m.fn, m.n_true, m.n_pred) == (3, 0, 0, 3, 3)
    assert m.accuracy == m.f1 == m.precision == m.recall == m.panoptic_quality == 1.0
    assert m.criterion == "iou" and m.thresh == 0.9


def test_shifted_square_iou_two_thirds():
    # 10 x 10 squares shifted by 2 px: overlap 80, union 120, IoU = 2/3
    y_true = squares((20, 20), [((2, 12), (2, 12), 1)])
    y_pred = squares((20, 20), [((2, 12), (4, 14), 5)])
    m = matching(y_true, y_pred, thresh=0.5)
    assert (m.tp, m.fp, m.fn) == (1, 0, 0)
    assert m.mean_matched_score == pytest.approx(2 / 3)
    assert m.mean_true_score == pytest.approx(2 / 3)
    assert m.panoptic_quality == pytest.approx(2 / 3)
    m7 = matching(y_true, y_pred, thresh=0.7)
    assert (m7.tp, m7.fp, m7.fn) == (0, 1, 1)
    assert m7.accuracy == m7.f1 == m7.panoptic_quality == m7.mean_true_score == 0.0


def test_split_object():
    # one 10 x 20 true object predicted as two 10 x 10 halves: IoU 0.5 each
    y_true = squares((12, 24), [((1, 11), (2, 22), 1)])
    y_pred = squares((12, 24), [((1, 11), (2, 12), 1), ((1, 11), (12, 22), 2)])
    m = matching(y_true, y_pred, thresh=0.5)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert m.precision == 0.5 and m.recall == 1.0
    assert m.accuracy == 0.5
    assert m.f1 == pytest.approx(2 / 3)
    assert m.panoptic_quality == pytest.approx(0.5 / 1.5)
    assert m.mean_matched_score == 0.5 and m.mean_true_score == 0.5
    assert matching(y_true, y_pred, thresh=0.51).tp == 0


def test_merged_objects_with_extra_fp_and_missed_fn():
    # true: A, B side by side (10 x 10 each) + C; pred: one 10 x 20 covering A and B,
    # nothing on C, and a spurious D
    y_true = squares(
        (30, 30), [((0, 10), (0, 10), 1), ((0, 10), (10, 20), 2), ((20, 25), (20, 25), 3)]
    )
    y_pred = squares((30, 30), [((0, 10), (0, 20), 8), ((15, 18), (0, 3), 2)])
    m = matching(y_true, y_pred, thresh=0.5)
    assert (m.tp, m.fp, m.fn, m.n_true, m.n_pred) == (1, 1, 2, 3, 2)
    assert m.accuracy == pytest.approx(1 / 4)
    assert m.f1 == pytest.approx(2 / 5)
    assert m.panoptic_quality == pytest.approx(0.5 / (1 + 0.5 + 1))
    assert m.mean_true_score == pytest.approx(0.5 / 3)


def test_optimal_assignment_beats_greedy():
    # pixel-set construction: |A∩P| = 5, |A∩Q| = 3, |B∩P| = 3, |A| = 8, |P| = 8, |Q| = |B| = 3
    # IoU(A,P) = 5/11, IoU(A,Q) = 3/8, IoU(B,P) = 3/8, IoU(B,Q) = 0.
    y_true = np.array([[1] * 5 + [1] * 3 + [2] * 3])
    y_pred = np.array([[7] * 5 + [9] * 3 + [7] * 3])
    m = matching(y_true, y_pred, thresh=0.3)
    # greedy (largest IoU first) would match only A-P; the optimum matches A-Q and B-P
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert m.mean_matched_score == pytest.approx(3 / 8)
    m4 = matching(y_true, y_pred, thresh=0.4)
    assert (m4.tp, m4.fp, m4.fn) == (1, 1, 1)
    assert m4.mean_matched_score == pytest.approx(5 / 11)
    assert m4.panoptic_quality == pytest.approx((5 / 11) / 2)


def test_three_dimensional_cubes():
    y_true = squares((16, 16, 16), [((0, 8), (0, 8), (0, 8), 1), ((8, 16), (8, 16), (8, 16), 2)])
    y_pred = squares((16, 16, 16), [((0, 8), (0, 8), (1, 9), 4), ((0, 4), (12, 16), (0, 4), 6)])
    m = matching(y_true, y_pred, thresh=0.5)
    # cube shifted by one of eight voxels: IoU = 448 / 576 = 7/9
    assert (m.tp, m.fp, m.fn) == (1, 1, 1)
    assert m.mean_matched_score == pytest.approx(7 / 9)
    assert m.panoptic_quality == pytest.approx((7 / 9) / 2)


def test_empty_inputs():
    y = squares((10, 10), [((1, 4), (1, 4), 1), ((5, 9), (5, 9), 2)])
    empty = np.zeros_like(y)
    m = matching(y, empty)
    assert (m.tp, m.fp, m.fn, m.n_pred) == (0, 0, 2, 0)
    assert m.accuracy == m.precision == m.recall == m.panoptic_quality == 0.0
    m = matching(empty, y)
    assert (m.tp, m.fp, m.fn) == (0, 2, 0)
    m = matching(empty, empty)
    assert (m.tp, m.fp, m.fn, m.n_true, m.n_pred) == (0, 0, 0, 0, 0)
    assert m.accuracy == 0.0 and m.panoptic_quality == 0.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thresh", [0.1, 0.3, 0.5, 0.7])
def test_matches_dense_reference_on_random_labels(seed, thresh):
    """Random overlapping rectangles (later ones paint over earlier ones), 2D and 3D."""
    rng = np.random.default_rng(seed)
    shape = (40, 48) if seed % 2 == 0 else (14, 16, 18)

    def random_labels(n, ids):
        y = np.zeros(shape, np.int64)
        for k in range(n):
            lo = [int(rng.integers(0, s - 3)) for s in shape]
            hi = [
                int(min(s, a + rng.integers(3, max(4, s // 2))))
                for a, s in zip(lo, shape, strict=True)
            ]
            y[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = ids[k]
        return y

    y_true = random_labels(12, rng.permutation(1000)[:12] + 1)
    y_pred = random_labels(10, np.arange(1, 11) * 3)
    ref = dense_reference(y_true, y_pred, thresh)
    got = asdict(matching(y_true, y_pred, thresh=thresh))
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_against_stardist_when_installed():
    sd = pytest.importorskip("stardist.matching")
    rng = np.random.default_rng(11)
    y_true = np.zeros((64, 64), np.int32)
    y_pred = np.zeros((64, 64), np.int32)
    for k in range(1, 16):
        cy, cx = rng.integers(4, 60, size=2)
        y_true[cy - 4 : cy + 4, cx - 4 : cx + 4] = k
        dy, dx = rng.integers(-2, 3, size=2)
        y_pred[cy - 4 + dy : cy + 4 + dy, cx - 3 + dx : cx + 4 + dx] = k + 100
    for thresh in (0.3, 0.5, 0.7):
        ref = sd.matching(y_true, y_pred, thresh=thresh)._asdict()
        got = asdict(matching(y_true, y_pred, thresh=thresh))
        for key, value in got.items():
            if key == "criterion":
                assert value == ref[key]
            else:
                assert value == pytest.approx(ref[key]), key


def test_matching_dataset_pooled_and_by_image():
    a = squares((20, 20), [((2, 12), (2, 12), 1)])
    shifted = squares((20, 20), [((2, 12), (4, 14), 1)])  # IoU 2/3
    b = squares((20, 20), [((0, 5), (0, 5), 1), ((10, 15), (10, 15), 2)])
    b_pred = squares((20, 20), [((0, 5), (0, 5), 1)])  # one exact match, one FN
    pooled = matching_dataset([a, b], [shifted, b_pred], thresh=0.5)
    assert (pooled.tp, pooled.fp, pooled.fn, pooled.n_true, pooled.n_pred) == (2, 0, 1, 3, 2)
    s = 2 / 3 + 1.0
    assert pooled.accuracy == pytest.approx(2 / 3)
    assert pooled.mean_true_score == pytest.approx(s / 3)
    assert pooled.mean_matched_score == pytest.approx(s / 2)
    assert pooled.panoptic_quality == pytest.approx(s / (2 + 0.5))
    per = matching_dataset([a, b], [shifted, b_pred], thresh=0.5, by_image=True)
    assert per.tp == 2
    assert per.accuracy == pytest.approx((1.0 + 0.5) / 2)
    assert per.mean_true_score == pytest.approx((2 / 3 + 0.5) / 2)
    with pytest.raises(ValueError, match="ys_true, ys_pred"):
        matching_dataset([a], [a, b])


def test_evaluate_table():
    y_true = squares((20, 20), [((2, 12), (2, 12), 1)])
    y_pred = squares((20, 20), [((2, 12), (4, 14), 5)])
    table = evaluate(y_true, y_pred)
    assert isinstance(table, pd.DataFrame)
    assert table.index.name == "thresh" and table.index.tolist() == [0.3, 0.5, 0.7]
    assert table["tp"].tolist() == [1, 1, 0]
    assert table["accuracy"].tolist() == [1.0, 1.0, 0.0]
    assert set(table.columns) == set(Matching.__dataclass_fields__) - {"thresh"}


@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [
        (np.zeros((4, 4), int), np.zeros((4, 5), int), "y_true, y_pred: expected equal shapes"),
        (np.zeros((4, 4), float), np.zeros((4, 4), int), "y_true: expected integer"),
        (np.zeros((4, 4), int), np.zeros((4, 4), bool), "y_pred: expected integer"),
        (np.zeros((4, 4), int), -np.ones((4, 4), int), "y_pred: expected non-negative"),
        (-np.ones((4, 4), int), np.zeros((4, 4), int), "y_true: expected non-negative"),
        (np.zeros(4, int), np.zeros(4, int), "y_true: expected a"),
    ],
)
def test_matching_rejects_bad_labels(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        matching(y_true, y_pred)


def test_matching_rejects_bad_thresholds():
    y = np.zeros((4, 4), int)
    with pytest.raises(ValueError, match="thresh"):
        matching(y, y, thresh=0.0)
    with pytest.raises(ValueError, match="thresh"):
        matching(y, y, thresh=1.5)
    with pytest.raises(ValueError, match="thresholds"):
        evaluate(y, y, thresholds=())
    with pytest.raises(TypeError, match="y_true"):
        matching([[0, 1]], y)


def test_matched_pairs_returns_label_ids_of_unique_matches():
    from holocat.segment import matched_pairs

    a = np.zeros((20, 20), np.int32)
    b = np.zeros((20, 20), np.int32)
    a[2:8, 2:8] = 5  # matched by 40 (IoU 1)
    b[2:8, 2:8] = 40
    a[10:16, 10:16] = 9  # matched by 41, shifted by one column: IoU 30/42
    b[10:16, 11:17] = 41
    a[0:2, 15:20] = 3  # unmatched
    b[17:20, 0:3] = 42  # false positive
    pairs = matched_pairs(a, b)
    assert pairs.tolist() == [[5, 40], [9, 41]]
    assert matched_pairs(a, b, thresh=0.8).tolist() == [[5, 40]]
    with pytest.raises(ValueError, match="thresh"):
        matched_pairs(a, b, thresh=0.3)
    with pytest.raises(ValueError, match="y_pred"):
        matched_pairs(a, b[:10])
