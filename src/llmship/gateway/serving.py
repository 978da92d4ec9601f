"""The gateway's request path: choose a release, forward the raw body to one of its
replicas, retry a failed one on another replica and then on stable, stream the answer
back, mirror to the shadow."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llmship import genai, tracing
from llmship.errors import (
    GenerationTimeoutError,
    InvalidRequestError,
    LlmshipError,
    NotFoundError,
    NotReadyError,
    UpstreamError,
)
from llmship.gateway.balancer import Attempt
from llmship.gateway.bodies import check_body, parse_object
from llmship.gateway.feedback import with_feedback_token
from llmship.gateway.metrics import GatewayMetrics
from llmship.gateway.proxy import UPSTREAM_ERRORS, Upstream, UpstreamFailure, UpstreamReply
from llmship.gateway.shadow import ShadowJob, ShadowMirror, SseText, answer_text
from llmship.gateway.state import GatewayState, Snapshot
from llmship.routing import NoReleaseError, Route, choose, mirror

log = logging.getLogger(__name__)

_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
_MAX_PARTIAL_EVENT = 1 << 20
"""A server-sent event longer than this is passed on in pieces."""
_DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class GatewayContext:
    """One request's facts, shared by the middleware and the handler (ASGI scope state)."""

    query_id: str
    """Issued by the gateway, never by the client: what feedback attaches to."""
    started: float
    request_id: str | None = None  # the client's own X-Request-ID (a correlation id)
    feedback_token: str | None = None
    user_key: str | None = None
    """X-User-Id, else the OpenAI ``user`` field: the stickiness key."""
    wants_preview: bool = False
    attrs: dict[str, str] | None = None
    """``X-Llmship-Attr-<name>: value`` headers, for flag targeting."""
    route: str = ""
    proxied: bool = False
    version: str = ""
    """The release that answered (NAME@VERSION)."""
    variant: str = ""
    sent_to: str = ""
    """The release the request was first sent to (before any fallback to stable)."""
    at: datetime | None = None
    upstream_wait: float = 0.0
    """Seconds spent waiting on model servers."""
    ttft: float | None = None
    completion_tokens: int = 0
    retried_from: str | None = None
    stream_error: str | None = None
    disconnected: bool = False


class ClientGone(Exception):
    """The client disconnected before the answer began: while its body was arriving,
    or while the model server was still working on it."""


