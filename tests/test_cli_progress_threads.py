"""Issue 22: ``--no-progress`` reaches the library calls of every long command, every
``data bench`` option has help text, and every command's ``--threads`` default comes from
:func:`mixformer.tracking.threads.auto_threads`."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import torch

from conftest import cli_parser
from mixformer.cli import build_parser, main

build_parser()  # import every command module before a test patches one


@pytest.fixture
def keep_threads():  # noqa: ANN201
    """Restore torch's thread count and the recorded choice after a command set them."""
    from mixformer.tracking import threads

    old, chosen = torch.get_num_threads(), list(threads._CHOSEN)
    yield
    torch.set_num_threads(old)
    threads._CHOSEN[:] = chosen


def _recorder(calls: list[dict[str, Any]], result: Any = None):  # noqa: ANN202
    def record(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return result

    return record


def test_every_data_bench_option_has_help_text():
    for action in cli_parser("data", "bench")._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and not action.help.startswith("(default"), action.dest


@pytest.mark.parametrize("flag", [[], ["--no-progress"]], ids=["bar", "no-bar"])
def test_data_commands_pass_progress(flag, tmp_path, monkeypatch):
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("mixformer.datagen.corpus.build_corpus", _recorder(calls, {"entries": []}))
    monkeypatch.setattr(
        "mixformer.datagen.composite.write_composite_benchmark", _recorder(calls, [])
    )
    monkeypatch.setattr("mixformer.datagen.realvideo.build_realvideo", _recorder(calls, []))
    out = str(tmp_path / "out")
    assert main(["data", "corpus", "--out", out, *flag]) == 0
    assert main(["data", "bench", "--out", out, *flag]) == 0
    assert main(["data", "realvideo", "--out", out, *flag]) == 0
    assert len(calls) >= 3 and [c["progress"] for c in calls] == [not flag] * len(calls)


def test_synth_no_progress_draws_no_bar(tmp_path, capsys):
    args = ["synth", str(tmp_path / "d"), "--sequences", "2", "--frames", "2"]
    assert main([*args, "--height", "32", "--width", "32", "--no-progress"]) == 0
    assert "synth:" not in capsys.readouterr().err
    assert main([*args, "--height", "32", "--width", "32"]) == 0
    assert "synth:" in capsys.readouterr().err


class _Report:
    dtype = "int8"
    auc_reference = auc_dtype = 50.0
    same_iou_mean = e2e_iou_mean = 1.0

    def format(self) -> str:
        return "report"


def _no_model(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    class Model(torch.nn.Module):
        name = "stub"

    monkeypatch.setattr(f"mixformer.cli.{module}.load_model_from_args", lambda args: Model())


@pytest.mark.parametrize("flag", [[], ["--no-progress"]], ids=["bar", "no-bar"])
def test_benchmark_passes_progress_and_the_auto_threads_default(
    flag, monkeypatch, keep_threads, capsys
):
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("mixformer.perf.benchmark.run_benchmark", _recorder(calls, _Report()))
    monkeypatch.setattr("mixformer.perf.precision.precision_study", _recorder(calls, _Report()))
    one = lambda model=None, backend="torch": 1  # noqa: E731 - the one default
    monkeypatch.setattr("mixformer.cli.common.auto_threads", one)
    _no_model(monkeypatch, "benchmark")
    monkeypatch.setattr(
        "mixformer.tracking.TrackerConfig.for_model", classmethod(lambda cls, m, p: None)
    )
    torch.set_num_threads(2)
    assert main(["benchmark", *flag]) == 0
    assert calls[-1]["threads"] == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr("mixformer.tracking.core.reference_config", lambda m: _Cfg())
    assert main(["benchmark", "--precision", "1", *flag]) == 0
    assert main(["benchmark", "--accuracy", "1", *flag]) == 0
    assert len(calls) >= 3 and [c["progress"] for c in calls] == [not flag] * len(calls)
    assert main(["benchmark", "--threads", "3", *flag]) == 0
    assert calls[-1]["threads"] == 3 and torch.get_num_threads() == 3


class _Cfg:
    update_interval = 10

    def replace(self, **changes: Any) -> _Cfg:
        return self


def test_benchmark_multi_takes_the_auto_threads_default(monkeypatch, keep_threads, capsys):
    monkeypatch.setattr("mixformer.cli.common.auto_threads", lambda model=None, backend="torch": 1)
    _no_model(monkeypatch, "benchmark_multi")
    monkeypatch.setattr("mixformer.perf.multi_benchmark.benchmark_multi", lambda *a, **k: [])
    monkeypatch.setattr("mixformer.perf.multi_benchmark.format_table", lambda rows: "")
    torch.set_num_threads(2)
    assert main(["benchmark-multi", "--targets", "1"]) == 0
    assert torch.get_num_threads() == 1
    assert ", 1 threads, " in capsys.readouterr().out


def test_every_threads_option_has_the_one_default():
    from mixformer.cli.common import AUTO_THREADS_HELP

    found = []
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            if "--threads" in action.option_strings:
                found.append(name)
                assert action.default is None, name
                assert AUTO_THREADS_HELP in action.help, (name, action.help)
    assert {"track", "demo", "app", "evaluate", "benchmark", "benchmark-multi"} <= set(found)
