"""`wasmtime-gp view`: serve a profile on localhost and open it in the Firefox Profiler (or offline HTML)."""

from __future__ import annotations

import argparse
import http.server
import threading
import urllib.parse
import webbrowser
from pathlib import Path

from wasmtime_gp.cli import CommandError, load_profile
from wasmtime_gp.exports import to_html

FIREFOX_PROFILER = "https://profiler.firefox.com"


class _ProfileHandler(http.server.BaseHTTPRequestHandler):
    """Serves one document at one path, with the CORS header the Firefox Profiler's fetch needs."""

    body = b""
    content_type = "application/json"
    served_path = "/"

    def do_GET(self) -> None:
        if urllib.parse.unquote(urllib.parse.urlsplit(self.path).path) != self.served_path:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:  # quiet: the command prints what matters
        pass


def serve(
    body: bytes, name: str, content_type: str, port: int = 0
) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start serving `body` on 127.0.0.1 in a daemon thread; return the server and the document's URL."""
    handler = type(
        "Handler", (_ProfileHandler,), {"body": body, "content_type": content_type, "served_path": f"/{name}"}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, name="wasmtime-gp view", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/{urllib.parse.quote(name)}"


def firefox_profiler_address(profile_url: str) -> str:
    return f"{FIREFOX_PROFILER}/from-url/{urllib.parse.quote(profile_url, safe='')}"


def view_command(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)  # refuses what is not a profile, before serving anything
    if args.offline:
        body, name, content_type = to_html(profile).encode(), Path(args.profile).stem + ".html", "text/html"
    else:
        body, name, content_type = (
            Path(args.profile).read_bytes(),
            Path(args.profile).name,
            "application/json",
        )
    try:
        server, url = serve(body, name, content_type, args.port)
    except OSError as exc:
        raise CommandError(f"cannot serve on port {args.port}: {exc}") from None
    address = url if args.offline else firefox_profiler_address(url)
    opened = not args.no_browser and webbrowser.open(address)
    print(f"{'opened' if opened else 'open this address in a browser'}: {address}")
    print(f"serving {args.profile} at {url}; press Ctrl-C to stop")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0