async def until_gone(receive: Receive) -> None:
    """Return when the client disconnects (its body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def read_body(receive: Receive) -> bytes:
    """The whole request body, straight from ASGI messages."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class GatewayService:
    """Routing and forwarding for one environment."""

    def __init__(
        self,
        env: str,
        state: GatewayState,
        upstream: Upstream,
        shadow: ShadowMirror,
        metrics: GatewayMetrics,
        *,
        rng: random.Random,
        clock: Callable[[], datetime],
        feedback_token: Callable[[str], str | None] | None = None,
    ):
        self.env = env
        self.feedback_token = feedback_token  # of a query id (None: answers carry none)
        self.state = state
        self.upstream = upstream
        self.shadow = shadow
        self.metrics = metrics
        self.rng = rng
        self.clock = clock
        self.balancer = state.balancer

    # -- choosing ------------------------------------------------------------------

    def choose(self, snapshot: Snapshot, key: str | None, ctx: GatewayContext) -> Route:
        """A flag that routes and is on for this caller wins (except over an explicit
        preview request); otherwise the policy decides (preview, experiment, canary)."""
        policy = snapshot.policy
        if snapshot.routing_flags and not (ctx.wants_preview and policy.preview):
            for flag in snapshot.routing_flags:
                if flag.release and flag.is_on(key, ctx.attrs):
                    return Route(f"flag-{flag.name}", flag.release, sticky=True)
        try:
            route = choose(policy, user_key=key, wants_preview=ctx.wants_preview, rng=self.rng)
        except NoReleaseError as exc:
            raise NotReadyError(
                f"{exc}; point it at a release with `llmship alias set production NAME@VERSION`",
                code="no_release",
            ) from None
        if not route.keyed and policy.experiment:
            self.metrics.unkeyed.labels(experiment=policy.experiment.name).inc()
        return route

    # -- forwarding ----------------------------------------------------------------

    async def proxy(self, scope: Scope, receive: Receive, route: str, *, openai: bool) -> Response:
        """Forward one request and return the response that streams the answer back.

        Raises :class:`ClientGone` when the client leaves before the answer begins; the
        request to the model server is then cancelled, and the model server stops
        generating for it.
        """
        ctx: GatewayContext = scope["state"]["llmship"]
        ctx.route = route
        ctx.proxied = True
        snapshot = self.state.snapshot
        body = await read_body(receive)
        payload = parse_object(body)
        check_body(route, payload)
        if snapshot is None:
            raise NotReadyError(
                "the gateway has not read the traffic policy from the registry yet; retry shortly",
                code="no_policy",
            )
        user = payload.get("user")
        if user is not None and not isinstance(user, str):
            raise InvalidRequestError("`user` must be a string (an end-user id)", param="user")
        if openai:
            stream = payload.get("stream")
            if stream is not None and not isinstance(stream, bool):
                raise InvalidRequestError("`stream` must be true or false", param="stream")
            model = payload.get("model")
            if model is not None and (
                not isinstance(model, str) or (model and model not in snapshot.model_names)
            ):
                names = sorted(n for n in snapshot.model_names if "@" not in n)
                raise NotFoundError(
                    f"the model {model!r} is not served here; use one of {names} or omit `model`",
                    param="model",
                    code="model_not_found",
                )
        key = ctx.user_key or user or None
        ctx.user_key = key
        ctx.at = self.clock()
        choice = self.choose(snapshot, key, ctx)
        ctx.sent_to = choice.ref
        job: ShadowJob | None = None
        shadow_ref = mirror(snapshot.policy, self.rng)
        if shadow_ref is not None:
            job = self.shadow.start(
                shadow_ref,
                self.balancer.pick(shadow_ref, snapshot.endpoints.get(shadow_ref, ())),
                route,
                payload,
                body,
                key,
            )
        try:
            reply, answered, attempt = await self._unless_gone(
                receive, self._forward(snapshot, choice, route, payload, body, ctx), ctx
            )
        except BaseException:
            if job is not None:
                job.primary_done(None)
            raise
        ctx.version, ctx.variant = answered.ref, answered.variant
        if self.feedback_token is not None:
            ctx.feedback_token = self.feedback_token(ctx.query_id)
        return ProxyResponse(reply, ctx, self.metrics, job, attempt)

    @staticmethod
    async def _unless_gone(
        receive: Receive,
        forward: Coroutine[Any, Any, tuple[UpstreamReply, Route, Attempt]],
        ctx: GatewayContext,
    ) -> tuple[UpstreamReply, Route, Attempt]:
        """``forward``, cancelled when the client disconnects first (a non-streamed
        answer, or a stream before its first byte: the model server would otherwise
        generate for nobody). One watcher task; ``forward`` runs in this task."""
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.ensure_future(until_gone(receive))
        waiting = True

        def gone(done: asyncio.Future[None]) -> None:
            if waiting and not done.cancelled() and done.exception() is None:
                ctx.disconnected = True
                task.cancel()

        watcher.add_done_callback(gone)
        try:
            return await forward
        except asyncio.CancelledError:
            if not ctx.disconnected:
                raise
            if hasattr(task, "uncancel"):  # Python 3.11+: this cancellation is handled
                task.uncancel()
            raise ClientGone from None
        finally:
            waiting = False  # a callback already scheduled must not cancel what follows
            watcher.cancel()

    async def _forward(
        self,
        snapshot: Snapshot,
        choice: Route,
        route: str,
        payload: dict[str, Any],
        body: bytes,
        ctx: GatewayContext,
    ) -> tuple[UpstreamReply, Route, Attempt]:
        """Send to a replica of the chosen release; one that fails before its first byte
        is retried on another replica of it (each at most once, see ``balancer.py``), then
        on stable. A 5xx or 429 that no other replica replaces is passed through."""
        stable = snapshot.policy.stable
        options = [choice]
        if choice.variant != "stable" and stable and choice.ref != stable:
            # (an experiment arm that is the stable release: the same servers again
            # would fail the same way)
            options.append(Route("stable", stable))
        tries = _Tries()
        try:
            for option in options:
                if option is not choice:
                    log.warning(
                        "query %s: %s (%s) failed before answering (%s); retrying on stable %s",
                        ctx.query_id,
                        choice.ref,
                        choice.variant,
                        tries.failure.reason if tries.failure else "?",
                        stable,
                    )
                    ctx.retried_from = choice.ref
                urls = snapshot.endpoints.get(option.ref, ())
                found = await self._on_replicas(option, urls, route, payload, body, ctx, tries)
                if found is not None:
                    return found
            if tries.held is not None:
                found, tries.held = tries.held, None
                return found
        finally:
            await tries.drop()  # cancelled while trying the next one
        assert tries.failure is not None
        raise self._error(options[-1], tries.failure, ctx) from None

    async def _on_replicas(
        self,
        option: Route,
        urls: tuple[str, ...],
        route: str,
        payload: dict[str, Any],
        body: bytes,
        ctx: GatewayContext,
        tries: _Tries,
    ) -> tuple[UpstreamReply, Route, Attempt] | None:
        """Try the replicas of one release in the balancer's order; the first good answer,
        or None (``tries`` then holds the last failure, and a 5xx answer if one came)."""
        if not urls:
            tries.failure = UpstreamFailure(
                "no_endpoint", f"no live model server of {option.ref} in env {self.env!r}"
            )
            self._count_failure(option, "no_endpoint")
            return None
        for attempt in self.balancer.attempts(option.ref, urls):
            await tries.drop()
            try:
                reply = await self._attempt(option, attempt.url, route, payload, body, ctx)
            except UpstreamFailure as failure:
                attempt.failed(failure.reason)
                attempt.end()
                self._count_failure(option, failure.reason)
                tries.failure = failure
                log.warning(
                    "query %s: %s failed before answering (%s)",
                    ctx.query_id,
                    option.ref,
                    failure.message,
                )
                continue
            except BaseException:
                attempt.end()
                raise
            if reply.status >= 500 or reply.status == 429:  # the server failed, not the request
                reason = f"http_{reply.status}"
                attempt.failed(reason)
                self._count_failure(option, reason)
                tries.failure = UpstreamFailure(reason, f"{option.ref} answered {reply.status}")
                tries.held = (reply, option, attempt)  # passed on if nothing better comes
                continue
            attempt.succeeded()
            if reply.is_stream:
                ctx.ttft = reply.first_at - ctx.started
            return reply, option, attempt
        return None

    async def _attempt(
        self,
        choice: Route,
        url: str,
        route: str,
        payload: dict[str, Any],
        body: bytes,
        ctx: GatewayContext,
    ) -> UpstreamReply:
        """One try on the model server at ``url``: its answer (any status), or
        UpstreamFailure when it failed before the first byte or answered garbage."""
        model = payload.get("model")
        name = choice.ref.partition("@")[0]
        if model and model not in (choice.ref, name):  # another release of the policy
            body = json.dumps({**payload, "model": name}, ensure_ascii=False).encode()
            model = name
        trace: genai.Attributes | None = None
        if tracing.enabled():
            trace = {
                **genai.request_attributes(route, payload),
                "gen_ai.provider.name": genai.GATEWAY_PROVIDER,
                "gen_ai.request.model": model if isinstance(model, str) and model else name,
                "llmship.release": choice.ref,
                "llmship.variant": choice.variant,
            }
        try:
            reply = await self.upstream.open(url, route, body, ctx.query_id, trace)
        except UpstreamFailure as failure:
            ctx.upstream_wait += failure.waited
            raise
        ctx.upstream_wait += reply.waited
        wrong = reply.malformed()
        if wrong is not None:
            tracing.fail(reply.span, "malformed")
            await reply.aclose()
            raise UpstreamFailure(
                "malformed", f"the model server of {choice.ref} at {url} answered garbage: {wrong}"
            )
        return reply

    def _count_failure(self, choice: Route, reason: str) -> None:
        self.metrics.upstream_failures.labels(
            version=choice.ref, variant=choice.variant, reason=reason
        ).inc()
        self.metrics.window.request(choice.ref, error=True)  # analysis sees it, clients don't

    def _error(self, choice: Route, failure: UpstreamFailure, ctx: GatewayContext) -> LlmshipError:
        ctx.version, ctx.variant = choice.ref, choice.variant
        if failure.reason == "no_endpoint":
            return NotReadyError(
                f"no live model server of the stable release {choice.ref} in env {self.env!r}; "
                f"start one with `llmship serve --release {choice.ref} --env {self.env}`",
                code="no_endpoint",
            )
        if failure.reason == "timeout":
            return GenerationTimeoutError(failure.message, code="upstream_timeout")
        return UpstreamError(failure.message)


