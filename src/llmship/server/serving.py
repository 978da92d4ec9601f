"""The model server's logic: turn API requests into generations, with queueing,
timeouts, cancellation and metrics; shape OpenAI responses and SSE streams."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span, SpanKind

from llmship import genai, tracing
from llmship.backends.base import Backend, Chunk, GenerationRequest, Message
from llmship.backends.prompting import build_messages, sampling_params
from llmship.errors import (
    ContextLengthError,
    GenerationTimeoutError,
    InvalidRequestError,
    NotFoundError,
    NotReadyError,
)
from llmship.release.spec import ReleaseSpec
from llmship.server.metrics import ServerMetrics
from llmship.server.scheduler import Scheduler
from llmship.settings import Settings
from llmship.wire import (
    ChatCompletionRequest,
    CompletionRequest,
    PredictRequest,
    _Sampling,
)

log = logging.getLogger(__name__)


@dataclass
class RequestContext:
    """Per-request facts shared with the access log (through the ASGI scope)."""

    query_id: str
    started: float
    route: str = ""
    prompt_tokens: int | None = None
    """None until the backend says (an upstream that streams no usage never does)."""
    completion_tokens: int = 0
    ttft: float | None = None
    streamed: bool = True
    """False while :meth:`ModelService.complete` gathers a whole answer: its metrics then
    have no time to first token (the client sees none)."""
    finish_reason: str | None = None
    text: list[str] = field(default_factory=list)
    """Generated text, kept only when the log_prompts setting is on."""
    extra: dict[str, Any] = field(default_factory=dict)


MAX_CHARS_PER_TOKEN = 128
"""A bound on the characters one token covers: no tokenizer we know has a longer token
(the longest are runs of spaces in code vocabularies). A prompt of more than
``context_length × 128`` characters cannot fit, whatever the tokenizer says, so it is
refused before anything tokenises it."""


PROMPT_PARAM = {
    "/v1/chat/completions": "messages",
    "/v1/completions": "prompt",
    "/predict": "prompt",
}
"""The request field that carries the text to generate from, per route: the ``param``
of a ``context_length_exceeded`` error."""


@dataclass
class Completion:
    """A finished, non-streamed generation."""

    text: str
    finish_reason: str
    prompt_tokens: int | None
    completion_tokens: int

    def usage(self) -> dict[str, int | None]:
        return _usage(self.prompt_tokens, self.completion_tokens)


def _usage(prompt: int | None, completion: int) -> dict[str, int | None]:
    """OpenAI's usage object; an unknown prompt count is null, and so is the total."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": None if prompt is None else prompt + completion,
    }


