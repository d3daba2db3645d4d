"""Push profiles to a Pyroscope server (or Grafana Alloy's pyroscope.receive_http) over its HTTP ingest API.

POST {server}/ingest?name=APP{k=v,...}&from=UNIX&until=UNIX&format=pprof|folded&sampleRate=HZ&spyName=wasmtime-gp.
`folded` sends the collapsed stacks as the body; `pprof` sends the gzipped profile as the multipart/form-data
field `profile`, as Pyroscope's own SDKs do. No aggregator of our own: a fleet pushes to the backend it has.
"""

from __future__ import annotations

import math
import re
import secrets
import urllib.parse
import urllib.request
from collections.abc import Mapping

from wasmtime_gp._errors import GuestProfilerError, ProfilerValueError
from wasmtime_gp.exports import to_collapsed, to_pprof
from wasmtime_gp.profile import Profile

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def ingest_request(
    profile: Profile,
    server: str,
    app_name: str,
    *,
    labels: Mapping[str, str] | None = None,
    format: str = "pprof",
    auth_token: str | None = None,
    tenant: str | None = None,
) -> urllib.request.Request:
    """The HTTP request `push` sends (built separately so it can be inspected)."""
    if format not in ("pprof", "folded"):
        raise ProfilerValueError(f'format must be "pprof" or "folded", not {format!r}')
    if not _NAME.fullmatch(app_name):
        raise ProfilerValueError(f"app_name {app_name!r} may use letters, digits, '_', '.' and '-' only")
    all_labels = {**profile.labels, **(labels or {})}
    for key, value in all_labels.items():
        if not _NAME.fullmatch(key) or not re.fullmatch(r"[^,{}=]*", value):
            raise ProfilerValueError(
                f"label {key}={value!r}: names as for app_name; values without , {{ }} ="
            )
    name = app_name + (
        "{" + ",".join(f"{k}={v}" for k, v in sorted(all_labels.items())) + "}" if all_labels else ""
    )
    query = {
        "name": name,
        "from": str(math.floor(profile.start_time)),
        "until": str(math.ceil(profile.start_time + profile.duration)),
        "format": format,
        "sampleRate": str(round(1 / profile.interval)),
        "spyName": "wasmtime-gp",
        "units": "samples",
        "aggregationType": "sum",
    }
    url = f"{server.rstrip('/')}/ingest?{urllib.parse.urlencode(query)}"
    headers = {}
    if format == "folded":
        body = to_collapsed(profile, with_module=False).encode()
        headers["Content-Type"] = "text/plain"
    else:
        boundary = f"wasmtime-gp-{secrets.token_hex(12)}"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="profile"; filename="profile.pprof"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + to_pprof(profile)
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    if auth_token:
        headers["Authorization"] = f"Bearer {auth_token}"
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


def push(
    profile: Profile,
    server: str,
    app_name: str,
    *,
    labels: Mapping[str, str] | None = None,
    format: str = "pprof",
    auth_token: str | None = None,
    tenant: str | None = None,
    timeout: float = 10.0,
) -> int:
    """Send `profile` to the server; return the HTTP status. Raises GuestProfilerError when it fails."""
    request = ingest_request(
        profile, server, app_name, labels=labels, format=format, auth_token=auth_token, tenant=tenant
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except OSError as exc:  # URLError and HTTPError are OSErrors
        raise GuestProfilerError(f"pushing to {server} failed: {exc}") from None
