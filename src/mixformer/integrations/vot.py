"""TraX server for the VOT toolkit (PyPI ``vot-toolkit``; the server side needs ``vot-trax``).

The toolkit starts the command of a ``trackers.ini`` section and talks TraX with it over
stdin/stdout: an ``initialize`` request (image path + one region per object) and then one
``frame`` request per image. :func:`serve` answers them with a :class:`MultiTracker` (one
object or many: multi-object stacks such as VOTS are supported), replying rectangles in pixels
and each object's score as the ``confidence`` property. :func:`trackers_ini` writes the section.

``trax`` is imported only inside :func:`serve`.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from mixformer.geometry import Box
from mixformer.tracking.multi import MultiTracker

log = logging.getLogger(__name__)


def _import_trax() -> Any:
    try:
        import trax
        import trax.server  # noqa: F401 - the submodule is not imported by the package
    except ImportError as exc:
        raise ImportError("the VOT server needs the TraX bindings: pip install vot-trax") from exc
    return trax


def region_to_box(region: Any) -> Box:
    """A TraX region as an ``(x, y, w, h)`` box in pixels.

    Rectangles are taken as they are; polygons become their axis-aligned bounding box.

    Raises:
        ValueError: a mask or an unknown region type.
    """
    kind = _kind(region)
    if kind == "rectangle":
        x, y, w, h = region.bounds()
        return (float(x), float(y), float(w), float(h))
    if kind == "polygon":
        pts = np.array([region.get(i) for i in range(region.size())], dtype=np.float64)
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
    raise ValueError(f"unsupported TraX region type {kind!r}; the tracker outputs rectangles")


def _kind(obj: Any) -> str:
    """``obj.type``: a method in vot-trax 4, a plain attribute in simpler clients."""
    kind = obj.type
    return kind() if callable(kind) else kind


def _image_path(request: Any) -> str:
    image = request.image
    if isinstance(image, dict):
        image = image.get("color", next(iter(image.values()), None))
    if image is None or _kind(image) != "path":
        raise ValueError("the VOT server expects images passed as file paths (image format 'path')")
    return image.path()


def serve(
    make_tracker: Callable[[], MultiTracker],
    read_image: Callable[[str], np.ndarray] | None = None,
    name: str = "MixFormer",
) -> int:
    """Run the TraX loop until the client quits.

    Args:
        make_tracker: returns a fresh :class:`MultiTracker` for each ``initialize`` request
            (the toolkit re-initialises after failures and for every sequence; trackers over
            one model share its engine, so this is cheap). ``mixformer vot-server`` makes them
            on the fast path unless ``--plain``.
        read_image: path -> ``(H, W, 3)`` uint8 RGB; default OpenCV decoding (as the reference).
        name: tracker name sent in the TraX handshake.
    Returns:
        The number of frames tracked (``initialize`` frames included).
    """
    trax = _import_trax()
    if read_image is None:
        from mixformer.data.frames import read_image
    frames = 0
    tracker: MultiTracker | None = None
    ids: list[int] = []
    with trax.server.Server(
        [trax.Region.RECTANGLE],
        [trax.Image.PATH],
        tracker_name=name,
        multiobject=True,
    ) as server:
        while True:
            request = server.wait()
            if request.type == trax.TraxStatus.QUIT:
                break
            image = read_image(_image_path(request))
            if request.type == trax.TraxStatus.INITIALIZE:
                tracker = make_tracker()
                ids = [tracker.add(image, region_to_box(r)) for r, _ in request.objects]
                out = [(tracker.state(i), 1.0) for i in ids]
                log.debug("initialised %d object(s)", len(ids))
            elif request.type == trax.TraxStatus.FRAME and tracker is not None:
                results = tracker.update(image)
                out = [(results[i].box, results[i].score) for i in ids]
                for region, _ in request.objects or ():
                    tid = tracker.add(image, region_to_box(region))
                    ids.append(tid)
                    out.append((tracker.state(tid), 1.0))
            else:
                raise ValueError(f"unexpected TraX request {request.type!r} before initialize")
            frames += 1
            server.status([_reply(trax, box, score) for box, score in out])
    return frames


def _reply(trax: Any, box: Sequence[float], score: float) -> tuple[Any, dict[str, str]]:
    x, y, w, h = (float(v) for v in box)
    return trax.Rectangle.create(x, y, w, h), {"confidence": f"{score:.6f}"}


def server_command(
    model: str,
    weights: str | None = None,
    preset: str = "vot20",
    extra: Iterable[str] = (),
    python: str | None = None,
) -> str:
    """The shell command that starts ``mixformer vot-server`` with this Python interpreter."""
    args = [python or sys.executable, "-m", "mixformer", "vot-server", "--model", model]
    if weights:
        args += ["--weights", weights]
    args += ["--preset", preset, *extra]
    return shlex.join(args)


def trackers_ini(
    name: str = "MixFormer",
    model: str = "mixformer-22k",
    weights: str | None = None,
    preset: str = "vot20",
    extra: Iterable[str] = (),
    python: str | None = None,
) -> str:
    """A ``trackers.ini`` section for the VOT toolkit running ``mixformer vot-server``.

    Args:
        name: the section (tracker identifier: letters, digits, ``_`` and ``-``).
        model: model preset; weights: weights file (absolute paths are safest: the toolkit
            starts the tracker in its own working directory).
        preset: :meth:`TrackerConfig.preset` benchmark name for the tracker settings.
        extra: further ``vot-server`` arguments (e.g. ``["--device", "cuda:0"]``).
        python: interpreter to run (default: the current one).
    Raises:
        ValueError: ``name`` is not a valid VOT tracker identifier.
    """
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"tracker name {name!r} must use only letters, digits, '_' and '-'")
    command = server_command(model, weights, preset, extra, python)
    return f"[{name}]\nlabel = {name}\nprotocol = trax\ncommand = {command}\n"
