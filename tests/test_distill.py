"""MixFormerV2 distillation against the reference (SPEC-DISTILL, vectors_v2_distill_small.pt):
one training iteration of every run (dense-to-sparse from a MixViT corner-head teacher, layer
removal at epochs 1 / 20 / 40, continuing fine-tune of the converted shallower student): both
networks' outputs, the KL targets, every loss term and the total, the per-parameter gradient
norms before clipping, the global norm, the frozen parameters and AdamW groups, and the AdamW
step; the removal schedule; the conversion to the shallower student; a CvT teacher."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import close
from mixformer.models import MixFormer, MixFormerV2, ModelConfig, build_model
from mixformer.models.backbones import V2Config
from mixformer.models.backbones.vit import ViTConfig
from mixformer.models.heads import MlpHeadConfig
from mixformer.models.heads.corner_up import CornerUpConfig
from mixformer.train.distill import (
    SIDES,
    DistillWeights,
    corner_marginals,
    distill_optimizer,
    distill_rates,
    distill_step,
    freeze_teacher,
    teacher_targets,
    v2_forward,
)
from mixformer.train.removal import (
    block_rates,
    drop_blocks,
    kept_blocks,
    remove_rate,
    shallow_student,
)

DATA = Path(__file__).resolve().parent / "data" / "reference" / "mixformerv2"
# The teacher's timm classifier parameters are left out of the test copy (build_distill.py).
DEAD_TEACHER_KEYS = {
    "backbone.head.weight",
    "backbone.head.bias",
    "backbone.pos_embed",
    "backbone.cls_token",
}
# Tolerances (absolute, float32 CPU; observed maxima in brackets): network outputs and logits
# 2e-6 [7e-7 on values up to 5.6], KL targets / teacher probabilities 1e-7 [6e-8], loss terms
# and IoUs 2e-6 [1.0e-6 on the teacher's IoU 0.86; the total 9.5e-7 of 6.7], per-parameter
# gradient norms 1e-5 relative [1.8e-6], the two recorded full gradients 1e-6 [3.3e-7],
# parameters after the AdamW step 1e-6 [6e-8, while the step moves them by ~lr = 4e-4].
TOL_OUT, TOL_PROB, TOL_LOSS, TOL_GRAD_REL, TOL_GRAD, TOL_STEP = 2e-6, 1e-7, 2e-6, 1e-5, 1e-6, 1e-6


@pytest.fixture(scope="module")
def vectors() -> dict:
    return torch.load(DATA / "vectors_v2_distill_small.pt", weights_only=True)


def student_config(raw: dict, depth: int) -> ModelConfig:
    return ModelConfig(
        backbone=V2Config(
            embed_dim=raw["EMBED_DIM"],
            depth=depth,
            num_heads=raw["NUM_HEADS"],
            patch_size=raw["PATCH_SIZE"],
            mlp_ratio=raw["MLP_RATIO"],
            drop_path_rate=raw["STUDENT_DROP_PATH_RATE"],
            qkv_bias=raw["QKV_BIAS"],
            norm_eps=raw["BLOCK_NORM_EPS"],
        ),
        head=MlpHeadConfig(bins=raw["FEAT_SZ"]),
        score_head=False,
        template_size=raw["TEMPLATE_SIZE"],
        search_size=raw["SEARCH_SIZE"],
    )


def student(vectors: dict, depth: int, weights: str) -> MixFormerV2:
    model = MixFormer(student_config(vectors["config"], depth))
    model.load_state_dict(vectors["weights"][weights], strict=True)
    return model.train()


def mixvit_teacher(vectors: dict) -> MixFormer:
    raw = vectors["config"]
    assert raw["TEACHER_HEAD_TYPE"] == "CORNER_UP" and not raw["TEACHER_HEAD_FREEZE_BN"]
    cfg = ModelConfig(
        backbone=ViTConfig(
            embed_dim=raw["EMBED_DIM"],
            depth=raw["TEACHER_DEPTH"],
            num_heads=raw["NUM_HEADS"],
            patch_size=raw["PATCH_SIZE"],
            mlp_ratio=raw["MLP_RATIO"],
            drop_path_rate=raw["TEACHER_DROP_PATH_RATE"],
        ),
        head=CornerUpConfig(
            channel=raw["TEACHER_HEAD_DIM"], stride=raw["CORNER_STRIDE"], bn="batch"
        ),
        score_head=False,
        template_size=raw["TEMPLATE_SIZE"],
        search_size=raw["SEARCH_SIZE"],
    )
    model = MixFormer(cfg)
    missing, unexpected = model.load_state_dict(vectors["weights"]["teacher_mixvit"], strict=False)
    assert set(missing) == DEAD_TEACHER_KEYS and not unexpected
    return freeze_teacher(model)


def batch(vectors: dict) -> tuple[torch.Tensor, ...]:
    """The reference batch (templates first, then search; batch second) as four tensors."""
    i = vectors["inputs"]
    return (*i["template_images"], i["search_images"][0], i["search_anno"][0])


def run_iteration(
    vectors: dict, run: str, index: int | None = None
) -> tuple[dict, dict, MixFormerV2]:
    """One :func:`distill_step` of ``run`` as the reference made it; returns
    ``(reference record, our step output, the student after the step)``."""
    c = vectors["config"]
    ref = vectors[run] if index is None else vectors[run][index]
    pairs: list[tuple[int, int]] = []
    remove: list[int] = []
    rates = None
    if run == "stage1":
        teacher = mixvit_teacher(vectors)
        s = student(vectors, c["STUDENT_DEPTH"], "stage1_student")
    else:
        teacher = freeze_teacher(student(vectors, c["STUDENT_DEPTH"], "stage1_student"))
        if run == "stage2_remove":
            s = student(vectors, c["STUDENT_DEPTH"], "stage1_student")
            remove = c["REMOVE_LAYERS"]
            rates = distill_rates(s, remove, remove_rate(ref["epoch"]))
            pairs = list(
                zip(c["DISTILL_LAYERS_STUDENT_REMOVE"], c["DISTILL_LAYERS_TEACHER_REMOVE"])
            )
        else:
            s = student(vectors, c["FINETUNE_DEPTH"], "finetune_init")
            pairs = list(
                zip(c["DISTILL_LAYERS_STUDENT_FINETUNE"], c["DISTILL_LAYERS_TEACHER_FINETUNE"])
            )
    lw = ref["loss_weight"]
    weights = DistillWeights(lw["ciou"], lw["l1"], lw["corner"], lw.get("feat", 0.0))
    opt = distill_optimizer(s, remove_layers=remove)
    out = distill_step(
        s,
        teacher,
        opt,
        *batch(vectors),
        rates=rates,
        feature_pairs=pairs,
        weights=weights,
        keep_grads=True,
    )
    out["optimizer"] = opt
    return ref, out, s


RUNS = [
    ("stage1", None),
    ("stage2_remove", 0),
    ("stage2_remove", 1),
    ("stage2_remove", 2),
    ("stage2_finetune", None),
]
RUN_IDS = ["stage1", "remove_ep1", "remove_ep20", "remove_ep40", "finetune"]


@pytest.fixture(scope="module", params=RUNS, ids=RUN_IDS)
def iteration(request, vectors):
    torch.manual_seed(0)
    return run_iteration(vectors, *request.param)


# ---- the forward of both networks ---------------------------------------------------------------


def test_student_outputs_match_reference(iteration):
    ref, out, _ = iteration
    s, r = out["student"], ref["student"]
    close(s["pred_boxes"].detach(), r["pred_boxes"], TOL_OUT)
    close(s["reg_tokens"].detach(), r["reg_tokens"], TOL_OUT)
    for c in "ltrb":
        close(s["bin_logits"][c].detach(), r[f"bin_logits_{c}"], TOL_OUT)


def test_teacher_outputs_and_kl_targets_match_reference(iteration):
    ref, out, _ = iteration
    t, r = out["teacher"], ref["teacher"]
    close(t["pred_boxes"], r["pred_boxes"], TOL_OUT)
    if "prob_tl" in r:  # stage 1: the corner softmaxes
        close(t["prob_tl"], r["prob_tl"], TOL_PROB)
        close(t["prob_br"], r["prob_br"], TOL_PROB)
    else:
        for c in "ltrb":
            close(t["targets"][c], r[f"prob_{c}"], TOL_PROB)
    for c in "ltrb":
        close(t["targets"][c], ref["kl_targets"][c], TOL_PROB)


def test_every_loss_term_and_the_total_match_reference(iteration):
    ref, out, _ = iteration
    terms, losses = out["terms"], ref["losses"]
    kl_key = "distill_logits" if "distill_logits" in losses else "distill_corner_kl"
    names = {"ciou": "ciou", "l1": "l1", "kl": kl_key, "iou": "iou", "iou_teacher": "iou_teacher"}
    names.update({f"kl_{c}": f"kl_{c}" for c in SIDES})
    if "distill_feat" in losses:
        names["feat"] = "distill_feat"
    assert set(terms) == set(names)
    for ours, theirs in names.items():
        close(terms[ours].detach(), losses[theirs], TOL_LOSS)
    close(out["loss"], losses["total"], TOL_LOSS)
    assert math.isclose(float(out["loss"]), ref["status"]["Loss/total"], abs_tol=TOL_LOSS)


def test_gradient_norms_before_clipping_match_reference(iteration):
    ref, out, _ = iteration
    grads = out["grads"]
    assert set(grads) == set(ref["grad_norms"])  # the same parameters receive gradients
    for name, norm in ref["grad_norms"].items():
        assert math.isclose(float(grads[name].norm()), norm, rel_tol=TOL_GRAD_REL), name
    assert math.isclose(float(out["grad_norm"]), ref["total_grad_norm"], rel_tol=TOL_GRAD_REL)
    for name, g in ref["grads"].items():
        close(grads[name], g, TOL_GRAD)


def test_frozen_parameters_groups_and_adamw_step_match_reference(iteration):
    ref, out, s = iteration
    assert [n for n, p in s.named_parameters() if not p.requires_grad] == ref["frozen_parameters"]
    ids = {id(p): n for n, p in s.named_parameters()}
    groups = out["optimizer"].param_groups
    assert [[ids[id(p)] for p in g["params"]] for g in groups] == ref["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx(ref["lr"], rel=1e-12)
    params = dict(s.named_parameters())
    for name, value in ref["after_step"].items():
        close(params[name].detach(), value, TOL_STEP)
        moved = not torch.equal(ref["before_step"][name], value)
        assert moved == (name in ref["grad_norms"]), name  # frozen blocks stay put


# ---- stage 2: schedule, conversion, equivalence -------------------------------------------------


def test_remove_schedule_matches_reference(vectors):
    sched = vectors["remove_schedule"]
    assert [remove_rate(e) for e in sched["epochs"]] == sched["rates"]  # bit-exact doubles
    for run in vectors["stage2_remove"]:
        assert remove_rate(run["epoch"]) == run["remove_rate"]
    assert remove_rate(1) == pytest.approx(0.99384417, abs=1e-8)
    assert remove_rate(38) > 0.0 and remove_rate(39) == 0.0 and remove_rate(500) == 0.0
    with pytest.raises(ValueError):
        remove_rate(0)
    assert block_rates(4, [0, 2], 0.25) == [0.25, 1.0, 0.25, 1.0]
    with pytest.raises(ValueError):
        block_rates(4, [4], 0.5)


def test_drop_blocks_renames_as_the_reference_and_shallow_student_equals_its_init(vectors):
    c = vectors["config"]
    ckpt = vectors["weights"]["remove_checkpoint"]
    sd, renames = drop_blocks(ckpt, c["INVALID_LAYERS_FINETUNE"])
    assert renames == [tuple(p) for p in vectors["weights"]["finetune_key_map"]]
    assert not any("pos_embed_s" in k or "pos_embed_t" in k for k in sd)
    assert drop_blocks(ckpt, [])[0].keys() == ckpt.keys()  # INVALID_LAYERS [] : unchanged
    deep = student(vectors, c["STUDENT_DEPTH"], "remove_checkpoint")
    shallow = shallow_student(deep, c["INVALID_LAYERS_FINETUNE"])
    assert shallow.training and len(shallow.backbone.blocks) == c["FINETUNE_DEPTH"]
    init = vectors["weights"]["finetune_init"]
    got = shallow.state_dict()
    assert list(got) == list(init)
    for k, v in init.items():
        assert torch.equal(got[k], v), k
    assert kept_blocks(12, [0, 3, 6, 9]) == [1, 2, 4, 5, 7, 8, 10, 11]


@torch.no_grad()
def test_phased_out_student_equals_the_converted_shallower_student(vectors):
    c = vectors["config"]
    remove = c["REMOVE_LAYERS"]
    deep = student(vectors, c["STUDENT_DEPTH"], "remove_checkpoint").eval()
    shallow = shallow_student(deep, remove)
    z, o, x, _ = batch(vectors)
    kept = kept_blocks(c["STUDENT_DEPTH"], remove)
    a = v2_forward(deep, z, o, x, block_rates(len(kept) + len(remove), remove, 0.0), kept)
    b = v2_forward(shallow, z, o, x, None, list(range(len(kept))))
    assert torch.equal(a["features"], b["features"])  # identity blocks: bit-identical
    for k in ("pred_boxes", "reg_tokens"):
        assert torch.equal(a[k], b[k])
    # the plain forward of the shallow network is the same function
    plain = shallow(z, o, x)
    close(plain["pred_boxes"], b["pred_boxes"], 1e-6)
    # and at rate 1 the deep student is the plain deep network
    full = v2_forward(deep, z, o, x)
    close(deep(z, o, x)["pred_boxes"], full["pred_boxes"], 1e-6)


# ---- other teachers, guards ---------------------------------------------------------------------


def test_cvt_teacher_teaches_a_student_with_matching_bins():
    torch.manual_seed(0)
    teacher = freeze_teacher(build_model("mixformer-tiny", score_head=False, head_bn="batch"))
    tc = teacher.config
    f = tc.corner_map_size
    cfg = ModelConfig(
        backbone=V2Config(embed_dim=32, depth=2, num_heads=2, mlp_ratio=1.0, drop_path_rate=0.0),
        head=MlpHeadConfig(bins=f),
        score_head=False,
        template_size=tc.template_size,
        search_size=tc.search_size,
    )
    s = MixFormer(cfg).train()
    z, o = torch.randn(2, 2, 3, tc.template_size, tc.template_size)
    x = torch.randn(2, 3, tc.search_size, tc.search_size)
    anno = torch.tensor([[0.3, 0.3, 0.2, 0.25], [0.5, 0.4, 0.3, 0.2]])
    t = teacher_targets(teacher, z, o, x)
    for side in SIDES:
        assert t["targets"][side].shape == (2, f)
        close(t["targets"][side].sum(1), torch.ones(2), 1e-5)
    opt = distill_optimizer(s)
    before = s.box_head.layers[1][0].weight.detach().clone()
    out = distill_step(s, teacher, opt, z, o, x, anno)
    assert torch.isfinite(out["loss"]) and "feat" not in out["terms"]
    assert not torch.equal(before, s.box_head.layers[1][0].weight)
    assert all(p.grad is None for p in teacher.parameters())
    # the KL is the batch mean of sum p (log p - log q), averaged over the four sides
    kls = []
    for side in SIDES:
        p, q = t["targets"][side], torch.log_softmax(out["student"]["bin_logits"][side], -1)
        kls.append((torch.xlogy(p, p) - p * q).sum() / 2)
    close(out["terms"]["kl"].detach(), sum(kls).detach() / 4, 1e-5)

    wrong = MixFormer(cfg.replace(bins=f + 1))
    with pytest.raises(ValueError, match="bins"):
        distill_step(wrong, teacher, distill_optimizer(wrong), z, o, x, anno)


def test_guards():
    p = torch.softmax(torch.randn(3, 16), 1)
    m = corner_marginals(p, p)
    assert m["t"].shape == (3, 4) and torch.allclose(m["l"].sum(1), torch.ones(3))
    with pytest.raises(ValueError, match="square"):
        corner_marginals(torch.ones(1, 15), torch.ones(1, 15))
    teacher = MixFormer(
        ModelConfig(
            backbone=V2Config(embed_dim=32, depth=1, num_heads=2, mlp_ratio=1.0),
            head=MlpHeadConfig(bins=8),
            score_head=False,
            template_size=32,
            search_size=64,
        )
    )
    z = torch.randn(1, 3, 32, 32)
    with pytest.raises(RuntimeError, match="eval"):
        teacher_targets(teacher.train(), z, z, torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="MixFormerV2"):
        shallow_student(build_model("mixformer-tiny"), [0])
    with pytest.raises(ValueError, match="no block"):
        shallow_student(teacher, [0])


def test_a_few_stage1_steps_lower_the_loss_and_validation_takes_no_step(vectors):
    c = vectors["config"]
    teacher = mixvit_teacher(vectors)
    s = student(vectors, c["STUDENT_DEPTH"], "stage1_student")
    opt = distill_optimizer(s, lr=2e-3)
    inputs = batch(vectors)
    losses = [float(distill_step(s, teacher, opt, *inputs)["loss"]) for _ in range(12)]
    assert losses[-1] < 0.9 * losses[0], losses
    s.eval()
    before = [p.detach().clone() for p in s.parameters()]
    with torch.no_grad():
        val = distill_step(s, teacher, None, *inputs)
    assert "grad_norm" not in val and math.isfinite(float(val["loss"]))
    assert all(torch.equal(a, b) for a, b in zip(before, s.parameters()))
