"""Backend running a GGUF model in-process with llama-cpp-python.

llama.cpp generates for one request at a time per loaded model, so all work on
the model runs on one dedicated thread; the event loop only moves chunks.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import random
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from llmship.backends.base import Backend, BackendInfo, Chunk, GenerationRequest
from llmship.errors import ContextLengthError, InvalidRequestError, LlmshipError, NotReadyError
from llmship.release.spec import ReleaseSpec

log = logging.getLogger(__name__)

_DONE = object()


def default_threads() -> int:
    """Threads of a release that sets no ``runtime.n_threads``: half the logical cores
    (about the physical ones, and llama-cpp-python's own default), at least one. All
    of them would make several model servers on one machine (``llmship up`` runs stable
    and a candidate, ``llmship loadtest --release`` one more) fight over every core,
    and llama.cpp's threads wait by spinning: answers then stall for seconds."""
    return max(1, (os.cpu_count() or 1) // 2)


def with_threads(spec: ReleaseSpec, threads: int | None) -> ReleaseSpec:
    """``spec`` with ``runtime.n_threads`` set to ``threads`` (the ``n_threads`` setting,
    ``llmship serve --threads``); as it is when ``threads`` is None or the backend is
    not llama.cpp."""
    if threads is None or spec.backend != "llamacpp":
        return spec
    runtime = spec.runtime.model_copy(update={"n_threads": threads})
    return spec.model_copy(update={"runtime": runtime})


def threads_of(spec: ReleaseSpec) -> int:
    """The threads llama.cpp runs ``spec`` with."""
    return spec.runtime.n_threads or default_threads()


class _Cancelled(Exception):
    """The consumer went away; stop generating."""


class LlamaCppBackend(Backend):
    """A GGUF file loaded with llama-cpp-python; chat template from the GGUF metadata."""

    max_concurrency = 1

    def __init__(self, spec: ReleaseSpec, weights: Path):
        self.spec = spec
        self.weights = weights
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        self._llm: Any = None
        self._formatter: Any = None
        self._eos: int | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        runtime = self.spec.runtime
        try:
            llm = Llama(
                model_path=str(self.weights),
                n_ctx=runtime.n_ctx,
                n_threads=threads_of(self.spec),
                n_batch=runtime.n_batch,
                n_gpu_layers=runtime.n_gpu_layers,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise LlmshipError(
                f"{self.spec.ref}: llama.cpp cannot load {self.weights}: {exc}"
            ) from exc
        template = llm.metadata.get("tokenizer.chat_template")
        eos = llm.token_eos()
        if template:
            bos = llm.token_bos()
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
                bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            )
        self._eos = eos
        self._llm = llm
        log.info(
            "loaded %s from %s (n_ctx=%d, n_threads=%d)",
            self.spec.ref,
            self.weights,
            runtime.n_ctx,
            threads_of(self.spec),
        )

    async def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, llm.close)
        self._executor.shutdown(wait=False)

    def info(self) -> BackendInfo:
        return BackendInfo(
            kind="llamacpp",
            model=self.weights.name,
            context_length=self.spec.runtime.n_ctx,
            details={"chat_template": self._formatter is not None},
        )

    async def health(self) -> bool:
        return self._llm is not None

    # -- generation ------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        if self._llm is None:
            raise NotReadyError(f"{self.spec.ref} is still loading")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        future = loop.run_in_executor(self._executor, self._run, request, emit, cancel)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, Chunk)
                yield item
        finally:
            cancel.set()
            if future.done() and not future.cancelled():
                future.exception()  # consumed: errors were already forwarded

    def _run(
        self, request: GenerationRequest, emit: Callable[[object], None], cancel: threading.Event
    ) -> None:
        try:
            self._generate(request, emit, cancel)
        except _Cancelled:
            pass
        except LlmshipError as exc:
            emit(exc)
        except Exception as exc:
            log.exception("generation failed for %s", self.spec.ref)
            emit(
                LlmshipError(
                    f"{self.spec.ref}: generation failed ({type(exc).__name__}); "
                    "the model server's log has the details"
                )
            )
        emit(_DONE)

    def _prompt_tokens(self, request: GenerationRequest) -> tuple[list[int], list[str]]:
        llm = self._llm
        if request.messages is not None:
            if self._formatter is None:
                raise InvalidRequestError(
                    f"{self.spec.ref}: the model has no chat template; use /v1/completions",
                    param="messages",
                )
            result = self._format(request)
            tokens = llm.tokenize(
                result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
            )
            stops = result.stop if isinstance(result.stop, list) else [result.stop]
            return list(tokens), [s for s in stops if s]
        return list(llm.tokenize((request.prompt or "").encode("utf-8"), add_bos=True)), []

    def _format(self, request: GenerationRequest) -> Any:
        """The chat template applied to the request's messages. A template that refuses
        them (``raise_exception``: roles out of order, a role it does not know) is the
        request's fault: 400 with the template's own message."""
        from jinja2 import TemplateError

        assert request.messages is not None
        try:
            return self._formatter(
                messages=[{"role": m.role, "content": m.content} for m in request.messages]
            )
        except (TemplateError, ValueError) as exc:  # raise_exception() raises ValueError
            raise InvalidRequestError(
                f"{self.spec.ref}: the model's chat template refuses these messages: {exc}; "
                "change the roles or their order",
                param="messages",
            ) from exc

    def _generate(
        self, request: GenerationRequest, emit: Callable[[object], None], cancel: threading.Event
    ) -> None:
        import llama_cpp

        llm = self._llm
        prompt, template_stops = self._prompt_tokens(request)
        n_ctx = self.spec.runtime.n_ctx
        if len(prompt) >= n_ctx:
            raise ContextLengthError(
                f"the prompt is {len(prompt)} tokens but {self.spec.ref} has a context window of "
                f"{n_ctx} tokens; shorten the prompt",
                param="messages" if request.messages is not None else "prompt",
            )
        max_tokens = min(request.max_tokens, n_ctx - len(prompt))
        stops = [s for s in (*request.stop, *template_stops) if s]
        # llama.cpp seeds are 32-bit; a 64-bit request seed is folded into that range.
        seed = request.seed & 0xFFFFFFFF if request.seed is not None else None
        llm.set_seed(seed if seed is not None else random.randrange(2**31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = llm._model.vocab
        pending = ""  # text held back: it may be the start of a stop string
        held_tokens = 0
        finish = "length"
        tokens = llm.generate(
            prompt,
            top_k=request.top_k,
            top_p=request.top_p,
            temp=request.temperature,
            repeat_penalty=request.repeat_penalty,
            frequency_penalty=request.frequency_penalty,
            presence_penalty=request.presence_penalty,
        )
        for generated, token in enumerate(tokens, start=1):
            if cancel.is_set():
                raise _Cancelled
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            held_tokens += 1
            pending += decoder.decode(llm.detokenize([token]))
            if stops:
                cut = _find_stop(pending, stops)
                if cut is not None:
                    pending = pending[:cut]
                    finish = "stop"
                    break
                keep = _stop_prefix_len(pending, stops)
                ready, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
            else:
                ready, pending = pending, ""
            if ready:
                emit(Chunk(text=ready, tokens=held_tokens))
                held_tokens = 0
            if generated >= max_tokens:
                break
        buffered, _ = decoder.getstate()
        if not buffered:  # a character cut off by max_tokens is dropped, not mangled
            pending += decoder.decode(b"", final=True)
        emit(
            Chunk(text=pending, tokens=held_tokens, finish_reason=finish, prompt_tokens=len(prompt))
        )


def _find_stop(text: str, stops: list[str]) -> int | None:
    positions = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(positions) if positions else None


def _stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
