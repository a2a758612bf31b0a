"""The package's declared dependencies (the installed metadata, as pip reads it)."""

from __future__ import annotations

from importlib.metadata import requires

import pytest

markers = pytest.importorskip("packaging.markers")
requirements = pytest.importorskip("packaging.requirements")


def _core() -> list:
    reqs = [requirements.Requirement(r) for r in requires("mixformer") or []]
    return [r for r in reqs if r.marker is None or "extra" not in str(r.marker)]


def test_no_dependency_drags_in_a_cuda_build_or_torchvision() -> None:
    names = {r.name.lower() for r in _core()}
    assert {"torch", "numpy", "av"} <= names
    assert not names & {"torchvision", "timm"}, names


@pytest.mark.parametrize(
    "machine, expected", [("x86_64", True), ("AMD64", True), ("aarch64", False), ("arm64", False)]
)
def test_openvino_comes_with_the_package_where_auto_runs_it(
    monkeypatch: pytest.MonkeyPatch, machine: str, expected: bool
) -> None:
    """``backend="auto"`` runs OpenVINO only on x86-64 (``resolve_backend_setting``): there the
    package installs it with ``onnx`` (its export); elsewhere it stays in the extra."""
    from mixformer.tracking import backends

    core = {r.name.lower(): r for r in _core()}
    env = {**markers.default_environment(), "platform_machine": machine}
    for name in ("openvino", "onnx"):
        assert core[name].marker is not None, name
        assert core[name].marker.evaluate(env) is expected, (name, machine)
    # the backend rule picks OpenVINO (when importable) on exactly these machines
    monkeypatch.setattr(backends.platform, "machine", lambda: machine)
    monkeypatch.setattr(backends, "openvino_installed", lambda: True)
    chosen = backends.resolve_backend_setting("auto", dtype="fp32")
    assert (chosen == "openvino") is expected
