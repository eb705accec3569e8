"""HTTP requests with a timeout and bounded retries with exponential backoff, for rewards that call servers.

Built on httpx: its Client is thread-safe (one client serves a reward's parallel requests) and takes one timeout
for connecting, reading and writing. httpx is an optional dependency (`pip install noisesearch[remote]`), imported
when a remote reward is built, so that importing noisesearch never needs it. Connection errors are retried, and by
default timeouts and the statuses in RETRY_STATUS too (a gunicorn worker that died, a busy server); a reward whose
server answers those deterministically narrows them (the remote reward retries 503 "busy" only). Every failure is
a one-line NoiseSearchError that names the reward and the URL.
"""

from __future__ import annotations

import importlib
import json
import math
import numbers
import time
from collections.abc import Container
from typing import Any
from urllib.parse import urlsplit

from noisesearch.errors import NoiseSearchError

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
EXCERPT_CHARS = 200


def excerpt(text: str) -> str:
    """A reply's error in one line of at most 200 characters: the `error` of a JSON answer (a string, or an object's
    `message` as OpenAI-compatible servers send), else the last non-empty line (a traceback's exception)."""
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    found = payload.get("error") if isinstance(payload, dict) else None
    found = found.get("message") if isinstance(found, dict) else found
    if isinstance(found, str) and found.strip():
        text = found
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:EXCERPT_CHARS] if lines else "an empty body"


def check_url(url: object, reward: str) -> str:
    """`url` without a trailing slash; a one-line error unless it is an http(s) URL with a host."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise NoiseSearchError(f"{reward} needs url=http://HOST:PORT (the server's address), got {url!r}")
    return url.rstrip("/")


class Poster:
    """Sends the requests of reward `reward`: `timeout` seconds per try, `retries` more tries after the first,
    sleeping `backoff` · 2^k seconds before retry k + 1; statuses in `retry_status` and (where `retry_timeouts`)
    timeouts are retried, besides connection errors."""

    def __init__(self, reward: str, timeout: float, retries: int, backoff: float,
                 headers: dict[str, str] | None = None, retry_status: Container[int] = RETRY_STATUS,
                 retry_timeouts: bool = True) -> None:
        numbers_ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                         for v in (timeout, backoff))
        if not numbers_ok or timeout <= 0 or backoff < 0:
            raise NoiseSearchError(f"{reward} needs timeout > 0 and backoff >= 0 (seconds), got timeout={timeout!r}, "
                                   f"backoff={backoff!r}")
        if isinstance(retries, bool) or not isinstance(retries, numbers.Integral) or retries < 0:
            raise NoiseSearchError(f"{reward} needs retries to be an integer >= 0, got {retries!r}")
        try:
            httpx = importlib.import_module("httpx")
        except ImportError:
            raise NoiseSearchError(f"{reward} needs httpx: pip install 'noisesearch[remote]'") from None
        self.httpx, self.reward = httpx, reward
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.retry_status, self.retry_timeouts = retry_status, retry_timeouts
        self.client = httpx.Client(timeout=self.timeout, headers=headers or {})

    def send(self, method: str, url: str, accept: Container[int] = (), **kwargs: Any) -> Any:
        """The httpx.Response of a request to `url` that answered 2xx or a status in `accept` (kwargs as
        httpx.Client.request takes them)."""
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self.client.request(method, url, **kwargs)
            except self.httpx.TimeoutException:
                problem = f"gave no answer within {self.timeout:g} s"
                if not self.retry_timeouts:
                    raise NoiseSearchError(f"{self.reward}: {url} {problem} (a slow or stuck server: raise timeout= "
                                           "or check it)") from None
                continue
            except self.httpx.TransportError as err:  # refused, reset, or closed before answering
                what = "cannot be reached" if isinstance(err, self.httpx.ConnectError) else "broke the connection"
                problem = f"{what} ({type(err).__name__}: {excerpt(str(err)) if str(err) else 'no detail'})"
                continue
            if response.is_success or response.status_code in accept:
                return response
            problem = f"answered {response.status_code} ({excerpt(response.text)})"
            if response.status_code not in self.retry_status:
                raise NoiseSearchError(f"{self.reward}: {url} {problem}")
        tries = f"{self.retries + 1} tries" if self.retries else "1 try"
        hint = "" if problem.startswith("answered") else "; is the server running there?"
        raise NoiseSearchError(f"{self.reward}: {url} {problem} after {tries}{hint}")