class ProxyResponse(Response):
    """Sends the model server's answer: a whole body at once, or a server-sent event
    stream event by event as it arrives (a model server that dies mid-stream ends it
    with an error event and ``data: [DONE]``)."""

    def __init__(
        self,
        reply: UpstreamReply,
        ctx: GatewayContext,
        metrics: GatewayMetrics,
        job: ShadowJob | None,
        attempt: Attempt | None = None,
    ):
        # Response.__init__ is skipped on purpose: nothing of it is used.
        self.reply = reply
        self.attempt = attempt
        """The replica's request: outstanding until the answer has been sent."""
        self.ctx = ctx
        self.metrics = metrics
        self.job = job
        self.status_code = reply.status
        self.background = None
        self.ended = False
        """The whole stream was handed to the ASGI server (its last message is next)."""
        self.facts = genai.StreamFacts() if reply.span is not None else None
        """What the stream says about the answer, for the call's span (tracing on)."""

    def _answer_attributes(self, body: bytes) -> genai.Attributes | None:
        """The GenAI attributes of a whole answer (tracing on, a 200 JSON object)."""
        if self.reply.span is None or self.reply.status != 200:
            return None
        try:
            answer = json.loads(body)
        except ValueError:
            return None
        return genai.response_attributes(answer) if isinstance(answer, dict) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = self.reply
        if reply.body is not None:
            try:
                await self._whole(reply.body, send)
            finally:
                reply.end_span(self._answer_attributes(reply.body))
                if self.attempt is not None:
                    self.attempt.end()
            return
        try:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    await until_gone(receive)
                    # ASGI servers answer `receive()` with http.disconnect once the
                    # response is complete too: only a client gone before the end left.
                    if not self.ended:
                        self.ctx.disconnected = True
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                await self._stream(send)
                group.cancel_scope.cancel()
        finally:
            if self.job is not None:
                self.job.primary_done(None)  # no-op when the text was handed over
            if self.facts is not None:
                if self.ctx.stream_error:
                    tracing.fail(reply.span, "mid_stream")
                elif not self.ended:
                    tracing.fail(reply.span, "cancelled")
                reply.end_span(self.facts.attributes())
            with anyio.CancelScope(shield=True):
                await reply.aclose()
            if self.attempt is not None:
                self.attempt.end()

    async def _whole(self, body: bytes, send: Send) -> None:
        reply, ctx, job = self.reply, self.ctx, self.job
        if reply.status == 200:
            found = _COMPLETION_TOKENS.search(body)
            if found:
                ctx.completion_tokens = int(found.group(1))
        if ctx.feedback_token and ctx.route == "/predict" and reply.status == 200:
            body = with_feedback_token(body, ctx.feedback_token)
        if job is not None:
            text = None
            if reply.status == 200:
                try:
                    text = answer_text(ctx.route, json.loads(body))
                except ValueError:
                    text = None
            job.primary_done(text)
        headers = [*reply.headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, send: Send) -> None:
        reply, ctx = self.reply, self.ctx
        text = SseText() if self.job is not None else None
        start = {"type": "http.response.start", "status": reply.status, "headers": reply.headers}
        await send(start)
        chunks = reply.chunks
        chunk = reply.first
        partial = usage = b""
        error: str | None = None
        while True:
            if chunk:
                out, partial = whole_events(partial, chunk)
                if out:
                    if b'"completion_tokens"' in out:
                        usage = out
                    if text is not None:
                        text.feed(out)
                    if self.facts is not None:
                        self.facts.feed(out)
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            if chunks is None:
                break
            began = time.perf_counter()
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except UPSTREAM_ERRORS as exc:
                error = type(exc).__name__
                break
            finally:
                ctx.upstream_wait += time.perf_counter() - began
        if error is not None:
            await self._broke_off(error, send)
        elif partial:
            await send({"type": "http.response.body", "body": partial, "more_body": True})
        if usage:
            found = list(_COMPLETION_TOKENS.finditer(usage))
            if found:
                ctx.completion_tokens = int(found[-1].group(1))
        if self.job is not None and text is not None and error is None:
            self.job.primary_done(text.text())
        self.ended = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _broke_off(self, error: str, send: Send) -> None:
        """End a stream whose model server broke off: an error event, then [DONE]."""
        ctx = self.ctx
        ctx.stream_error = error
        if self.attempt is not None:
            self.attempt.failed("mid_stream")
        self.metrics.upstream_failures.labels(
            version=ctx.version, variant=ctx.variant, reason="mid_stream"
        ).inc()
        log.warning("query %s: %s broke off mid-stream (%s)", ctx.query_id, ctx.version, error)
        failure = UpstreamError(
            f"the model server of {ctx.version} broke off mid-stream ({error}); "
            "the answer is incomplete"
        )
        event = b"data: " + json.dumps(failure.to_dict()).encode() + b"\n\n"
        await send({"type": "http.response.body", "body": event + _DONE, "more_body": True})


def whole_events(partial: bytes, chunk: bytes) -> tuple[bytes, bytes]:
    """Split ``partial + chunk`` into whole server-sent events (to send now) and the
    start of an unfinished one (kept until the rest arrives)."""
    data = partial + chunk if partial else chunk
    if data.endswith(b"\n\n"):
        return data, b""
    cut = data.rfind(b"\n\n") + 2
    if cut == 1:  # no event is complete yet
        return (data, b"") if len(data) >= _MAX_PARTIAL_EVENT else (b"", data)
    return data[:cut], data[cut:]


class _Tries:
    """What one request's failed tries left: the last failure, and the last 5xx answer
    (kept open, to pass on when no other replica answers)."""

    __slots__ = ("failure", "held")

    def __init__(self) -> None:
        self.failure: UpstreamFailure | None = None
        self.held: tuple[UpstreamReply, Route, Attempt] | None = None

    async def drop(self) -> None:
        """Close the held answer: another replica replaces it."""
        if self.held is not None:
            reply, _, attempt = self.held
            self.held = None
            try:
                await reply.aclose()
            finally:
                attempt.end()
