"""The README's Python example runs as written (section "## Python API"), on frames made here.

The snippet is read from README.md, so the README and the code cannot drift apart: it must
build the shipped model, track a folder of frames, and print one line per frame after the
first, whose boxes follow the object drawn in the frames.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"
N = 8


def python_api_snippet() -> str:
    """The first ``python`` code block of README.md's "## Python API" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md: no python block in ## Python API"
    return match.group(1)


def write_frames(folder: Path) -> list[tuple[int, int, int, int]]:
    """Frames 00001.jpg ... of a textured 40x30 patch moving from (120, 80); its boxes."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 140, (240, 320, 3), dtype=np.uint8), (9, 9), 0)
    patch = cv2.resize(rng.integers(100, 256, (6, 8, 3), dtype=np.uint8), (40, 30))
    boxes = []
    for i in range(N):
        x, y = 120 + 3 * i, 80 + i
        frame = background.copy()
        frame[y : y + 30, x : x + 40] = patch
        assert cv2.imwrite(str(folder / f"{i + 1:05d}.jpg"), frame)
        boxes.append((x, y, 40, 30))
    return boxes


def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    truth = write_frames(tmp_path / "frames")
    code = python_api_snippet()
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{README}:Python API", "exec"), {"__name__": "readme_example"})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == N - 1
    assert lines[0].startswith("00002.jpg ")
    x, y, w, h = (float(v) for v in lines[-1].split()[1].split(","))
    tx, ty, tw, th = truth[-1]
    # the shipped model follows the patch (centre within a few pixels)
    assert abs(x + w / 2 - (tx + tw / 2)) < 8 and abs(y + h / 2 - (ty + th / 2)) < 8
