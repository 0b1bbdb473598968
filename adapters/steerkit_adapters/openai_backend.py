"""The ``openai`` backend: any OpenAI-compatible chat server (``vllm serve``, llama.cpp server,
OpenAI itself), over async HTTP with a concurrency limit.

- ``base_url``: one URL or a list. Several servers (one ``vllm serve`` per GPU or node) share
  the load: each request goes to the server with the fewest requests in flight (round-robin
  among ties), and a server that fails is avoided for the length of its backoff.
- The API key: ``api_key=...`` or, by default, the environment variable named by
  ``api_key_env`` (read at request time). It goes into the ``Authorization`` header only: it
  is never shown by ``repr``/``vars``, and never in the fingerprint, the cache, a log line or
  an error message. Credentials inside a URL are dropped from everything but the request.
- Unknown keyword options are an ``InvalidOptionError`` (a misspelt option is not ignored).
- Timeouts; retries with exponential backoff on connection errors, timeouts, 408/409/429,
  every 5xx but 501, and a 200 reply whose body is not JSON. ``Retry-After`` is honoured as the
  server gives it (``max_backoff`` caps only our own backoff: retrying earlier than asked only
  earns another 429). With several servers a failed request moves to a server that is ready;
  when none is, it waits until the first one is.
- One call (``complete``/``option_logprobs``) has an overall ``deadline`` (600 s by default, None
  for none): a server that accepts requests and never answers cannot stall a batch for the
  hour its timeouts and retries would add up to, and a ``Retry-After`` past it fails at once.
- ``complete`` sends each request with its own body (sampling, constraint; ``model`` is the
  request's ``adapter`` when it names one: vLLM and others serve each LoRA adapter under its
  own model name). Its completion carries the server's ``finish_reason`` ("length" when
  ``max_tokens`` cut it) and ``usage`` token counts. Retries are for failed requests only:
  an answer cut by its budget is returned as it is (the caller decides whether to ask again
  with a larger one), and a completed answer is never asked for twice.
- A request that fails (after its retries, or at the deadline) gets a ``Completion`` with its
  error, and the call's other, paid-for answers stand (``RunContext.generate(..., strict=False)``
  hands them on, so the cache keeps them and a rerun asks only for the failed ones). When every
  request of a call fails, the server is down or refuses everything: the call raises the first
  error.
- JSON schema through ``response_format``; a server that rejects ``json_schema`` gets
  ``{"type": "json_object"}`` with the schema in a system message instead (remembered).
  ``json_mode`` pins it (True: always JSON mode; False: a refusal is an error). The mode is part
  of the fingerprint: outputs under a described schema are not those under an enforced one.
- vLLM servers (detected from ``/v1/models``, or ``vllm_extras=True``) get vLLM's extras:
  ``structured_outputs`` for choice and regex, ``continue_final_message`` for prefill, and
  ``logprob_token_ids`` for exact option log-probabilities. Other servers get choice/regex as
  a one-field JSON schema (``{"value": ...}``, with room in ``max_tokens`` for the JSON around
  the value), and option log-probabilities from ``top_logprobs`` (20 at most): an option that
  is not among them gets -inf (probability 0 once the options are normalised), and rows where
  the options found carry little probability mass are counted in ``stats`` and warned about.
  Such servers also do not continue a prefilled assistant message (they open a new turn), so
  distributions read from them are approximate; use a vLLM server for exact ones.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import datetime
import email.utils
import hashlib
import json
import os
import random
import threading
import time
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

import steerkit
from steerkit.plugin import Backend, ChatPrompt, Completion, Constraint, Request, Sampling, hookimpl

from .option_tokens import check_option_tokens, option_token_ids, option_variants
from .vllm_backend import MAX_OPTION_TOKENS

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("steerkit_openai_deadline", default=None)
RETRY_STATUS = frozenset({408, 409, 429})  # plus every 5xx but 501 (see _retryable)
_WRAP = "value"  # field name when choice/regex travel as a one-field JSON schema
_WRAP_TOKENS = 16  # room for '{"value": ""}' and whitespace around the wrapped value
LOW_MASS = 0.5  # option probability mass below which a top_logprobs row is flagged


def _retryable(status: int) -> bool:
    return status in RETRY_STATUS or (500 <= status < 600 and status != 501)


class _Secret:
    """Holds a credential (the API key, URL user info) without showing it: repr, vars and
    pickling by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: Any):
        self._value = value

    def get(self) -> Any:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    def __reduce__(self):
        raise TypeError("the openai backend's API key is not picklable")