class ModelService:
    """One loaded release behind a bounded queue."""

    def __init__(
        self, spec: ReleaseSpec, backend: Backend, settings: Settings, metrics: ServerMetrics
    ):
        self.spec = spec
        self.backend = backend
        self.settings = settings
        self.metrics = metrics
        self.scheduler = Scheduler(backend.max_concurrency, settings.queue_size)
        self.ready = False
        self.load_error: str | None = None
        self.created = int(time.time())

    @property
    def version(self) -> str:
        return self.spec.ref

    @property
    def _remote(self) -> bool:
        """Whether the model runs elsewhere (an OpenAI-compatible upstream)."""
        return self.spec.backend == "openai"

    async def start(self) -> None:
        """Load the model; the server answers /readyz with 200 afterwards."""
        await self.backend.start()
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        await self.backend.close()

    # -- requests -> generation requests -----------------------------------------

    def check_model(self, model: str | None) -> None:
        """Accept the release name, NAME@VERSION, or no model at all."""
        if model in (None, "", self.spec.name, self.spec.ref):
            return
        raise NotFoundError(
            f"the model {model!r} is not served here; this server serves {self.spec.name!r} "
            f"({self.spec.ref})",
            param="model",
            code="model_not_found",
        )

    def _sampling(self, req: _Sampling, max_tokens: int | None) -> dict[str, Any]:
        limit = self.settings.max_request_tokens
        if max_tokens is not None and max_tokens > limit:
            raise InvalidRequestError(
                f"max_tokens is {max_tokens}, above the limit of {limit}; ask for fewer tokens",
                param="max_tokens",
            )
        return sampling_params(
            self.spec,
            max_tokens=max_tokens
            if max_tokens is not None
            else min(self.spec.params.max_tokens, limit),
            temperature=req.temperature,
            top_p=req.top_p,
            top_k=req.top_k,
            seed=req.seed,
            stop=req.stop_list(),
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
        )

    def _messages(self, chat: list[tuple[str, str]]) -> tuple[Message, ...]:
        return build_messages(self.spec, chat)

    def check_length(self, chars: int, param: str) -> None:
        """ContextLengthError when a prompt of ``chars`` characters cannot fit in the
        model's context whatever it tokenises to (see :data:`MAX_CHARS_PER_TOKEN`): a cheap
        check before the prompt waits in the queue or is tokenised."""
        context = self.backend.info().context_length
        if context is None or chars <= context * MAX_CHARS_PER_TOKEN:
            return
        raise ContextLengthError(
            f"the prompt is {chars} characters, more than any tokenisation of it fits in "
            f"{self.version}'s context window of {context} tokens; shorten the prompt",
            param=param,
        )

    def chat_request(self, req: ChatCompletionRequest) -> GenerationRequest:
        self.check_model(req.model)
        if req.logprobs:
            raise InvalidRequestError(
                "logprobs are not supported; omit the field", param="logprobs"
            )
        chat: list[tuple[str, str]] = [(m.role, m.text()) for m in req.messages]
        self.check_length(sum(len(text) for _, text in chat), "messages")
        messages = self._messages(chat)
        max_tokens = req.max_completion_tokens or req.max_tokens
        return GenerationRequest(messages=messages, **self._sampling(req, max_tokens))

    def completion_request(self, req: CompletionRequest) -> GenerationRequest:
        self.check_model(req.model)
        if req.echo:
            raise InvalidRequestError("echo is not supported; omit the field", param="echo")
        if req.suffix is not None:
            raise InvalidRequestError("suffix is not supported; omit the field", param="suffix")
        prompt = req.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise InvalidRequestError(
                    "prompt: send one prompt per request (a string, or a list of one string)",
                    param="prompt",
                )
            prompt = prompt[0]
        if not prompt.strip():
            raise InvalidRequestError("prompt is empty; send some text", param="prompt")
        self.check_length(len(prompt), "prompt")
        return GenerationRequest(
            prompt=self.spec.prompt.apply(prompt), **self._sampling(req, req.max_tokens)
        )

    def predict_request(self, req: PredictRequest) -> GenerationRequest:
        if not req.prompt.strip():
            raise InvalidRequestError("prompt is empty; send some text", param="prompt")
        self.check_length(len(req.prompt), "prompt")
        sampling = _Sampling(temperature=req.temperature, seed=req.seed)
        return GenerationRequest(
            messages=self._messages([("user", req.prompt)]),
            **self._sampling(sampling, req.max_new_tokens),
        )

    # -- generation --------------------------------------------------------------

    async def generate(
        self, request: GenerationRequest, ctx: RequestContext
    ) -> AsyncGenerator[Chunk, None]:
        """Queue, generate and measure; raises before the first chunk when it cannot start."""
        if not self.ready:
            raise NotReadyError(f"{self.version} is still loading; retry shortly")
        deadline = ctx.started + self.settings.request_timeout
        gauge = self.metrics.in_flight.labels(version=self.version)
        gauge.inc()
        try:
            try:
                waited = await asyncio.wait_for(self.scheduler.acquire(), _remaining(deadline))
            except asyncio.TimeoutError:
                raise self._timeout("waiting in the queue") from None
            self.metrics.queue_wait.labels(version=self.version).observe(waited)
            began = time.perf_counter()
            span = self._inference_span(request, ctx)
            if span is not None and self._remote:
                request = dataclasses.replace(request, trace_headers=tracing.headers_for(span))
            stream = self.backend.stream(request)
            error: str | None = None
            try:
                while True:
                    try:
                        chunk = await _next_before(stream, deadline)
                    except StopAsyncIteration:
                        break
                    except asyncio.TimeoutError:
                        raise self._timeout("generating") from None
                    except ContextLengthError as exc:
                        # The backend sees messages or a prompt; the client sent the field
                        # of its route (``/predict`` builds messages from its ``prompt``).
                        exc.param = PROMPT_PARAM.get(ctx.route, exc.param)
                        raise
                    self._took(ctx, chunk, request)
                    yield chunk
            except (asyncio.CancelledError, GeneratorExit, GenerationTimeoutError) as exc:
                self.metrics.stopped.labels(version=self.version).inc()  # client gone, or too slow
                error = "timeout" if isinstance(exc, GenerationTimeoutError) else "cancelled"
                raise
            except Exception as exc:
                error = getattr(exc, "code", None) or type(exc).__name__
                raise
            finally:
                # Free the slot before awaiting anything: a cancelled task may be
                # cancelled again at its next await.
                self.scheduler.release(time.perf_counter() - began)
                self._end_inference(span, ctx, error)
                await stream.aclose()
        finally:
            gauge.dec()

    def _took(self, ctx: RequestContext, chunk: Chunk, request: GenerationRequest) -> None:
        """Count one chunk of the generation (and keep its text when log_prompts is on)."""
        if chunk.text and ctx.ttft is None:
            ctx.ttft = time.perf_counter() - ctx.started
        ctx.completion_tokens += chunk.tokens
        if chunk.prompt_tokens is not None:
            ctx.prompt_tokens = chunk.prompt_tokens
        if self.settings.log_prompts:
            ctx.text.append(chunk.text)
        if chunk.finish_reason:
            self._finished(ctx, chunk.finish_reason, request)

    def _inference_span(self, request: GenerationRequest, ctx: RequestContext) -> Span | None:
        """The GenAI span of one generation, ``{operation} {model}``: INTERNAL for a model
        in this process, CLIENT for an OpenAI-compatible upstream (``server.*``)."""
        if not tracing.enabled():
            return None
        info = self.backend.info()
        remote = self._remote
        model = info.model if remote else self.spec.name
        op = genai.operation(ctx.route)
        attributes: genai.Attributes = {
            "gen_ai.operation.name": op,
            "gen_ai.provider.name": genai.provider(info.kind),
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": request.max_tokens,
            "gen_ai.request.temperature": request.temperature,
            "gen_ai.request.top_p": request.top_p,
            "llmship.release": self.version,
        }
        if request.seed is not None:
            attributes["gen_ai.request.seed"] = request.seed
        if remote:
            attributes |= genai.server_attributes(str(info.details.get("base_url", "")))
        kind = SpanKind.CLIENT if remote else SpanKind.INTERNAL
        return tracing.start_span(genai.span_name(op, model), attributes, kind=kind)

    def _end_inference(self, span: Span | None, ctx: RequestContext, error: str | None) -> None:
        """End the GenAI span with what the generation gave: id, model, finish reason,
        token counts; ``error.type`` when it stopped early."""
        if span is None:
            return
        attributes: genai.Attributes = {
            "gen_ai.response.id": response_id(ctx.route, ctx.query_id),
            "gen_ai.usage.output_tokens": ctx.completion_tokens,
        }
        if ctx.prompt_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = ctx.prompt_tokens
        if not self._remote:  # an upstream's own model name is not known here
            attributes["gen_ai.response.model"] = self.spec.name
        if ctx.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [ctx.finish_reason]
        tracing.annotate(span, attributes)
        if error is not None:
            tracing.fail(span, error)
        span.end()

    def _finished(self, ctx: RequestContext, reason: str, request: GenerationRequest) -> None:
        """The generation ended: observe it, and keep its text for the log when asked."""
        ctx.finish_reason = reason
        self._observe(ctx)
        if self.settings.log_prompts:
            ctx.extra["prompt"] = _prompt_text(request)  # the text log quotes them
            ctx.extra["response"] = "".join(ctx.text)

    def _observe(self, ctx: RequestContext) -> None:
        self.metrics.observe_generation(
            ctx.route,
            latency=time.perf_counter() - ctx.started,
            ttft=ctx.ttft if ctx.streamed else None,
            prompt_tokens=ctx.prompt_tokens,
            completion_tokens=ctx.completion_tokens,
        )

    def _timeout(self, doing: str) -> GenerationTimeoutError:
        return GenerationTimeoutError(
            f"the request took longer than {self.settings.request_timeout:g}s ({doing}); "
            "ask for fewer tokens or raise request_timeout"
        )

    async def complete(self, request: GenerationRequest, ctx: RequestContext) -> Completion:
        """Generate the whole answer."""
        ctx.streamed = False
        parts: list[str] = []
        stream = self.generate(dataclasses.replace(request, stream=False), ctx)
        try:
            async for chunk in stream:
                parts.append(chunk.text)
        finally:
            await stream.aclose()
        return Completion(
            text="".join(parts),
            finish_reason=ctx.finish_reason or "stop",
            prompt_tokens=ctx.prompt_tokens,
            completion_tokens=ctx.completion_tokens,
        )


