"""Loading and saving weights: round trip, reference-style files, wrong presets, safety."""

from __future__ import annotations

import logging
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from mixformer import build_model
from mixformer.models import CheckpointError, get_config, load_weights, save_weights
from mixformer.models import weights as weights_mod
from mixformer.models.factory import default_weights_path


def _touch(path: str) -> None:
    Path(path).write_text("pickled code ran")


class ForeignSettings:
    """Pickles as a call to ``_touch``: loading it with plain pickle would run code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (_touch, (self.path,))


class ForeignStats:
    def __init__(self) -> None:
        self.avg = 1.5


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    return build_model("mixformer-tiny")


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_rebuilds_from_file_alone(tiny, tmp_path):
    path = tmp_path / "tiny.pth"
    save_weights(tiny, path, epoch=3)
    loaded = build_model(None, weights=path)
    assert loaded.name == "mixformer-tiny" and loaded.config == tiny.config
    assert _same_weights(tiny, loaded) and not loaded.training


def test_release_file_with_foreign_pickles_loads_without_running_code(tiny, tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "release.pth.tar"
    torch.save(
        {
            "net": tiny.state_dict(),
            "settings": ForeignSettings(str(marker)),
            "stats": {"train": ForeignStats()},
            "epoch": 40,
            "net_type": "MixFormerOnlineScore",
        },
        path,
    )
    with pytest.raises(Exception):  # noqa: B017 - plain weights_only load must refuse it
        torch.load(path, weights_only=True)
    loaded = build_model("mixformer-tiny", weights=path)
    assert _same_weights(tiny, loaded)
    assert not marker.exists(), "pickled code was executed"


def test_stage1_file_loads_with_warning_naming_score_keys(tiny, tmp_path, caplog):
    stage1 = build_model("mixformer-tiny", score_head=False, head_bn="batch")
    path = tmp_path / "stage1.pth.tar"
    torch.save({"net": stage1.state_dict()}, path)
    with caplog.at_level(logging.WARNING):
        model = build_model("mixformer-tiny", weights=path)
    assert "score_branch" in caplog.text
    sd1 = stage1.state_dict()
    for k, v in model.state_dict().items():
        if not k.startswith("score_branch."):
            assert torch.equal(v, sd1[k]), k


def test_wrong_preset_names_the_preset_that_fits(tiny, tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save({"net": tiny.state_dict()}, path)
    with pytest.raises(CheckpointError, match="mixformer-tiny"):
        build_model("mixformer-22k", weights=path)


def test_imagenet_cvt_backbone_file(tiny, tmp_path):
    sd = {k: v.clone() for k, v in tiny.backbone.state_dict().items()}
    sd["stage2.cls_token"] = torch.zeros(1, 1, 128)
    sd["stage2.blocks.7.norm1.weight"] = torch.ones(128)  # an extra block, ignored
    path = tmp_path / "CvT-tiny.pth"
    torch.save(sd, path)
    model = build_model("mixformer-tiny", weights=path)
    for k, v in tiny.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v)
    bad = {k: v for k, v in sd.items() if not k.startswith("stage1.")}
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="lacks"):
        build_model("mixformer-tiny", weights=path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pth"):
        build_model("mixformer-tiny", weights=path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        build_model("mixformer-tiny", weights=tmp_path / "nope.pth")


def test_default_weights():
    if default_weights_path("mixformer-tiny") is None:
        with pytest.raises(CheckpointError, match="no default weights"):
            build_model("mixformer-tiny", weights="default")
    else:
        model = build_model("mixformer-tiny", weights="default")
        assert model.name == "mixformer-tiny"
    with pytest.raises(CheckpointError, match="no default weights"):
        build_model("mixformer-large", weights="default")


def test_shipped_weights_match_the_preset_and_track():
    """The shipped file was trained for the registered preset and beats a static box clearly."""
    path = default_weights_path("mixformer-tiny")
    if path is None:
        pytest.skip("no shipped weights in this checkout")
    from mixformer.models.weights import read_checkpoint
    from mixformer.train.heldout import heldout_report

    assert read_checkpoint(path).config == get_config("mixformer-tiny")
    model = build_model("mixformer-tiny", weights="default")
    r = heldout_report(
        model, seed=4242, num_sequences=3, num_frames=40, score_samples=0, progress=False
    )
    assert r.tracker_auc > r.static_auc + 20


def _deflate(src: Path, dst: Path) -> None:
    """Rewrite a torch zip file with deflated entries (torch.save stores them uncompressed)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))


def _no_torch_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was reached")

    monkeypatch.setattr(torch, "load", refuse)


def test_deflated_bomb_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, bomb = tmp_path / "plain.pth", tmp_path / "bomb.pth"
    torch.save({"net": {"x": torch.zeros(8 << 20, dtype=torch.uint8)}}, plain)
    _deflate(plain, bomb)
    assert bomb.stat().st_size < 100_000
    assert weights_mod.check_sizes(plain) >= 8 << 20  # a genuine file of the same size passes
    monkeypatch.setattr(weights_mod, "INFLATION_FLOOR_BYTES", 1 << 20)
    weights_mod.check_sizes(plain)
    _no_torch_load(monkeypatch)
    with pytest.raises(CheckpointError, match=r"bomb\.pth: refusing to load: .* claims 8\.0 MiB"):
        weights_mod.load_file(bomb)


def test_header_claiming_gigabytes_is_refused_without_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "claims.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"x" * 1000)
        zf.writestr("archive/data/0", bytes(1 << 16))
    raw = bytearray(path.read_bytes())
    claim = struct.pack("<I", 0xF0000000)  # 3.75 GiB
    cd = raw.rindex(b"PK\x01\x02")  # central directory entry of archive/data/0
    raw[cd + 24 : cd + 28] = claim
    lh = raw.rindex(b"PK\x03\x04", 0, cd)  # its local header
    raw[lh + 22 : lh + 26] = claim
    path.write_bytes(bytes(raw))
    _no_torch_load(monkeypatch)
    with pytest.raises(CheckpointError, match=r"claims 3\.75 GiB of uncompressed data"):
        build_model(None, weights=path)


def test_file_larger_than_the_limit_is_refused(
    tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.pth"
    torch.save({"net": {"x": torch.zeros(4 << 20, dtype=torch.uint8)}}, path)
    with pytest.raises(CheckpointError, match=r"big\.pth: refusing to load: it holds 4\.0 MiB"):
        weights_mod.read_checkpoint(path, max_bytes=1 << 20)
    # Loading into a model: the limit is a margin over the model's own tensor bytes.
    own = sum(t.numel() * t.element_size() for t in tiny.state_dict().values())
    sd = dict(tiny.state_dict())
    sd["junk"] = torch.zeros(weights_mod.LIMIT_MARGIN * own // 4 + 1, dtype=torch.float32)
    padded = tmp_path / "padded.pth"
    torch.save({"net": sd}, padded)
    monkeypatch.setattr(weights_mod, "LIMIT_SLACK_BYTES", 0)
    with pytest.raises(CheckpointError, match=r"padded\.pth: .*expected for this model"):
        load_weights(build_model("mixformer-tiny"), padded)
    del sd["junk"]
    torch.save({"net": sd}, padded)
    load_weights(build_model("mixformer-tiny"), padded)  # a genuine file still loads
