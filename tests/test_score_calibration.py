"""Platt scaling of the score module: the fit, folding it into the weights, the CLI flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixformer.cli import main
from mixformer.models import build_model
from mixformer.train.heldout import calibrate_score, calibrated_scores, fit_score_calibration


def test_fit_recovers_a_known_calibration():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)  # the module's logits
    hits = rng.random(z.size) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))  # true P(hit)
    a, b = fit_score_calibration(1 / (1 + np.exp(-z)), hits, "observed")
    assert abs(a - 0.5) < 0.05 and abs(b + 1.0) < 0.08, (a, b)
    with pytest.raises(ValueError, match="on and off"):
        fit_score_calibration(np.full(10, 0.7), np.ones(10, bool))
    with pytest.raises(ValueError, match="prior"):
        fit_score_calibration(1 / (1 + np.exp(-z)), hits, "uniform")


def test_balanced_prior_removes_the_proportion_of_hits():
    """Reweighting the two classes to equal halves shifts the fitted logit by minus the log
    odds of the hits' proportion (Bayes' rule with even prior odds); the slope stays."""
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, 40000)
    hits = rng.random(z.size) < 1 / (1 + np.exp(-(0.8 * z + 1.5)))  # mostly hits
    p = hits.mean()
    a, b = fit_score_calibration(1 / (1 + np.exp(-z)), hits)  # balanced by default
    assert abs(a - 0.8) < 0.06, a
    assert abs(b - (1.5 - np.log(p / (1 - p)))) < 0.1, (b, p)
    # so 0.5 now splits the frames so that both kinds are misjudged about equally often
    c = a * z + b
    assert abs((c[~hits] < 0).mean() - (c[hits] > 0).mean()) < 0.1


@pytest.mark.parametrize("name", ["mixformer-tiny", "mixformerv2-mbv3"])
def test_calibration_folds_into_the_score_logit(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    g = torch.Generator().manual_seed(1)
    ts, ss = model.config.template_size, model.config.search_size
    template = torch.randn(1, 3, ts, ts, generator=g)
    online = torch.randn(1, 1, 3, ts, ts, generator=g)
    search = torch.randn(1, 3, ss, ss, generator=g)

    def run():
        with torch.no_grad():
            out = model.track(search, model.encode_templates(template, online))
        return out["pred_scores"].reshape(-1), out["pred_boxes"]

    before, boxes = run()
    calibrate_score(model, 2.5, -0.7)
    after, boxes_after = run()
    torch.testing.assert_close(after, 2.5 * before - 0.7, rtol=1e-5, atol=1e-5)
    # calibrated_scores maps the old scores to what the folded module now gives
    np.testing.assert_allclose(
        calibrated_scores(torch.sigmoid(before).numpy(), 2.5, -0.7),
        torch.sigmoid(after).numpy(),
        rtol=1e-4,
    )
    torch.testing.assert_close(boxes_after, boxes)  # the boxes do not change


def test_cli_calibrate_score_needs_a_benchmark(capsys):
    assert main(["train-eval", "default", "--calibrate-score", "out.pth"]) == 2
    assert "--bench" in capsys.readouterr().err


def test_cli_calibration_priors_are_the_library_priors():
    """``train-eval --calibration-prior`` spells its choices out (start-up does not import
    heldout); they must stay those of fit_score_calibration."""
    from conftest import cli_parser
    from mixformer.train.heldout import CALIBRATION_PRIORS

    action = next(a for a in cli_parser("train-eval")._actions if a.dest == "calibration_prior")
    assert tuple(action.choices) == CALIBRATION_PRIORS
    assert action.default == CALIBRATION_PRIORS[0]
