"""Locust users for LLM services. Importing this module imports Locust, which
monkey-patches the whole process with gevent: only the load generator
(``llmship.loadtest.worker``) and locustfiles import it.

:class:`LLMUser` sends one request at a time (closed loop) to an OpenAI-compatible
service or the seed's ``/predict``, streams the answer (``stream: true`` for chat
and completions) and measures it (:mod:`llmship.loadtest.measure`). Each request
fires one Locust ``request`` event (response time = end-to-end latency, the
:class:`RequestRecord` in ``context["llmship"]``) and, for streams, a ``TTFT``
event, so Locust's own statistics and web UI show both.

:class:`OpenLoopUser` sends requests on an arrival schedule instead: one scheduler
greenlet spawns each request at its time, so a slow server does not slow the
arrivals; at most ``max_in_flight`` run at once and later arrivals are dropped
and counted.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import gevent
from gevent.pool import Pool
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPSocketPoolResponse
from geventhttpclient.url import URL
from locust import User, constant, task
from locust.env import Environment
from locust.exception import StopUser

from llmship.loadtest.arrivals import arrivals
from llmship.loadtest.measure import (
    RequestRecord,
    StreamParser,
    error_from_body,
    predict_reply,
)
from llmship.loadtest.plan import DEFAULT_PROMPT, ENDPOINTS, Prompt, base_url

MAX_ERROR_BODY = 4096


class LLMRequestError(Exception):
    """A failed LLM request, as Locust's statistics record it."""


class RunControl:
    """What the users of one run share with the load generator: when the measured
    window began, whether to stop sending, and what is in flight."""

    def __init__(self) -> None:
        self.origin = time.perf_counter()
        self.window_start = float("inf")
        self.stopping = False
        self.sent = 0
        self.dropped = 0
        self.in_flight: dict[int, float] = {}
        self._ids = itertools.count()

    def now(self) -> float:
        """Seconds since the run began."""
        return time.perf_counter() - self.origin

    def begin(self, start: float) -> int:
        key = next(self._ids)
        self.in_flight[key] = start
        if start >= self.window_start:
            self.sent += 1
        return key

    def end(self, key: int) -> None:
        self.in_flight.pop(key, None)

    def drop(self) -> None:
        if self.now() >= self.window_start:
            self.dropped += 1

    def incomplete(self) -> int:
        """Measured requests still in flight."""
        return sum(1 for start in self.in_flight.values() if start >= self.window_start)


