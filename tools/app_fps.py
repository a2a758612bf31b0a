"""The web app's tracking speed, as its page shows it (not part of the package).

Starts ``mixformer app`` (extra arguments go to it, e.g. ``--threads 1``), loads the demo clip
(``POST /api/demo``), tracks one box through it (``POST /api/track``) ``--runs`` times and
prints each run's "tracker FPS" (time in the tracker only) and end-to-end FPS (from the run's
start, engine start-up included)::

    python tools/app_fps.py --runs 3 -- --threads 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from typing import Any

_HEADERS = {"X-Requested-With": "mixformer", "Content-Type": "application/json"}


def _call(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    method = "GET" if body is None else "POST"
    req = urllib.request.Request(url, data=data, method=method, headers=_HEADERS)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def _one_run(base: str, box: list[float], timeout_s: float) -> dict[str, Any]:
    """Track ``box`` through the loaded clip; the finished run's state."""
    started = (_call(base + "api/track", {"boxes": [box]}).get("run") or {}).get("id")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = _call(base + "api/state").get("run") or {}
        done = run.get("total") and run.get("done") == run["total"] and run.get("fps")
        if done and run.get("id") == started:
            return run
        time.sleep(0.3)
    raise TimeoutError(f"the run did not finish within {timeout_s:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--box", default="150,100,60,60", help="x,y,w,h on the demo clip")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    p.add_argument("app_args", nargs="*", help="arguments of mixformer app (after --)")
    args = p.parse_args()
    box = [float(v) for v in args.box.split(",")]
    cmd = [sys.executable, "-m", "mixformer", "app", "--port", "0", *args.app_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("mixformer app: serving "):
            sys.exit(f"mixformer app did not start: {line.strip()!r}")
        base = line.split()[3]
        video = _call(base + "api/demo", {})["video"]
        print(f"demo clip: {video['frames']} frames, {video['width']}x{video['height']}")
        for k in range(args.runs):
            run = _one_run(base, box, args.timeout)
            print(
                f"run {k + 1}: tracker {run['fps']:.1f} FPS, "
                f"end to end {run['fps_end_to_end']:.1f} FPS"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
