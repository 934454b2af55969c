"""Static PNG of the Pareto front through kaleido and a local Chromium.

kaleido 1.x drives a Chrome/Chromium through choreographer; it never gets
one from the network here: we look for Debian's ``chromium`` (or a Chrome on
PATH, or ``BROWSER_PATH``) and say in one line what to install when there is
none.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["find_browser", "write_front_png"]

_BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
                  "chrome")
_NO_BROWSER = ("--png needs a Chromium or Chrome binary and none was found: install "
               "Debian's chromium (apt-get install chromium) or set BROWSER_PATH=/path/to/chrome")


def find_browser() -> str | None:
    """Path of a usable Chromium/Chrome: ``BROWSER_PATH`` if set, else
    /usr/bin/chromium or the first of the usual names on PATH."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in _BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def write_front_png(front_info: dict[str, Any], path: str | os.PathLike, *, log_x: bool = False,
                    width: int = 1100, height: int = 620, scale: float = 1.0) -> Path:
    """Render ``plot_front(front_info)`` to a PNG file and return its path.

    Raises ``UserError`` (one line) when kaleido or a browser is missing.
    """
    from ._draw import plot_front

    browser = find_browser()
    if browser is None:
        raise UserError(_NO_BROWSER)
    try:
        import kaleido
    except ImportError:
        raise UserError("--png needs the kaleido package: pip install 'hybridnas[images]'") \
            from None
    fig = plot_front(front_info, log_x=log_x)
    fig.layout.updatemenus = ()  # buttons mean nothing on a still image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = kaleido.calc_fig_sync(
            fig.to_dict(), opts=dict(format="png", width=width, height=height, scale=scale),
            # mathjax=False: the default loads MathJax from a CDN (no network here).
            kopts=dict(path=browser, mathjax=False))
    except Exception as e:  # choreographer/browser failures: one line, not a traceback
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserError(f"--png: rendering with {browser} failed ({type(e).__name__}: "
                        f"{first[:200]})") from None
    path.write_bytes(data)
    return path