def _normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"base_url {public_url(url)!r} is not an http(s) URL (e.g. http://127.0.0.1:8000/v1)")
    if parts.path in ("", "/"):
        url = url + "/v1"
    return url


def public_url(url: str) -> str:
    """The URL without user info, query or fragment (safe to log and fingerprint)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _userinfo(url: str) -> _Secret | None:
    parts = urlsplit(url)
    return _Secret((parts.username or "", parts.password or "")) if parts.username else None


def prompt_digest(prompt: ChatPrompt, adapter: str | None = None) -> str:
    """Identity of what a request asks (its prompt, and its adapter when it names one), for the
    ``completed`` counter that shows no answer was paid for twice."""
    what: list[Any] = [dict(m) for m in prompt] + ([{"adapter": adapter}] if adapter else [])
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _Server:
    public: str  # what requests go to: no credentials, no query
    auth: _Secret | None = None  # (user, password) from the URL, hidden
    inflight: int = 0
    avoid_until: float = 0.0
    sent: int = 0


class _HTTPStatusError(Exception):
    def __init__(self, status: int, message: str, server: str):
        self.status, self.message, self.server = status, message, server
        super().__init__(f"{server} answered HTTP {status}: {message}")


class _LoopThread:
    """One event loop in a daemon thread, and the HTTP client and semaphore that live on it
    (asyncio objects are bound to one loop, so they go when it goes): sync callers
    (in or outside a running loop) submit coroutines to it. ``stop`` closes both; the backend
    also registers it as a finalizer, so a backend dropped without ``close()`` leaks no socket."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.client: Any = None
        self.gate: asyncio.Semaphore | None = None  # the concurrency limit, bound to this loop
        self.gate_size = 0
        self.thread = threading.Thread(target=self.loop.run_forever, name="steerkit-openai", daemon=True)
        self.thread.start()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        on_loop = threading.current_thread() is self.thread
        client, self.client = self.client, None
        if client is not None and not on_loop and not self.loop.is_closed():
            try:
                self.run(client.aclose())
            except Exception:  # pragma: no cover - closing is best effort
                pass
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not on_loop:
            self.thread.join(timeout=5)
            if not self.thread.is_alive():
                self.loop.close()


