"""Agreement with the reference implementation's own outputs (tests/data/reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import reference_tracker_config, vector_config
from mixformer import Tracker, build_model


@pytest.fixture(scope="module")
def small_model(network_vectors):
    model = build_model(vector_config(network_vectors["config"]))
    model.load_state_dict(network_vectors["state_dict"], strict=True)
    return model


def test_joint_forward_matches_reference(small_model, network_vectors):
    i = network_vectors["inputs"]
    with torch.no_grad():
        out = small_model(i["template"], i["online_template"], i["search"])
    ref = network_vectors["joint"]
    torch.testing.assert_close(out["pred_boxes"], ref["pred_boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(out["pred_scores"], ref["pred_scores"], atol=1e-4, rtol=0)


def test_stage_features_match_reference(small_model, network_vectors):
    i = network_vectors["inputs"]
    with torch.no_grad():
        stages = small_model.backbone(
            i["template"], i["online_template"], i["search"], return_stages=True
        )
    feats = network_vectors["backbone_features"]
    for s, maps in enumerate(stages):
        for name, got in zip(("template", "online", "search"), maps):
            ref = feats[f"stage{s}_{name}"]  # stages 0 and 1: batch row 0 only (compact file)
            torch.testing.assert_close(got[: len(ref)], ref, atol=1e-5, rtol=0)


def test_cached_path_matches_reference(small_model, network_vectors):
    c = network_vectors["cached"]
    with torch.no_grad():
        cache = small_model.encode_templates(c["template"], c["online_templates"])
        out = small_model.track(c["search"], cache)
    assert cache.num_online == 2
    torch.testing.assert_close(out["pred_boxes"], c["pred_boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(out["pred_scores"], c["pred_scores"], atol=1e-4, rtol=0)


def test_score_module_matches_reference(small_model, network_vectors):
    s = network_vectors["score_module"]
    with torch.no_grad():
        logits = small_model.score_branch(
            s["search_features"], s["template_features"], s["boxes_xyxy"]
        )
    torch.testing.assert_close(logits, s["logits"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
@pytest.mark.parametrize("run", ["interval5_online3", "interval4_online1"])
def test_tracker_reproduces_reference_boxes(tracker_vectors, run, fast):
    """Both the plain network and the fast path (folded BN, fused attention) reproduce the
    reference tracker's boxes frame by frame."""
    weights, runs, frames = tracker_vectors
    model = build_model(vector_config(weights["config"]))
    model.load_state_dict(weights["state_dict"], strict=True)
    r = runs["runs"][run]
    config = reference_tracker_config(r)
    tracker = Tracker(model, config, fast=fast, dtype="fp32")
    assert (tracker.engine.network is model) != fast
    boxes, scores = [tracker.init(frames[0], r["boxes_xywh"][0]).box], [None]
    for frame in frames[1:]:
        res = tracker.update(frame)
        boxes.append(res.box)
        scores.append(res.score)
    assert len(boxes) == len(r["boxes_xywh"])
    np.testing.assert_allclose(np.array(boxes), np.array(r["boxes_xywh"]), atol=1e-3, rtol=0)
    np.testing.assert_allclose(
        np.array(scores[1:], dtype=float), np.array(r["scores"][1:], dtype=float), atol=1e-3
    )
    assert tracker.num_online_templates == r["online_size"]
