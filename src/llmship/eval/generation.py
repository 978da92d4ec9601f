"""Generating the answers of an eval: each release through its own backend, with its own
prompt and parameters, the answers cached in the registry.

Outputs come from the cache (:mod:`llmship.eval.cache`) when they can; the rest
are generated in-process (``llmship.backends``) with each release's prompt
applied as the model server applies it (:mod:`llmship.backends.prompting`), at
the run's temperature and seed. An ``openai`` backend gets up to
``concurrency`` requests at once, a ``llamacpp`` backend one at a time. Within
a run an output two releases share (an A/A run) is generated once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from llmship.backends.base import Backend, GenerationRequest
from llmship.backends.prompting import generation_request, sampling_params
from llmship.errors import LlmshipError
from llmship.eval import stats
from llmship.eval.cache import CachedOutput, OutputCache, output_key
from llmship.eval.dataset import Case
from llmship.registry.records import ReleaseRecord
from llmship.release.spec import ReleaseSpec

__all__ = [
    "BackendFactory",
    "CaseOutput",
    "EvalOptions",
    "GenerationStats",
    "ProgressSink",
    "ReleaseJudge",
    "generate",
]

log = logging.getLogger(__name__)

BackendFactory = Callable[[ReleaseSpec], Backend]


class ProgressSink(Protocol):
    """Where generation progress goes (the CLI draws a Rich progress bar)."""

    def start(self, label: str, total: int, done: int) -> None:
        """``label`` will generate ``total`` outputs; ``done`` of them were cached."""

    def advance(self, label: str) -> None:
        """One more output of ``label`` is done."""


@dataclass(frozen=True)
class EvalOptions:
    """How outputs are generated and compared."""

    temperature: float = 0.0
    seed: int = 0
    """The generation seed sent with every request."""
    max_tokens: int | None = None
    """None: each release's own ``params.max_tokens``."""
    concurrency: int = 4
    """Requests at once to an ``openai`` backend (``llamacpp`` generates one at a time)."""
    timeout_s: float = 300.0
    """Longest one generation may take before the case counts as failed."""
    cache_read: bool = True
    cache_write: bool = True
    bootstrap_seed: int = stats.DEFAULT_SEED
    resamples: int = stats.DEFAULT_RESAMPLES
    judge_max_tokens: int = 128

    def overrides(self) -> dict[str, Any]:
        """The generation parameters that replace a release's own."""
        return {"temperature": self.temperature, "seed": self.seed, "max_tokens": self.max_tokens}


@dataclass(frozen=True)
class CaseOutput:
    """One release's output for one case."""

    text: str
    latency_s: float | None
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    """None when the backend did not report it (an upstream that streams no usage)."""
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached: bool = False
    error: str | None = None
    """Why nothing was generated (the case then fails)."""

    @classmethod
    def from_cached(cls, cached: CachedOutput, *, hit: bool) -> CaseOutput:
        return cls(
            text=cached.text,
            latency_s=cached.latency_s,
            ttft_s=cached.ttft_s,
            prompt_tokens=cached.prompt_tokens,
            completion_tokens=cached.completion_tokens,
            finish_reason=cached.finish_reason,
            cached=hit,
        )


@dataclass
class GenerationStats:
    """What generating took, per release."""

    generated: int = 0
    cached: int = 0
    """Found in the registry's output cache."""
    shared: int = 0
    """Generated earlier in this run for another release of the same content (A/A)."""
    errors: int = 0
    seconds: float = 0.0


# -- generation -----------------------------------------------------------------------


@dataclass
class _Job:
    key: str
    case_index: int
    messages: list[dict[str, str]]


def _jobs(release: ReleaseRecord, cases: Sequence[Case], options: EvalOptions) -> list[_Job]:
    params = sampling_params(release.spec, **options.overrides())
    jobs = []
    for index, case in enumerate(cases):
        messages = case.prompt_messages()
        jobs.append(_Job(output_key(release.digest, messages, params), index, messages))
    return jobs


async def generate(
    releases: Sequence[tuple[str, ReleaseRecord]],
    cases: Sequence[Case],
    options: EvalOptions,
    cache: OutputCache,
    *,
    backend_factory: BackendFactory,
    progress: ProgressSink | None = None,
) -> tuple[dict[str, list[CaseOutput]], dict[str, GenerationStats]]:
    """Every output of every ``(label, release)`` for ``cases``, from the cache or generated.

    Each release's backend is started only when something is missing, and closed
    afterwards. Fresh outputs (not errors) are written to the cache as each
    release finishes. Returns the outputs (aligned with ``cases``) and the
    statistics, both by label.
    """
    plans = {label: _jobs(release, cases, options) for label, release in releases}
    cached = cache.get_many(job.key for jobs in plans.values() for job in jobs)
    done: dict[str, CaseOutput] = {
        k: CaseOutput.from_cached(v, hit=True) for k, v in cached.items()
    }
    results: dict[str, list[CaseOutput]] = {}
    counts: dict[str, GenerationStats] = {}
    for label, release in releases:
        jobs = plans[label]
        missing = list({job.key: job for job in jobs if job.key not in done}.values())
        hits = sum(1 for job in jobs if job.key in cached)
        counts[label] = count = GenerationStats(cached=hits, shared=len(jobs) - len(missing) - hits)
        if progress is not None:
            progress.start(label, len(jobs), len(jobs) - len(missing))
        if missing:
            began = time.perf_counter()
            fresh = await _generate_release(
                release, cases, missing, options, backend_factory, label, progress
            )
            count.seconds = time.perf_counter() - began
            done.update(fresh)
            count.generated = sum(1 for o in fresh.values() if o.error is None)
            count.errors = sum(1 for o in fresh.values() if o.error is not None)
            cache.put_many(
                (key, release.ref, _to_cached(output))
                for key, output in fresh.items()
                if output.error is None
            )
        results[label] = [replace(done[job.key], cached=job.key in cached) for job in jobs]
        if missing and all(o.error is not None for o in results[label]):
            first = next(o.error for o in results[label] if o.error)
            raise LlmshipError(f"{release.ref} generated nothing: every case failed ({first})")
    return results, counts


