"""Shadow traffic: a copy of a request goes to the shadow release in the background and
its answer is compared with the one the client got. Nothing here is awaited on a
client's request path."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from llmship.gateway.balancer import Attempt
from llmship.gateway.metrics import GatewayMetrics
from llmship.gateway.proxy import UPSTREAM_ERRORS, Upstream, UpstreamFailure
from llmship.gateway.recorder import QueryRecorder
from llmship.gateway.similarity import rouge_l
from llmship.registry.records import QueryRecord

log = logging.getLogger(__name__)


def answer_text(route: str, data: Any) -> str | None:
    """The generated text of a whole (non-streamed) answer of ``route``."""
    if not isinstance(data, dict):
        return None
    if route == "/predict":
        text = data.get("response")
        return text if isinstance(text, str) else None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    return text if isinstance(text, str) else None


def delta_text(event: Any) -> str:
    """The text one streamed event adds (chat ``delta.content`` or completion ``text``)."""
    if not isinstance(event, dict):
        return ""
    choices = event.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return text if isinstance(text, str) else ""


class SseText:
    """Accumulates the text of a server-sent event stream, fed whole events."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def feed(self, events: bytes) -> None:
        for line in events.split(b"\n"):
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data and data != b"[DONE]":
                    try:
                        self.parts.append(delta_text(json.loads(data)))
                    except ValueError:
                        continue

    def text(self) -> str:
        return "".join(self.parts)


class ShadowJob:
    """One mirrored request; :meth:`primary_done` hands over the client's answer."""

    __slots__ = ("_primary",)

    def __init__(self) -> None:
        self._primary: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def primary_done(self, text: str | None) -> None:
        """The text the client got (None when the primary failed: nothing to compare)."""
        if not self._primary.done():
            self._primary.set_result(text)


def non_stream_body(payload: dict[str, Any], body: bytes) -> bytes:
    """``body`` asking for a whole answer: the shadow is compared, not streamed."""
    if not payload.get("stream"):
        return body
    copy = {k: v for k, v in payload.items() if k != "stream_options"}
    copy["stream"] = False
    return json.dumps(copy, ensure_ascii=False).encode()


class ShadowMirror:
    """Sends shadow requests, at most ``max_in_flight`` at once (more are dropped)."""

    def __init__(
        self,
        upstream: Upstream,
        recorder: QueryRecorder,
        metrics: GatewayMetrics,
        *,
        env: str,
        max_in_flight: int,
        wait_for_primary: float,
        clock: Callable[[], datetime],
    ):
        self.upstream = upstream
        self.recorder = recorder
        self.metrics = metrics
        self.env = env
        self.max_in_flight = max_in_flight
        self.wait_for_primary = wait_for_primary
        self.clock = clock
        self.tasks: set[asyncio.Task[None]] = set()

    def start(
        self,
        ref: str,
        attempt: Attempt | None,
        route: str,
        payload: dict[str, Any],
        body: bytes,
        user_key: str | None,
    ) -> ShadowJob | None:
        """Mirror one request to ``ref`` (to the replica of ``attempt``, None when it has
        no live model server); None when it was dropped."""
        if len(self.tasks) >= self.max_in_flight:
            self.metrics.shadow_requests.labels(version=ref, outcome="dropped").inc()
            if attempt is not None:
                attempt.end()
            return None
        job = ShadowJob()
        task = asyncio.create_task(self._run(job, ref, attempt, route, payload, body, user_key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return job

    async def _run(
        self,
        job: ShadowJob,
        ref: str,
        attempt: Attempt | None,
        route: str,
        payload: dict[str, Any],
        body: bytes,
        user_key: str | None,
    ) -> None:
        query_id = uuid.uuid4().hex
        at = self.clock()
        status, text = 502, None
        try:
            if attempt is None:
                raise UpstreamFailure("no_endpoint", f"no live model server for {ref}")
            status, text = await self._ask(attempt, route, non_stream_body(payload, body), query_id)
        except (UpstreamFailure, *UPSTREAM_ERRORS) as exc:
            log.info("shadow request %s to %s failed: %s", query_id, ref, exc)
        except asyncio.CancelledError:
            job.primary_done(None)
            raise
        finally:
            if attempt is not None:
                attempt.end()
            self.recorder.add(
                QueryRecord(query_id, self.env, ref, "shadow", route, status, at, user_key)
            )
        outcome = "ok" if status == 200 and text is not None else "error"
        self.metrics.shadow_requests.labels(version=ref, outcome=outcome).inc()
        if outcome != "ok":
            self.metrics.window.shadow(ref, error=True)
            return
        try:
            primary = await asyncio.wait_for(job._primary, self.wait_for_primary)
        except asyncio.TimeoutError:
            primary = None
        if primary is None or text is None:
            self.metrics.window.shadow(ref, error=False)
            return
        score = await asyncio.to_thread(rouge_l, text, primary)
        self.metrics.shadow_similarity.labels(version=ref).observe(score)
        self.metrics.window.shadow(ref, error=False, similarity=score)

    async def _ask(
        self, attempt: Attempt, route: str, body: bytes, query_id: str
    ) -> tuple[int, str | None]:
        """Send the copy to the replica of ``attempt``: the answer's status and text (None
        when it has none). The replica is judged as for a client's request."""
        try:
            reply = await self.upstream.open(attempt.url, route, body, query_id)
            try:
                data = reply.body
                if data is None:  # a stream after all: gather it
                    parts = [reply.first]
                    if reply.chunks is not None:
                        parts += [chunk async for chunk in reply.chunks]
                    data = b"".join(parts)
            finally:
                await reply.aclose()
        except UpstreamFailure as failure:
            attempt.failed(failure.reason)
            raise
        except UPSTREAM_ERRORS:
            attempt.failed("disconnected")
            raise
        status, text = reply.status, None
        if status >= 500 or status == 429:
            attempt.failed(f"http_{status}")
        elif status == 200:
            try:
                text = answer_text(route, json.loads(data))
            except ValueError:
                attempt.failed("malformed")
        attempt.succeeded()  # (nothing when it failed above)
        return status, text

    async def aclose(self) -> None:
        """Cancel what is in flight."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
