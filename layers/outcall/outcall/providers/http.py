"""Shared HTTP plumbing for provider modules: one requests.Session per provider with
connect/read timeouts, urllib3 Retry (exponential backoff with jitter on 429, 5xx and
connection errors, honouring Retry-After, no retry on other 4xx), a per-provider request-rate
limit, and log lines with phone numbers and secrets masked."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from outcall.errors import ProviderError
from outcall.observability import logger, mask_text

RETRY_STATUSES = (429, 500, 502, 503, 504)


class RateLimiter:
    """At most `rate` requests per second from this process (token bucket, burst of one second)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate if rate and rate > 0 else None
        self._tokens = float(rate or 0)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if self.rate is None:
            return
        with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                time.sleep((1 - self._tokens) / self.rate)


class TokenCache:
    """Access tokens shared by every provider instance of this process, keyed by account, kept
    until shortly before they expire (a margin of `margin` seconds, or half the lifetime)."""

    def __init__(self, margin: float = 300) -> None:
        self.margin = margin
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> str | None:
        with self._lock:
            cached = self._tokens.get(key)
        return cached[0] if cached and cached[1] > time.time() else None

    def put(self, key: tuple[str, ...], token: str, ttl: float) -> str:
        with self._lock:
            self._tokens[key] = (token, time.time() + max(ttl - self.margin, ttl / 2))
        return token

    def token(self, key: tuple[str, ...], fetch: Callable[[], tuple[str, float]], *, refresh: bool = False) -> str:
        """The cached token for `key`, or a new one from `fetch` (token, lifetime in seconds),
        kept until shortly before it expires. `refresh` asks for a new one whatever is cached."""
        cached = None if refresh else self.get(key)
        if cached:
            return cached
        token, ttl = fetch()
        return self.put(key, token, ttl)

    def forget(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._tokens.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


def json_object(response: requests.Response, provider: str, op: str) -> dict[str, Any]:
    """The JSON object a provider answered to `op`; a ProviderError naming the operation and the
    HTTP status (the start of the body in its details) when the body is anything else."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ProviderError(
            f"{provider} {op} answered HTTP {response.status_code} without a JSON object",
            provider=provider,
            provider_code=response.status_code,
            details={"body": mask_text(response.text[:300])},
        )
    return data


class ProviderSession:
    """What a provider module uses to talk HTTP. Settings keys (all optional but baseUrl):
    baseUrl, connectTimeout (s, 3.05), readTimeout (s, 10), retries (3), backoffFactor (0.5),
    backoffMax (20), backoffJitter (0.5), rateLimit (requests/s)."""

    def __init__(self, provider: str, settings: Mapping[str, Any]) -> None:
        self.provider = provider
        self.base_url = str(settings.get("baseUrl", "")).rstrip("/")
        self.timeout = (float(settings.get("connectTimeout", 3.05)), float(settings.get("readTimeout", 10)))
        retry = Retry(
            total=int(settings.get("retries", 3)),
            connect=int(settings.get("retries", 3)),
            read=int(settings.get("retries", 3)),
            status=int(settings.get("retries", 3)),
            other=0,
            allowed_methods=None,  # provider writes are retried too: 429/5xx mean "not done"
            status_forcelist=RETRY_STATUSES,
            backoff_factor=float(settings.get("backoffFactor", 0.5)),
            backoff_max=float(settings.get("backoffMax", 20)),
            backoff_jitter=float(settings.get("backoffJitter", 0.5)),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=int(settings.get("poolSize", 10)))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.limiter = RateLimiter(settings.get("rateLimit"))

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request (with retries); ProviderError on a connection failure, a timeout, or
        a 429/5xx that outlasted the retries. Other 4xx are returned for the module to map."""
        self.limiter.acquire()
        kwargs.setdefault("timeout", self.timeout)
        url = self.url(path)
        started = time.monotonic()
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            logger.warning(
                "provider request failed",
                extra={"provider": self.provider, "method": method, "path": path, "error": mask_text(str(exc))},
            )
            raise ProviderError(
                f"{self.provider} unreachable: {type(exc).__name__}", provider=self.provider, retryable=True
            ) from exc
        logger.debug(
            "provider request",
            extra={
                "provider": self.provider,
                "method": method,
                "path": path,
                "status": response.status_code,
                "ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        if response.status_code in RETRY_STATUSES:
            raise ProviderError(
                f"{self.provider} answered HTTP {response.status_code} after retries",
                provider=self.provider,
                provider_code=response.status_code,
                retryable=True,
            )
        return response