class OpenAIBackend(Backend):
    """OpenAI-compatible chat completions over HTTP, batched as concurrent requests."""

    name = "openai"
    supports_adapters = True  # a request's adapter is the model name the server serves it under

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | Sequence[str] | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_retries: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        preferred_batch_size: int = 64,
        vllm_extras: bool | None = None,
        compact_json: bool = True,
        fingerprint_id: str | None = None,
        api_key: str | None = None,
        deadline: float | None = 600.0,
        json_mode: bool | None = None,
        **options: Any,
    ):
        if options:
            raise steerkit.InvalidOptionError(
                f"openai backend: unknown option(s) {sorted(options)}; it takes base_url, api_key, "
                "api_key_env, concurrency, timeout, connect_timeout, max_retries, backoff, max_backoff, "
                "deadline, preferred_batch_size, vllm_extras, compact_json, json_mode and fingerprint_id"
            )
        if deadline is not None and float(deadline) <= 0:
            raise steerkit.InvalidOptionError(f"openai backend: deadline must be > 0 seconds or None, not {deadline!r}")
        super().__init__(model)
        if base_url is None:
            base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("base_url: give at least one server URL")
        self.servers = [_Server(public_url(u), _userinfo(u)) for u in (_normalise_url(u) for u in urls)]
        self.api_key_env = api_key_env
        self._api_key = _Secret(api_key) if api_key else None
        self.concurrency = max(1, int(concurrency))
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_retries = max(0, int(max_retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.preferred_batch_size = int(preferred_batch_size)
        self.vllm_extras = vllm_extras
        self.compact_json = compact_json
        self.fingerprint_id = fingerprint_id
        self.deadline = None if deadline is None else float(deadline)
        self.json_mode = json_mode
        # json_schema in response_format until a server refuses it (then JSON mode); json_mode
        # True starts in JSON mode, False makes a refusal an error
        self._schema_ok = json_mode is not True
        self._mode_known = json_mode is not None
        self._loop: _LoopThread | None = None
        self._finalizer: weakref.finalize | None = None  # stops the loop thread, once
        self._rr = 0
        self._lock = threading.Lock()
        self._token_ids: dict[str, list[int]] = {}
        # counters (read them freely; they only grow)
        self.stats: collections.Counter[str] = collections.Counter()
        self.completed: collections.Counter[str] = collections.Counter()  # prompt digest -> successes

    # -- identity -----------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.model_id

    @property
    def model_id(self) -> str:
        """The model name sent to the server (asked from ``/models`` once when not given)."""
        if self.model is None:
            self._run(self._ensure_ready())
        return str(self.model)

    def fingerprint(self) -> str:
        """Model name plus each server's host:port and path (no scheme, credentials or key):
        two servers on one host may serve different weights under one name. ``fingerprint_id``
        replaces the server part, e.g. one name for a fleet of replicas that should share
        cached scores. Outputs under JSON mode (schema only described in a message) are not
        those of enforced schemas, so the mode is part of it: on a server without vLLM's extras
        and with ``json_mode=None``, the first fingerprint asks the server once (a one-token
        request with a trivial schema) whether it takes ``json_schema``."""
        where = self.fingerprint_id or ",".join(sorted({s.public.split("://", 1)[-1] for s in self.servers}))
        if self.model is None or self.vllm_extras is None or (not self.vllm_extras and not self._mode_known):
            self._run(self._identify())
        model = self.model_id
        mode = "" if self.vllm_extras or self._schema_ok else ";json-mode"
        return f"openai:{model}@{where}{mode}"

    async def _identify(self) -> None:
        await self._ensure_ready()
        if not self.vllm_extras and not self._mode_known:
            await self._probe_schema()

    async def _probe_schema(self) -> None:
        """Whether the server takes ``response_format`` json_schema (else: JSON mode)."""
        schema = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
        body = {"model": self.model, "messages": [{"role": "user", "content": "Reply with {}."}], "max_tokens": 1,
                "temperature": 0.0, "response_format": {"type": "json_schema", "json_schema": {
                    "name": "steerkit_probe", "schema": schema, "strict": True}}}
        try:
            await self._request("POST", "/chat/completions", body)
        except _HTTPStatusError as exc:
            if not (exc.status in (400, 422) and _mentions_schema(exc.message)):
                raise steerkit.BackendError(f"openai backend: {exc}") from None
            self._refuse_schema()
        self.stats["schema_probes"] += 1
        self._mode_known = True

    def _refuse_schema(self) -> None:
        """The server refused json_schema: JSON mode from now on (an error if json_mode=False)."""
        if self.json_mode is False:
            raise steerkit.BackendError(
                f"openai backend: {self.servers[0].public} refuses response_format json_schema and "
                "json_mode=False; pass json_mode=True (or None) to use JSON mode, the schema described in a message"
            )
        if self._schema_ok:
            self._schema_ok = False
            self.stats["json_mode_fallbacks"] += 1
        self._mode_known = True

    def _headers(self) -> dict[str, str]:
        key = self._api_key.get() if self._api_key is not None else os.environ.get(self.api_key_env, "")
        return {"Authorization": f"Bearer {key}"} if key else {}

    # -- event loop and client ----------------------------------------------------------
    def _run(self, coro):
        with self._lock:
            if self._loop is None:
                self._loop = _LoopThread()
                self._finalizer = weakref.finalize(self, self._loop.stop)
        return self._loop.run(coro)

    async def _get_client(self):
        assert self._loop is not None  # clients live on the backend's loop thread
        if self._loop.client is None:
            import httpx

            # the semaphore bounds requests; the pool only keeps connections alive for reuse
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
            self._loop.client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout), limits=limits
            )
        return self._loop.client

    def _gate(self) -> asyncio.Semaphore:
        """The concurrency limit of the current loop; rebuilt when ``concurrency`` changed since
        the last call (and with the loop after ``close()``)."""
        assert self._loop is not None
        loop = self._loop
        if loop.gate is None or loop.gate_size != self.concurrency:
            loop.gate, loop.gate_size = asyncio.Semaphore(self.concurrency), self.concurrency
        return loop.gate

    def _pick(self) -> _Server:
        now = time.monotonic()
        ready = [s for s in self.servers if s.avoid_until <= now] or sorted(self.servers, key=lambda s: s.avoid_until)[:1]
        least = min(s.inflight for s in ready)
        candidates = [s for s in ready if s.inflight == least]
        self._rr += 1
        return candidates[self._rr % len(candidates)]

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before the next attempt. ``Retry-After`` (seconds or an HTTP date) is the
        server's own instruction and is honoured as given: retrying earlier only earns another
        429. It is bounded by the call's ``deadline`` instead (see ``_request``); ``max_backoff``
        caps only our exponential backoff."""
        wait = _retry_after_seconds(retry_after)
        if wait is not None:
            return wait
        base = min(self.max_backoff, self.backoff * (2**attempt))
        return base * (0.5 + random.random() / 2)  # jitter: many clients do not retry in lockstep

    async def _request(self, method: str, path: str, body: dict | None = None, *, root: bool = False) -> dict:
        """One API call with retries; ``root`` addresses the server root (vLLM's /tokenize)."""
        import httpx

        client = await self._get_client()
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            server = self._pick()
            base = server.public[: -len("/v1")] if root and server.public.endswith("/v1") else server.public
            server.inflight += 1
            server.sent += 1
            in_flight = sum(s.inflight for s in self.servers)
            self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], in_flight)
            self.stats["http_requests"] += 1
            retry_after = None
            headers = self._headers()
            # credentials in the URL become Basic auth, unless an API key is set (Bearer wins)
            auth = server.auth.get() if server.auth and "Authorization" not in headers else None
            try:
                resp = await client.request(method, base + path, json=body, headers=headers, auth=auth)
            except httpx.TransportError as exc:  # connection errors and timeouts (read, connect, pool)
                last = f"{server.public}: {type(exc).__name__}"
                self.stats["timeouts" if isinstance(exc, httpx.TimeoutException) else "connection_errors"] += 1
            else:
                if resp.status_code == 200:
                    try:
                        data = resp.json()
                    except ValueError:
                        data = None
                    if isinstance(data, dict):
                        return data
                    self.stats["bad_json"] += 1
                    last = f"{server.public} answered HTTP 200 with a body that is not a JSON object: {resp.text[:200]!r}"
                else:
                    message = _error_message(resp)
                    if not _retryable(resp.status_code):
                        raise _HTTPStatusError(resp.status_code, message, server.public)
                    self.stats[f"http_{resp.status_code}"] += 1
                    retry_after = resp.headers.get("retry-after")
                    last = f"{server.public} answered HTTP {resp.status_code}: {message}"
            finally:
                server.inflight -= 1
            if attempt == self.max_retries:
                break
            now = time.monotonic()
            server.avoid_until = now + self._delay(attempt, retry_after)
            self.stats["retries"] += 1
            # another server that is ready takes the retry at once; when none is, wait for the
            # first to come out of its backoff (with one server: the whole backoff delay)
            wait = min(s.avoid_until for s in self.servers) - now
            due = _DEADLINE.get()
            if due is not None and now + wait > due:
                self.stats["failures"] += 1
                raise steerkit.BackendError(
                    f"openai backend: {path}: the next attempt is {wait:.0f} s away (last error: {last}), past "
                    f"the call's deadline of {self.deadline:g} s; raise deadline=... or retry later"
                )
            if wait > 0:
                await asyncio.sleep(wait)
        self.stats["failures"] += 1
        raise steerkit.BackendError(
            f"openai backend: {path} failed after {self.max_retries + 1} attempts; last error: {last}. "
            "Check that the server is up (base_url) and the model name, or raise max_retries/timeout."
        )

    async def _ensure_ready(self) -> None:
        if self.model is not None and self.vllm_extras is not None:
            return
        try:
            listing = await self._request("GET", "/models")
        except _HTTPStatusError as exc:
            raise steerkit.BackendError(f"openai backend: cannot list models: {exc}") from None
        data = listing.get("data") or []
        if self.model is None:
            if not data:
                raise steerkit.ModelNotFoundError(
                    f"{self.servers[0].public} serves no model; pass model=<name>"
                )
            self.model = data[0]["id"]
        if self.vllm_extras is None:
            self.vllm_extras = any(d.get("owned_by") == "vllm" for d in data)

    # -- request bodies -----------------------------------------------------------------
    def _body(self, prompt: ChatPrompt, sampling: Sampling, constraint: Constraint | None,
              adapter: str | None = None) -> tuple[dict, str | None]:
        """Chat request body and, where the output is wrapped in a one-field object, that field."""
        messages = [dict(m) for m in prompt]
        body: dict[str, Any] = {
            "model": adapter or self.model,
            "messages": messages,
            "max_tokens": int(sampling.max_tokens),
            "temperature": 0.0 if sampling.greedy else float(sampling.temperature),
        }
        if not sampling.greedy:
            body["top_p"] = float(sampling.top_p)
        if sampling.seed is not None:
            body["seed"] = int(sampling.seed)
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        prefill = bool(messages) and messages[-1].get("role") == "assistant"
        if prefill and self.vllm_extras:
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        unwrap = None
        if constraint is not None:
            schema = None
            if constraint.kind == "json":
                schema = dict(constraint.value)
            elif self.vllm_extras:
                key = "choice" if constraint.kind == "choice" else "regex"
                value = list(constraint.value) if constraint.kind == "choice" else constraint.value
                body["structured_outputs"] = {key: value}
            else:
                if constraint.kind == "choice":
                    field = {"type": "string", "enum": list(constraint.value)}
                    longest = max(len(str(o)) for o in constraint.value)  # characters bound tokens
                    body["max_tokens"] = max(int(sampling.max_tokens), _WRAP_TOKENS + longest)
                else:
                    field = {"type": "string", "pattern": constraint.value}
                    body["max_tokens"] = int(sampling.max_tokens) + _WRAP_TOKENS
                schema = {"type": "object", "properties": {_WRAP: field}, "required": [_WRAP], "additionalProperties": False}
                unwrap = _WRAP
            if schema is not None:
                if self.vllm_extras and constraint.kind == "json":
                    # vLLM's native form also takes the whitespace option (compact JSON keeps
                    # small models from looping on whitespace)
                    body["structured_outputs"] = {"json": schema, "disable_any_whitespace": bool(self.compact_json)}
                elif self._schema_ok:
                    body["response_format"] = {
                        "type": "json_schema",
                        "json_schema": {"name": "steerkit_output", "schema": schema, "strict": True},
                    }
                else:
                    body["response_format"] = {"type": "json_object"}
                    hint = "Answer with one JSON object that follows this JSON schema:\n" + json.dumps(schema)
                    body["messages"] = [{"role": "system", "content": hint}] + messages
        return body, unwrap

    async def _complete(self, request: Request) -> Completion:
        """One request, its retries inside ``_request``; the reply's text, finish reason and
        usage. A reply cut by ``max_tokens`` is returned as it is, never resampled here."""
        async with self._gate():
            while True:
                body, unwrap = self._body(request.prompt, request.sampling, request.constraint, request.adapter)
                try:
                    data = await self._request("POST", "/chat/completions", body)
                except _HTTPStatusError as exc:
                    sent_schema = (body.get("response_format") or {}).get("type") == "json_schema"
                    if sent_schema and exc.status in (400, 422) and _mentions_schema(exc.message):
                        self._refuse_schema()  # server lacks json_schema: JSON mode from now on
                        continue
                    raise steerkit.BackendError(f"openai backend: {exc}") from None
                break
        self.stats["completions"] += 1
        self.completed[prompt_digest(request.prompt, request.adapter)] += 1
        choice = _first_choice(data)
        text = choice["message"].get("content") or ""
        if unwrap is not None:
            try:
                text = str(json.loads(text)[unwrap])
            except (ValueError, KeyError, TypeError):
                pass  # leave the raw text: the strategy's validation reports it
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        if choice.get("finish_reason") == "length":
            self.stats["cut_by_length"] += 1
        return Completion(
            text=text,
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
        )

    async def _batch(self, make, items: Sequence[Any]) -> list:
        """``make(item)`` for every item, concurrently, within the call's ``deadline``: per item
        its result, or the error it failed with (after its retries, or unfinished at the
        deadline), so one failure does not discard the others' answers. When every item failed
        the first error is raised (the server is down or refuses everything). Errors that are
        not steerkit's (bugs) propagate at once."""
        due = None if self.deadline is None else time.monotonic() + self.deadline
        token = _DEADLINE.set(due)
        try:
            if due is not None:
                await asyncio.wait_for(self._ensure_ready(), max(0.0, due - time.monotonic()))
            else:
                await self._ensure_ready()
            tasks = [asyncio.ensure_future(make(x)) for x in items]
        except asyncio.TimeoutError:
            raise steerkit.BackendError(
                f"openai backend: {self.servers[0].public} did not list its models within the deadline "
                f"of {self.deadline:g} s; check the server or raise deadline=..."
            ) from None
        finally:
            _DEADLINE.reset(token)
        done, pending = await asyncio.wait(tasks, timeout=None if due is None else max(0.0, due - time.monotonic()))
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)  # let cancelled requests unwind
            self.stats["deadline_expired"] += len(pending)
        results: list = []
        for t in tasks:
            if t in pending:
                results.append(steerkit.BackendError(
                    f"openai backend: no answer within the call's deadline of {self.deadline:g} s (a server "
                    "that accepts requests and never answers?); raise deadline=... for long generations"
                ))
            elif t.exception() is not None:
                if not isinstance(t.exception(), steerkit.SteerkitError):
                    raise t.exception()
                results.append(t.exception())
            else:
                results.append(t.result())
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed and len(failed) == len(results):
            raise failed[0]
        return results

    # -- protocol -----------------------------------------------------------------------
    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Every request concurrently (within ``concurrency``), each with its own body; a failed
        request gets a Completion with its error while the others stand."""
        requests = list(requests)
        if not requests:
            return []
        self.check_adapters(requests)
        done = self._run(self._batch(self._complete, requests))
        return [Completion.failed(r) if isinstance(r, BaseException) else r for r in done]

    async def _option_ids(self, option: str) -> list[int]:
        """First content token ids of the option (``option_tokens``' rule), through the server's
        ``/tokenize``, memoized per option."""
        ids = self._token_ids.get(option)
        if ids is None:
            tokenized = {}
            for variant in option_variants(option):
                data = await self._request(
                    "POST", "/tokenize",
                    {"model": self.model, "prompt": variant, "add_special_tokens": False, "return_token_strs": True},
                    root=True,
                )
                tokenized[variant] = ([int(t) for t in data.get("tokens") or []], data.get("token_strs") or [])
            ids = self._token_ids[option] = option_token_ids(option, tokenized.__getitem__)
        return ids

    async def _option_row(self, prompt: ChatPrompt, options: Sequence[str], variants: list[list[int]] | None,
                          wanted: list[int] | None) -> np.ndarray:
        body, _ = self._body(prompt, Sampling(temperature=0.0, max_tokens=1, seed=None), None)
        body["logprobs"] = True
        if variants is not None:
            body["logprob_token_ids"] = wanted
            body["return_tokens_as_token_ids"] = True
        else:
            body["top_logprobs"] = 20
        async with self._gate():
            try:
                data = await self._request("POST", "/chat/completions", body)
            except _HTTPStatusError as exc:
                raise steerkit.BackendError(f"openai backend: {exc}") from None
        self.stats["completions"] += 1
        self.completed[prompt_digest(prompt)] += 1
        content = (_first_choice(data).get("logprobs") or {}).get("content") or []
        if not content:
            raise steerkit.BackendError("openai backend: the server returned no log-probabilities (does it support logprobs?)")
        step = {e["token"]: float(e["logprob"]) for e in content[0].get("top_logprobs") or []}
        row = np.full(len(options), -np.inf)
        if variants is not None:
            for j, ids in enumerate(variants):
                vals = [step[f"token_id:{i}"] for i in ids if f"token_id:{i}" in step]
                if vals:
                    row[j] = float(np.logaddexp.reduce(vals))
            return row
        for j, opt in enumerate(options):  # an option outside the top list: -inf, never a guess
            vals = [v for tok, v in step.items() if tok.strip() == opt.strip()]
            if vals:
                row[j] = float(np.logaddexp.reduce(vals))
        if not np.isfinite(row).any():
            raise steerkit.ModelOutputError(
                f"openai backend: none of the options {list(options)} is among the server's top "
                f"{len(step)} next tokens, so their probabilities are unknown; use a vLLM server "
                "(exact log-probabilities) or a prompt whose answer starts with the option"
            )
        return row

    def option_logprobs(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> np.ndarray:
        if not prompts:
            return np.zeros((0, len(options)))

        async def ids():
            await self._ensure_ready()
            if not self.vllm_extras:
                return None, None
            variants = [await self._option_ids(o) for o in options]
            return variants, check_option_tokens(options, variants, MAX_OPTION_TOKENS)

        variants, wanted = self._run(ids())
        got = self._run(self._batch(lambda p: self._option_row(p, options, variants, wanted), prompts))
        failed = [r for r in got if isinstance(r, BaseException)]
        if failed:  # rows are one array: a partial answer travels as PartialBatchError
            raise steerkit.PartialBatchError(
                f"openai backend: {len(failed)} of {len(got)} prompts failed (the other rows are kept); "
                f"first error: {failed[0]}", got,
            )
        rows = np.stack(got)
        if not self.vllm_extras:  # top_logprobs: say when the options were unlikely next tokens
            mass = np.exp(rows).sum(axis=1)
            low = int((mass < LOW_MASS).sum())
            self.stats["option_rows"] += len(rows)
            self.stats["option_rows_low_mass"] += low
            if low:
                warnings.warn(
                    f"openai backend: in {low} of {len(rows)} prompts the options carry less than "
                    f"{LOW_MASS:.0%} of the next-token probability (least: {mass.min():.1%}); their "
                    "distribution is renormalised over what the server's top_logprobs showed and is approximate",
                    RuntimeWarning, stacklevel=2,
                )
        return rows

    def close(self) -> None:
        """Close the HTTP client and stop the loop thread (with its semaphore); a later call
        starts fresh ones."""
        self._loop = None
        if self._finalizer is not None:
            self._finalizer()


def _retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def _first_choice(data: dict) -> dict:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise steerkit.BackendError(
            f"openai backend: the server's reply has no 'choices' (keys: {sorted(data)[:10]}); "
            "is base_url an OpenAI-compatible /v1 endpoint?"
        )
    return choices[0]


def _error_message(resp) -> str:
    try:
        data = resp.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message", err) if isinstance(err, dict) else err
        return str(msg)[:500]
    except ValueError:
        return resp.text[:500]


def _mentions_schema(message: str) -> bool:
    m = message.lower()
    return any(w in m for w in ("json_schema", "response_format", "schema", "structured"))


@hookimpl
def register_backends(register):
    register("openai", OpenAIBackend)
