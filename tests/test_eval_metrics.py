"""Metrics: hand-worked cases, reference conventions, cross-checks with the got10k toolkit."""

from __future__ import annotations

import numpy as np
import pytest

from mixformer.evaluation import metrics as M


def test_iou_hand_cases() -> None:
    gt = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    pred = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [10, 0, 10, 10], [0, 0, 5, 10]], float)
    # identical; half-shifted: 50 / 150; touching: 0; contained half: 50 / 100
    np.testing.assert_allclose(M.iou(pred, gt), [1.0, 1 / 3, 0.0, 0.5])


def test_center_errors_hand_cases() -> None:
    gt = np.array([[0, 0, 10, 20], [0, 0, 10, 20]], float)
    pred = np.array([[3, 4, 10, 20], [0, 0, 12, 20]], float)
    np.testing.assert_allclose(M.center_error(pred, gt), [5.0, 1.0])
    # normalised: (3/10, 4/20) -> sqrt(0.09 + 0.04); second: centre x 5.5 vs 4.5 -> 0.1
    np.testing.assert_allclose(M.normalized_center_error(pred, gt), [np.sqrt(0.13), 0.1])


def test_success_curve_strict_and_denominator() -> None:
    gt = np.array([[0, 0, 10, 10]] * 4, float)
    pred = np.array([[0, 0, 10, 10], [0, 0, 5, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    vis = np.array([True, True, True, False])
    thr, s = M.success_curve(pred, gt, visible=vis)
    assert len(thr) == 21 and thr[15] == 0.75
    # IoU 1, 0.5, 1 and one invisible frame (counted as failure, kept in denominator).
    assert s[0] == pytest.approx(3 / 4)
    assert s[10] == pytest.approx(2 / 4)  # 0.5 > 0.5 is false: strict
    assert s[20] == 0.0
    assert M.auc(pred, gt, vis) == pytest.approx(np.mean(s))
    assert M.auc(s) == pytest.approx(np.mean(s))


def test_invalid_frames_never_hits() -> None:
    gt = np.array([[0, 0, 10, 10], [0, 0, 0, 0], [np.nan] * 4], float)
    pred = gt.copy()
    pred[1:] = [0, 0, 10, 10]
    _, p = M.precision_curve(pred, gt)
    _, n = M.normalized_precision_curve(pred, gt)
    assert p[20] == pytest.approx(1 / 3)
    assert n[20] == pytest.approx(1 / 3)  # the reference would give 1.0 (SPEC 5 item 31)


def test_prepare_prediction_conventions() -> None:
    gt = np.array([[1, 1, 4, 4], [2, 2, 4, 4], [3, 3, 4, 4], [np.nan] * 4], float)
    pred = np.array([[9, 9, 9, 9], [5, 5, 3, 3], [7, 7, 0, 3]], float)
    out = M.prepare_prediction(pred, gt)
    np.testing.assert_array_equal(out[0], gt[0])
    np.testing.assert_array_equal(out[2], [5, 5, 3, 3])  # zero width -> previous box
    np.testing.assert_array_equal(out[3], [0, 0, 0, 0])  # padded, gt NaN: kept
    with pytest.raises(ValueError, match="prediction has 3 rows"):
        M.prepare_prediction(pred, gt, strict_length=True, name="seq")
    with pytest.raises(ValueError, match="negative"):
        M.prepare_prediction(np.array([[0, 0, -1, 2]] * 4, float), gt)
    with pytest.raises(ValueError, match="NaN"):
        M.prepare_prediction(np.full((4, 4), np.nan), gt)


def test_summarize_reads_op75_by_index() -> None:
    gt = np.array([[0, 0, 100, 100]] * 5, float)
    pred = gt.copy()
    pred[1:, 2] = 80  # IoU 0.8 on four frames
    sc = M.evaluate_sequence(pred, gt, name="a")
    summ = M.summarize([sc])
    assert summ["OP75"] == pytest.approx(100.0)
    assert summ["OP50"] == pytest.approx(100.0)
    # success curve: 1 for t < 0.8 (16 thresholds, 0..0.75), frame 0 also > 0.8..0.95 (4)
    expected = (16 * 5 + 4 * 1) / 5 / 21 * 100
    assert summ["AUC"] == pytest.approx(expected)


def test_got10k_ao_hand_case() -> None:
    gt = np.array([[0, 0, 10, 10]] * 4, float)
    pred = np.array([[50, 50, 1, 1], [0, 0, 10, 10], [0, 0, 5, 10], [0, 0, 5, 10]], float)
    vis = np.array([True, True, True, False])
    ious = M.got10k_sequence_ious(pred, gt, vis)
    np.testing.assert_allclose(ious, [1.0, 0.5])  # frame 0 and the absent frame dropped
    s = M.got10k_scores([ious, np.array([0.8])])
    assert s["AO"] == pytest.approx(100 * (1 + 0.5 + 0.8) / 3)
    assert s["SR50"] == pytest.approx(100 * 2 / 3)
    assert s["SR75"] == pytest.approx(100 * 2 / 3)


def _random_boxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    gt = np.column_stack([rng.uniform(0, 300, (n, 2)), rng.uniform(5, 120, (n, 2))])
    noise = np.column_stack([rng.normal(0, 20, (n, 2)), rng.normal(0, 15, (n, 2))])
    pred = gt + noise
    pred[:, 2:] = np.abs(pred[:, 2:]) + 1
    return pred, gt


def _adversarial_boxes() -> tuple[np.ndarray, np.ndarray]:
    gt = np.array([[10, 10, 20, 20]] * 10, float)
    pred = np.array(
        [
            [10, 10, 20, 20],  # identical
            [30, 10, 20, 20],  # touching edge
            [10, 10, 10, 20],  # IoU exactly 0.5
            [10, 10, 15, 20],  # IoU exactly 0.75
            [10, 10, 5, 20],  # IoU exactly 0.25
            [500, 500, 3, 3],  # far away
            [10.5, 10.5, 20, 20],
            [0, 0, 40, 40],  # contains gt: 0.25
            [29, 29, 1, 1],  # a corner pixel
            [10, 30, 20, 20],  # touching bottom
        ],
        float,
    )
    return pred, gt


@pytest.fixture
def got10k():  # noqa: ANN201 - the toolkit's metrics module
    """The GOT-10k toolkit (test-only dependency: ``pip install got10k==0.1.3``)."""
    return pytest.importorskip("got10k.utils.metrics", reason="got10k toolkit not installed")


@pytest.mark.parametrize("case", ["random", "adversarial"])
def test_cross_check_otb_toolkit(case: str, got10k) -> None:
    from got10k.experiments.otb import ExperimentOTB

    rng = np.random.default_rng(7)
    pred, gt = _random_boxes(rng, 500) if case == "random" else _adversarial_boxes()
    ref_iou = got10k.rect_iou(pred.copy(), gt.copy())
    np.testing.assert_allclose(M.iou(pred, gt), ref_iou, atol=1e-12)
    np.testing.assert_allclose(M.center_error(pred, gt), got10k.center_error(pred, gt))
    exp = ExperimentOTB.__new__(ExperimentOTB)
    exp.nbins_iou, exp.nbins_ce = 21, 51
    succ, prec = exp._calc_curves(ref_iou, got10k.center_error(pred, gt))
    _, ours_s = M.success_curve(pred, gt)
    _, ours_p = M.precision_curve(pred, gt)
    np.testing.assert_allclose(ours_s, succ)
    np.testing.assert_allclose(ours_p, prec)
    assert M.auc(pred, gt) == pytest.approx(float(np.mean(succ)))
    assert ours_p[20] == pytest.approx(prec[20])


@pytest.mark.parametrize("case", ["random", "adversarial"])
def test_cross_check_got10k_ao(case: str, got10k) -> None:
    from got10k.experiments.got10k import ExperimentGOT10k

    rng = np.random.default_rng(11)
    seqs = []
    for _ in range(4):
        pred, gt = _random_boxes(rng, 60) if case == "random" else _adversarial_boxes()
        cover = rng.integers(0, 9, len(gt))
        seqs.append((pred, gt, cover))
    bound = (320, 240)
    ours = [M.got10k_sequence_ious(p, g, c > 0, image_size=bound) for p, g, c in seqs]
    ref = [got10k.rect_iou(p[1:].copy(), g[1:].copy(), bound=bound)[c[1:] > 0] for p, g, c in seqs]
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, atol=1e-12)
    exp = ExperimentGOT10k.__new__(ExperimentGOT10k)
    ao, sr, _, _ = exp._evaluate(np.concatenate(ref), np.ones(3))
    s = M.got10k_scores(ours)
    assert s["AO"] == pytest.approx(100 * ao)
    assert s["SR50"] == pytest.approx(100 * sr)


def test_auroc_ranks_with_ties() -> None:
    from mixformer.evaluation.metrics import auroc

    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool)) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1], bool)) == 0.0
    assert auroc(np.full(6, 0.5), np.array([0, 1, 0, 1, 0, 1], bool)) == 0.5
    # One positive above two of three negatives, tied with the third: (2 + 0.5) / 3.
    assert (
        abs(auroc(np.array([0.5, 0.1, 0.2, 0.5]), np.array([1, 0, 0, 0], bool)) - 2.5 / 3) < 1e-12
    )
    assert np.isnan(auroc(np.ones(3), np.ones(3, bool)))
    rng = np.random.default_rng(0)
    s, y = rng.random(200), rng.random(200) < 0.3
    pairs = (s[y][:, None] > s[~y][None]).mean()
    assert abs(auroc(s, y) - pairs) < 1e-12
