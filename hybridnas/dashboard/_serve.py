"""``hybridnas dashboard --serve``: the page on localhost, rebuilt when the
run changes and reloaded in the browser by a small polling script."""
from __future__ import annotations

import hashlib
import http.server
import logging
import os
import threading
from pathlib import Path
from typing import Any, Sequence

__all__ = ["serve", "DashboardServer", "run_signature"]

log = logging.getLogger(__name__)

_WATCHED = ("trials.parquet", "trials.csv", "summary.json", "pareto.csv", "study.db")

_POLL_JS = """<script>(function(){var v=%r;setInterval(function(){
fetch('/__version',{cache:'no-store'}).then(function(r){return r.text();}).then(function(t){
if(t&&t!==v){location.reload();}}).catch(function(){});},%d);})();</script>"""


def run_signature(run_dirs: Sequence[str | os.PathLike]) -> str:
    """Changes whenever a watched file of any run changes (size or mtime)."""
    h = hashlib.sha1()
    for d in run_dirs:
        for name in _WATCHED:
            p = Path(d) / name
            try:
                st = p.stat()
            except OSError:
                continue
            h.update(f"{p}:{st.st_mtime_ns}:{st.st_size};".encode())
    return h.hexdigest()[:16]


class DashboardServer:
    """Serves one dashboard; re-renders it when the runs changed since the
    last render. ``render_kwargs`` go to ``render_dashboard``."""

    def __init__(self, run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike,
                 host: str = "127.0.0.1", port: int = 8050, interval: float = 5.0,
                 **render_kwargs: Any):
        self.run_dirs = list(run_dirs)
        self.out = Path(out)
        self.interval = interval
        self.render_kwargs = render_kwargs
        self._lock = threading.Lock()
        self._rendered: str | None = None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # http.server's method name
                if self.path.startswith("/__version"):
                    self._send(run_signature(server.run_dirs).encode(), "text/plain")
                elif self.path in ("/", "/index.html", "/" + server.out.name):
                    try:
                        body = server.page()
                    except Exception as e:
                        self.send_error(500, f"{type(e).__name__}: {e}")
                        return
                    self._send(body, "text/html; charset=utf-8")
                else:
                    self.send_error(404)

            def _send(self, body: bytes, ctype: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):  # keep the terminal quiet
                log.debug(fmt, *args)

        try:
            self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            from ..errors import UserError

            raise UserError(f"cannot serve on {host}:{port} ({e.strerror or e}); "
                            f"choose another --port") from None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def page(self) -> bytes:
        """The page with the reload script; rebuilt if the runs changed."""
        from ._page import render_dashboard

        with self._lock:
            sig = run_signature(self.run_dirs)
            if sig != self._rendered or not self.out.exists():
                try:
                    render_dashboard(self.run_dirs, self.out, allow_empty=True,
                                     **self.render_kwargs)
                    self._rendered = sig
                except Exception as e:
                    # Mid-write run files: keep showing the last good page.
                    if not self.out.exists():
                        raise
                    log.warning("dashboard not rebuilt: %s: %s", type(e).__name__, e)
            text = self.out.read_text(encoding="utf-8")
        script = _POLL_JS % (sig, int(self.interval * 1000))
        return text.replace("</body>", script + "</body>", 1).encode("utf-8")

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, host: str = "127.0.0.1",
          port: int = 8050, interval: float = 5.0, **render_kwargs: Any) -> None:
    """Serve the dashboard on ``http://host:port/`` until interrupted; the
    open page reloads itself within ``interval`` seconds of a run changing."""
    server = DashboardServer(run_dirs, out, host=host, port=port, interval=interval,
                             **render_kwargs)
    server.page()  # fail now (e.g. a missing run) rather than on the first request
    print(f"serving {server.out} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # the normal way to stop serving: not an error
        print("stopped", flush=True)
