"""``mixformer app``: a local web page for tracking a video by hand.

The page (plain HTML/JS/CSS in ``static/``, nothing fetched from the network) opens a video or
the built-in demo clip, lets the user draw one or more boxes on the first frame, and streams the
tracked frames back with their boxes, scores and FPS. :mod:`mixformer.app.session` holds the state
(one video, one run at a time, tracked in a background thread through the public
:class:`~mixformer.Tracker` / :class:`~mixformer.MultiTracker` API); :mod:`mixformer.app.server`
is the Starlette application around it. Both need the ``app`` extra
(``pip install 'mixformer[app]'``); :func:`require_app_deps` checks for it without importing it.
"""

from __future__ import annotations

import importlib.util

#: The packages of the ``app`` extra, by import name.
APP_PACKAGES = ("starlette", "uvicorn")

INSTALL_HINT = "pip install 'mixformer[app]'"


def require_app_deps() -> None:
    """Check that the ``app`` extra is installed.

    Raises:
        ImportError: one line naming the missing package and ``pip install 'mixformer[app]'``.
    """
    for name in APP_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a None entry in sys.modules, a broken package
            found = False
        if not found:
            raise ImportError(
                f"{name} is not installed; the web app needs {INSTALL_HINT} (starlette, uvicorn)",
                name=name,
            )