class LLMClientUser(User):
    """Sends prompts to an LLM service and measures each streamed answer
    (:meth:`send`); no task of its own: :class:`LLMUser` and :class:`OpenLoopUser`
    add one each (Locust's users inherit every task of their bases).
    """

    abstract = True
    endpoint: ClassVar[str] = "chat"
    """``chat``, ``completions`` or ``predict``."""
    model: ClassVar[str | None] = None
    """``model`` of OpenAI requests; None asks ``/v1/models`` once."""
    max_tokens: ClassVar[int] = 100
    prompts: ClassVar[Sequence[Prompt]] = (Prompt(text=DEFAULT_PROMPT),)
    network_timeout: ClassVar[float] = 60.0
    connection_timeout: ClassVar[float] = 10.0
    concurrency: ClassVar[int] = 1
    """Connections this user may hold (1 for a closed-loop user)."""
    control: ClassVar[RunControl | None] = None
    """Set by the load generator; None under plain ``locust``."""
    fire_ttft_events: ClassVar[bool] = True
    wait_time = constant(0)
    _turn: ClassVar[itertools.count[int]] = itertools.count()

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if not self.host:
            raise ValueError("no host: give --host (locust) or --target (llmship loadtest)")
        root = base_url(self.host)
        self._prefix = URL(root).path.rstrip("/")
        self.http = HTTPClient.from_url(
            root,
            concurrency=self.concurrency,
            network_timeout=self.network_timeout,
            connection_timeout=self.connection_timeout,
            insecure=True,
        )
        self._headers = {"Content-Type": "application/json", "User-Agent": "llmship-loadtest"}

    def on_stop(self) -> None:
        self.http.close()

    # -- one request -----------------------------------------------------------

    def _model(self) -> str | None:
        cls = type(self)
        if cls.model is None and self.endpoint != "predict":
            cls.model = self._discover_model()
        return cls.model

    def _discover_model(self) -> str | None:
        try:
            response = self.http.get(f"{self._prefix}/v1/models", headers=self._headers)
            try:
                body = response.read()
            finally:
                response.release()
            data = json.loads(body).get("data") or []
            return str(data[0]["id"]) if data else None
        except Exception:  # a server without /v1/models: send no model
            return None

    def request_body(self, prompt: Prompt) -> dict[str, Any]:
        """The JSON body for ``prompt`` on this user's endpoint."""
        if self.endpoint == "predict":
            return {"prompt": prompt.as_text(), "max_new_tokens": self.max_tokens}
        body: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        model = self._model()
        if model is not None:
            body["model"] = model
        if self.endpoint == "chat":
            body["messages"] = prompt.as_messages()
        else:
            body["prompt"] = prompt.as_text()
        return body

    def send(self, issued: tuple[int, float] | None = None) -> RequestRecord:
        """Send the next prompt, measure the answer, fire the Locust events.
        ``issued``: the open loop's scheduler already counted it in (its key and time)."""
        prompt = self.prompts[next(LLMClientUser._turn) % len(self.prompts)]
        path = ENDPOINTS[self.endpoint]
        payload = json.dumps(self.request_body(prompt)).encode()
        control = self.control
        wall = time.time()
        sent_at = time.perf_counter()
        if issued is not None:
            key, start = issued
        else:
            start = control.now() if control is not None else 0.0
            key = control.begin(start) if control is not None else 0
        try:
            record, size = self._exchange(self._prefix + path, payload, sent_at, start)
        finally:
            if control is not None:
                control.end(key)
        events = self.environment.events.request
        events.fire(
            request_type="POST",
            name=path,
            response_time=record.e2e * 1000,
            response_length=size,
            response=None,
            context={"llmship": record},
            exception=LLMRequestError(record.error) if record.error else None,
            start_time=wall,
            url=self.host + path if self.host else path,
        )
        streamed_ok = record.ok and record.streamed and record.ttft is not None
        if self.fire_ttft_events and streamed_ok:
            events.fire(
                request_type="TTFT",
                name=path,
                response_time=(record.ttft or 0.0) * 1000,
                response_length=0,
                response=None,
                context={},
                exception=None,
                start_time=wall,
                url=self.host + path if self.host else path,
            )
        return record

    def _exchange(
        self, path: str, payload: bytes, sent_at: float, start: float
    ) -> tuple[RequestRecord, int]:
        """POST ``payload`` and read the answer; never raises (failures are recorded)."""
        stream = self.endpoint != "predict"
        parser = StreamParser(chat=self.endpoint == "chat")
        status: int | None = None
        version: str | None = None
        size = tokens = 0
        error: str | None = None
        try:
            response = self.http.request("POST", path, body=payload, headers=self._headers)
        except Exception as exc:  # connection refused, timeout, reset
            response, error = None, _describe(exc)
        if response is not None:
            try:
                status = response.status_code
                header = response.get("x-llmship-version")
                version = header if isinstance(header, str) else None
                if status >= 400:
                    body = response.read(MAX_ERROR_BODY)
                    size, error = len(body), error_from_body(status, body)
                elif stream:
                    size, error = self._read_stream(response, parser, sent_at)
                else:
                    body = response.read()
                    size = len(body)
                    tokens, error = predict_reply(body)
            except Exception as exc:
                error = _describe(exc)
            finally:
                response.release()
        e2e = time.perf_counter() - sent_at
        if stream:
            first, gaps, tokens = parser.first_at, parser.gaps, parser.output_tokens
        else:  # the whole answer came at once: no first token to time
            first, gaps = None, ()
        record = RequestRecord(
            start=start,
            e2e=e2e,
            ttft=None if first is None else min(first, e2e),
            output_tokens=tokens,
            itl=gaps,
            error=error,
            status=status,
            version=version,
            streamed=stream,
        )
        return record, size

    @staticmethod
    def _read_stream(
        response: HTTPSocketPoolResponse, parser: StreamParser, sent_at: float
    ) -> tuple[int, str | None]:
        """Feed the SSE lines to ``parser`` as they arrive; bytes read and any error."""
        size = 0
        while True:
            line = response.readline(b"\n")
            if not line:
                break
            size += len(line)
            parser.feed(line, time.perf_counter() - sent_at)
        if parser.error is None and not parser.done and parser.finish_reason is None:
            return size, "stream ended before [DONE]"
        return size, parser.error


class LLMUser(LLMClientUser):
    """Closed loop: sends its next request when the last one is answered (after
    ``wait_time``). Subclass it and set the class attributes (a locustfile can set
    them from command-line options, see the repository's ``locustfile.py``)."""

    abstract = True

    @task
    def generate(self) -> None:
        """One request."""
        if self.control is not None and self.control.stopping:
            raise StopUser()
        self.send()


class OpenLoopUser(LLMClientUser):
    """Sends requests at ``rate`` per second (``constant`` or ``poisson`` arrivals),
    never waiting for answers; run exactly one of it."""

    abstract = True
    rate: ClassVar[float] = 1.0
    arrival: ClassVar[str] = "constant"
    seed: ClassVar[int] = 0
    max_in_flight: ClassVar[int] = 256
    fixed_count = 1

    def __init__(self, environment: Environment) -> None:
        type(self).concurrency = self.max_in_flight
        super().__init__(environment)
        self._pool = Pool(self.max_in_flight)

    def on_stop(self) -> None:
        self._pool.kill(block=True, timeout=1)
        super().on_stop()

    @task
    def generate(self) -> None:
        """Send every arrival of the schedule until the run stops."""
        control = self.control or RunControl()
        self._model()  # ask /v1/models before the clock matters
        for at in arrivals(self.rate, self.arrival, seed=self.seed):
            delay = at - control.now()
            if delay > 0:
                gevent.sleep(delay)
            if control.stopping:
                break
            if self._pool.full():
                control.drop()
                continue
            now = control.now()
            self._pool.spawn(self.send, (control.begin(now), now))
        self._pool.join()
        raise StopUser()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
