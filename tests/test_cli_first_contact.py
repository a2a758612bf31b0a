"""What a new user meets first on the command line: ``mixformer models`` says where every
preset's weights come from, a run without weights names the preset's own release file, long
commands take ``--no-progress``, and ``--help`` shows the defaults."""

from __future__ import annotations

import argparse
import logging

import pytest

from conftest import cli_parser
from mixformer.cli import main
from mixformer.models import get_config, get_preset, list_models


def test_models_names_every_release_file_and_its_source(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    weights = out.split("\nweights", 1)[1].splitlines()[1:]
    lines = {line.split()[0]: line for line in weights}
    assert set(lines) == set(list_models())
    for name in list_models():
        cfg, preset = get_config(name), get_preset(name)
        for release in preset.files:
            assert release in lines[name]
        if cfg.family == "v2":
            assert "github.com/MCG-NJU/MixFormerV2" in lines[name]
        elif preset.releases:
            assert "official MixFormer release (github.com/MCG-NJU/MixFormer)" in lines[name]
    assert "ships with the package" in lines["mixformer-tiny"]
    assert "ships with the package" in lines["mixformer-mbv3"]


@pytest.mark.parametrize("model", ["mixformerv2-s", "mixvit-b", "mixformer-1k"])
def test_random_weights_warning_names_the_presets_own_release(model, caplog):
    from mixformer.cli.common import resolve_weights

    with caplog.at_level(logging.WARNING):
        assert resolve_weights(argparse.Namespace(model=model, weights=None)) is None
    text = caplog.text
    assert "NO WEIGHTS" in text and get_preset(model).files[0] in text
    if model != "mixformer-1k":
        assert "mixformer_cvt" not in text


@pytest.mark.parametrize(
    "path",
    [
        ("track",),
        ("demo",),
        ("evaluate",),
        ("train",),
        ("train-eval",),
        ("synth",),
        ("benchmark",),
        ("data", "corpus"),
        ("data", "bench"),
        ("data", "realvideo"),
    ],
    ids=" ".join,
)
def test_long_commands_take_no_progress(path):
    options = {o for a in cli_parser(*path)._actions for o in a.option_strings}
    assert "--no-progress" in options


@pytest.mark.parametrize(
    "path, shown",
    [
        (("track",), "(default: default)"),  # --preset
        (("data", "bench"), "(default: 30)"),  # --sequences, no help text of its own
        (("demo",), "(default: 7)"),  # --seed
    ],
)
def test_help_shows_defaults(path, shown):
    text = " ".join(cli_parser(*path).format_help().split())
    assert shown in text
    assert "(default: None)" not in text and "(default: False)" not in text