async def _generate_release(
    release: ReleaseRecord,
    cases: Sequence[Case],
    jobs: Sequence[_Job],
    options: EvalOptions,
    backend_factory: BackendFactory,
    label: str,
    progress: ProgressSink | None,
) -> dict[str, CaseOutput]:
    spec = release.spec
    backend = backend_factory(spec)
    log.info("loading %s to generate %d outputs", release.ref, len(jobs))
    await backend.start()
    try:
        limit = options.concurrency if spec.backend == "openai" else backend.max_concurrency
        gate = asyncio.Semaphore(max(1, limit))
        overrides = options.overrides()

        async def one(job: _Job) -> tuple[str, CaseOutput]:
            async with gate:
                output = await _generate_one(backend, spec, job.messages, overrides, options)
            if output.error is not None:
                log.warning("%s case %s: %s", release.ref, cases[job.case_index].id, output.error)
            if progress is not None:
                progress.advance(label)
            return job.key, output

        pairs = await asyncio.gather(*(one(job) for job in jobs))
    finally:
        await backend.close()
    return dict(pairs)


async def _generate_one(
    backend: Backend,
    spec: ReleaseSpec,
    messages: Sequence[dict[str, str]],
    overrides: dict[str, Any],
    options: EvalOptions,
) -> CaseOutput:
    began = time.perf_counter()
    try:
        request = generation_request(
            spec, [(m["role"], m["content"]) for m in messages], **overrides
        )
        return await asyncio.wait_for(_stream(backend, request, began), options.timeout_s)
    except asyncio.TimeoutError:
        return CaseOutput(
            text="",
            latency_s=time.perf_counter() - began,
            error=f"no answer within {options.timeout_s:g}s",
        )
    except LlmshipError as exc:
        return CaseOutput(text="", latency_s=time.perf_counter() - began, error=exc.message)


async def _stream(backend: Backend, request: GenerationRequest, began: float) -> CaseOutput:
    parts: list[str] = []
    ttft: float | None = None
    prompt_tokens: int | None = None
    completion_tokens = 0
    finish: str | None = None
    stream = backend.stream(request)
    try:
        async for chunk in stream:
            if chunk.text and ttft is None:
                ttft = time.perf_counter() - began
            parts.append(chunk.text)
            completion_tokens += chunk.tokens
            if chunk.prompt_tokens is not None:
                prompt_tokens = chunk.prompt_tokens
            if chunk.finish_reason:
                finish = chunk.finish_reason
    finally:
        await stream.aclose()
    return CaseOutput(
        text="".join(parts),
        latency_s=time.perf_counter() - began,
        ttft_s=ttft,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=finish,
    )


def _to_cached(output: CaseOutput) -> CachedOutput:
    return CachedOutput(
        text=output.text,
        latency_s=output.latency_s or 0.0,
        ttft_s=output.ttft_s,
        prompt_tokens=output.prompt_tokens,
        completion_tokens=output.completion_tokens,
        finish_reason=output.finish_reason,
    )


# -- the judge ------------------------------------------------------------------------


class ReleaseJudge:
    """A registered release used as an LLM judge (``llm_rubric``), its answers cached.

    Call it with a prompt, outside any running event loop; the backend is started
    on the first prompt that is not cached. Close it when done.
    """

    def __init__(
        self,
        release: ReleaseRecord,
        cache: OutputCache,
        options: EvalOptions,
        *,
        backend_factory: BackendFactory,
    ) -> None:
        self.release = release
        self.cache = cache
        self.options = replace(options, max_tokens=options.judge_max_tokens)
        self.backend_factory = backend_factory
        self.generated = 0
        self.cached = 0
        self._backend: Backend | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        params = sampling_params(self.release.spec, **self.options.overrides())
        key = output_key(self.release.digest, messages, params)
        hit = self.cache.get_many([key]).get(key)
        if hit is not None:
            self.cached += 1
            return hit.text
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        if self._backend is None:
            self._backend = self.backend_factory(self.release.spec)
            self._loop.run_until_complete(self._backend.start())
        output = self._loop.run_until_complete(
            _generate_one(
                self._backend, self.release.spec, messages, self.options.overrides(), self.options
            )
        )
        if output.error is not None:
            raise LlmshipError(f"the judge {self.release.ref} failed: {output.error}")
        self.generated += 1
        self.cache.put_many([(key, self.release.ref, _to_cached(output))])
        return output.text

    def close(self) -> None:
        """Stop the judge's backend, if it was started."""
        if self._loop is not None:
            if self._backend is not None:
                self._loop.run_until_complete(self._backend.close())
            self._loop.close()
        self._backend = None
        self._loop = None
