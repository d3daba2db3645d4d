"""`wasmtime-gp view`: serve a profile on localhost and open it in the Firefox Profiler (or offline HTML)."""

from __future__ import annotations

import argparse
import http.server
import threading
import urllib.parse
import webbrowser
from pathlib import Path

from wasmtime_gp._errors import CommandError
from wasmtime_gp.cli.common import load_profile
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
    """The Firefox Profiler's address that loads the profile served at `profile_url`."""
    return f"{FIREFOX_PROFILER}/from-url/{urllib.parse.quote(profile_url, safe='')}"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add `view` and its options to `subparsers`; return its parser."""
    parser = subparsers.add_parser(
        "view", help="open a profile in the Firefox Profiler (served from localhost)"
    )
    parser.add_argument("profile", type=Path)
    parser.add_argument(
        "--offline", action="store_true", help="open the HTML flame graph instead (no network)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port for the local server (default: any free one)"
    )
    parser.add_argument("--no-browser", action="store_true", help="only print the address")
    return parser


def run(args: argparse.Namespace) -> int:
    """Serve the profile until Ctrl-C and open it in a browser (unless --no-browser); return the exit code."""
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
    try:  # from here on, Ctrl-C is the way to stop: even one that lands while we print
        opened = not args.no_browser and webbrowser.open(address)
        # Flushed: whoever reads a pipe needs the address now, not when the buffer fills.
        print(f"{'opened' if opened else 'open this address in a browser'}: {address}", flush=True)
        print(f"serving {args.profile} at {url}; press Ctrl-C to stop", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0