def _prompt_text(request: GenerationRequest) -> str:
    if request.messages is None:
        return request.prompt or ""
    return "\n".join(f"{m.role}: {m.content}" for m in request.messages)


def _remaining(deadline: float) -> float:
    return max(deadline - time.perf_counter(), 0.0)


async def _next_before(stream: AsyncIterator[Chunk], deadline: float) -> Chunk:
    """The next chunk, or asyncio.TimeoutError at ``deadline``.

    Called once per token: on Python 3.11+ ``asyncio.timeout`` arms one timer,
    where ``wait_for`` would also wrap the step in a new Task.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(_remaining(deadline)):
            return await stream.__anext__()
    return await asyncio.wait_for(stream.__anext__(), _remaining(deadline))


# -- OpenAI response shapes -----------------------------------------------------

ID_PREFIX = {"/v1/chat/completions": "chatcmpl-", "/v1/completions": "cmpl-"}


def response_id(route: str, query_id: str) -> str:
    """The ``id`` of an answer on ``route`` (/predict answers with the query id)."""
    return ID_PREFIX.get(route, "") + query_id


def chat_response(
    ctx: RequestContext, model: str, result: Completion, created: int
) -> dict[str, Any]:
    return {
        "id": response_id("/v1/chat/completions", ctx.query_id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": result.usage(),
    }


def completion_response(
    ctx: RequestContext, model: str, result: Completion, created: int
) -> dict[str, Any]:
    return {
        "id": response_id("/v1/completions", ctx.query_id),
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": result.text,
                "finish_reason": result.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": result.usage(),
    }


def _sse(data: dict[str, Any]) -> bytes:
    return (
        b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
    )


async def sse_stream(
    chunks: AsyncGenerator[Chunk, None],
    first: Chunk,
    ctx: RequestContext,
    *,
    chat: bool,
    model: str,
    created: int,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """OpenAI server-sent events for a stream whose first chunk is already known.

    The chunk carrying ``finish_reason`` also carries ``usage``; with
    ``include_usage`` a final chunk with empty ``choices`` and the usage follows,
    as OpenAI sends it. A failure mid-stream ends with an error event.
    """
    base: dict[str, Any] = (
        {"id": f"chatcmpl-{ctx.query_id}", "object": "chat.completion.chunk"}
        if chat
        else {"id": f"cmpl-{ctx.query_id}", "object": "text_completion"}
    )
    base |= {"created": created, "model": model}

    def event(chunk: Chunk, role: bool = False) -> dict[str, Any]:
        if chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if chunk.text or role:
                delta["content"] = chunk.text
            choice: dict[str, Any] = {"index": 0, "delta": delta}
        else:
            choice = {"index": 0, "text": chunk.text}
        choice["logprobs"] = None
        choice["finish_reason"] = chunk.finish_reason
        data = base | {"choices": [choice]}
        if chunk.finish_reason:
            data["usage"] = _usage(ctx.prompt_tokens, ctx.completion_tokens)
        return data

    # Most events differ only in their text: render the rest once per stream,
    # around a placeholder that JSON always escapes the same way.
    head, tail = _sse(event(Chunk(text="\x00"))).split(b'"\\u0000"', 1)
    try:
        yield _sse(event(first, role=True))
        async for chunk in chunks:
            if chunk.text and not chunk.finish_reason:
                yield head + json.dumps(chunk.text, ensure_ascii=False).encode() + tail
            else:
                yield _sse(event(chunk))
        if include_usage:
            yield _sse(
                base | {"choices": [], "usage": _usage(ctx.prompt_tokens, ctx.completion_tokens)}
            )
    except Exception as exc:
        from llmship.errors import LlmshipError

        error = exc if isinstance(exc, LlmshipError) else LlmshipError(f"generation failed: {exc}")
        log.warning("stream %s ended with an error: %s", ctx.query_id, error.message)
        ctx.extra["stream_error"] = error.code
        yield _sse(error.to_dict())
    finally:
        await chunks.aclose()
    yield b"data: [DONE]\n\n"
