"""Eval and load-generator overhead: what ``llmship eval`` and ``llmship loadtest`` cost
on top of the model.

1. **The eval runner against the backend called directly**, same run, same cases
   (``--dataset``, default ``evals/smoke.jsonl``), same parameters (temperature 0,
   seed 0, ``--max-tokens``). Two releases of the bundled SmolLM2 model that differ
   only in their system prompt (so the runner generates both: an A/A pair would be
   generated once) are registered in a temporary ``LLMSHIP_HOME``; the output cache
   is off (nothing read, nothing written). Variants alternate, rep by rep, in a
   rotating order:

   * **runner**: ``llmship.eval.runner.run_eval(...)`` in this process: baseline and
     candidate generation (each backend loaded, used, closed), scoring, corpus
     metrics, paired bootstrap (1000 resamples) and the gate decision;
   * **raw**: the same backend (``llmship.backends.create_backend(spec)``) started,
     streamed (``backend.stream(generation_request(spec, case messages))``) case by
     case for each release, and closed: the work any harness must do;
   * **cli** (with ``--cli``): ``python -m llmship eval --no-cache`` as a
     subprocess, the way CI runs it (adds interpreter start, imports, the registry,
     the Rich table and the stored run).

   Overhead = runner time / raw time - 1 within each rep, median over reps
   (target < 10%); cases/s = cases x 2 releases / wall time. The runner's own
   ``timing`` splits generation from scoring and statistics.

   On a shared machine the model's speed swings from one run to the next by more
   than the overhead being measured, so the runner also gets its backends through a
   timing wrapper (``run_eval(backend_factory=...)``) that adds up the time spent
   inside the backend (weights check, load, every wait for the next chunk, close).
   The time outside it is what the runner itself costs; the raw side is timed the
   same way, and (runner outside - raw outside) / raw inside is an estimate of the
   overhead that the model's speed does not disturb (same target). Every variant runs the
   model with ``--threads`` llama.cpp threads (default 1: on a shared 2-core machine
   two threads stall whenever another process takes a core, which makes one run
   several times slower than the next).

2. **The load generator's CPU cost**: ``llmship loadtest --json`` (Locust, headless, in
   its own process) for ``--loadtest-seconds`` against an instant fake upstream
   (``gateway_overhead.py _upstream``, answers a 32-token stream at once: the
   generator's maximum rate) and against the real model server (``llmship serve``,
   one user). The report's ``generator_cpu_per_request_s`` and ``generator_cpu_share``
   are quoted (targets: against the model, under 0.25 of a core; against the
   instant upstream, one core drives at least 10x the model server's request rate).

    .venv/bin/python benchmarks/eval_overhead.py [--reps 3] [--max-tokens 64]
        [--threads 1] [--dataset evals/smoke.jsonl] [--loadtest-seconds 10]
        [--cli] [--skip-eval] [--skip-loadtest] [--json results.json]

Exit status 0 whatever the verdict (this is a report), 1 when something broke.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    BenchmarkError,
    Proc,
    environment,
    exit_on_sigterm,
    free_port,
    median,
    percentile,
    start_upstream,
    verdict,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET = ROOT / "evals" / "smoke.jsonl"

TARGET_EVAL_OVERHEAD = 0.10  # runner time / raw backend time - 1, below
TARGET_GENERATOR_SHARE = 0.25  # share of one core against the real model, below
TARGET_GENERATOR_HEADROOM = 10.0  # generator's max req/s per core / model req/s, at least

CANDIDATE_SYSTEM = "You are a helpful assistant."
BASELINE_SYSTEM = "You are a helpful assistant. Answer briefly."


# -- 1. eval runner vs the raw backend ----------------------------------------------


@dataclass
class EvalRun:
    """One variant's run over every case of both releases."""

    variant: str  # runner, raw or cli
    rep: int
    wall_s: float
    generation_s: float = math.nan  # runner: report timing; raw: stream time only
    scoring_s: float = math.nan  # runner: scoring, metrics, bootstrap, gate
    load_s: float = math.nan  # raw: backend create + start + close
    backend_s: float = math.nan  # time inside the backend: create, start, stream, close
    completion_tokens: int = 0
    texts: list[str] = field(default_factory=list)

    @property
    def own_s(self) -> float:
        """Wall time outside the backend: what the harness itself costs."""
        return self.wall_s - self.backend_s


class TimedBackend:
    """Wraps a backend and adds the time spent inside it (create, start, every wait for
    the next chunk, close) to ``timer["backend_s"]``; delegates everything else."""

    def __init__(self, inner: Any, timer: dict[str, float]):
        self.inner = inner
        self.timer = timer
        self.max_concurrency = inner.max_concurrency

    async def start(self) -> None:
        began = time.perf_counter()
        try:
            await self.inner.start()
        finally:
            self.timer["backend_s"] += time.perf_counter() - began

    async def close(self) -> None:
        began = time.perf_counter()
        try:
            await self.inner.close()
        finally:
            self.timer["backend_s"] += time.perf_counter() - began

    def info(self) -> Any:
        return self.inner.info()

    async def health(self) -> bool:
        return bool(await self.inner.health())

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        chunks = self.inner.stream(request)
        try:
            while True:
                began = time.perf_counter()
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    self.timer["backend_s"] += time.perf_counter() - began
                yield chunk
        finally:
            await chunks.aclose()


def timed_factory(timer: dict[str, float]) -> Any:
    """``create_backend`` whose backends count their time in ``timer``."""
    from llmship.backends import create_backend

    def factory(spec: Any) -> Any:
        began = time.perf_counter()
        backend = create_backend(spec)  # checks the weights' sha256 first
        timer["backend_s"] += time.perf_counter() - began
        return TimedBackend(backend, timer)

    return factory


class EvalBench:
    """The releases, the dataset and the three ways to run them."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        from llmship.eval.dataset import load_dataset
        from llmship.registry import Registry
        from llmship.release.bundled import bundled_spec
        from llmship.release.spec import parse_spec

        self.args = args
        self.workdir = workdir
        self.home = workdir / "home"
        self.home.mkdir(parents=True)
        self.dataset = load_dataset(args.dataset)
        self.registry = Registry.open(f"sqlite:///{self.home / 'registry.db'}", home=self.home)
        records = {}
        for label, version, system in (
            ("baseline", "1.0.0-base", BASELINE_SYSTEM),
            ("candidate", "1.0.0-cand", CANDIDATE_SYSTEM),
        ):
            data = bundled_spec().to_dict()
            data["version"] = version
            data["prompt"] = {**data.get("prompt", {}), "system": system}
            data["runtime"] |= {"n_threads": args.threads, "n_ctx": 2048, "n_batch": 512}
            records[label], _ = self.registry.register(parse_spec(data), actor="bench")
        self.releases = records
        if records["baseline"].digest == records["candidate"].digest:
            raise BenchmarkError("the two releases have one digest: the runner would share")

    def options(self) -> Any:
        from llmship.eval.generation import EvalOptions

        return EvalOptions(
            temperature=0.0,
            seed=0,
            max_tokens=self.args.max_tokens,
            cache_read=False,
            cache_write=False,
        )

    def runner(self, rep: int) -> EvalRun:
        from llmship.eval.cache import OutputCache
        from llmship.eval.config import EvalGateConfig, GateConfig
        from llmship.eval.runner import run_eval

        gate = GateConfig(gate=EvalGateConfig(), source="default", configured=False)
        cache = OutputCache(self.registry, read=False, write=False)
        timer = {"backend_s": 0.0}
        began = time.perf_counter()
        outcome = run_eval(
            self.dataset,
            self.releases["candidate"],
            self.releases["baseline"],
            gate,
            cache,
            options=self.options(),
            backend_factory=timed_factory(timer),
        )
        wall = time.perf_counter() - began
        report = outcome.report
        generated = report.generation.generated
        if generated != 2 * len(self.dataset.cases):
            raise BenchmarkError(f"the runner generated {generated} outputs, not all of them")
        return EvalRun(
            "runner",
            rep,
            wall,
            generation_s=report.timing.generation_s,
            scoring_s=report.timing.scoring_s,
            backend_s=timer["backend_s"],
            completion_tokens=sum(
                c.baseline.completion_tokens + c.candidate.completion_tokens for c in report.cases
            ),
            texts=[c.baseline.output for c in report.cases]
            + [c.candidate.output for c in report.cases],
        )

    def raw(self, rep: int) -> EvalRun:
        from llmship.backends import create_backend
        from llmship.backends.prompting import generation_request

        overrides = self.options().overrides()

        async def run() -> EvalRun:
            result = EvalRun("raw", rep, 0.0, generation_s=0.0, load_s=0.0)
            began = time.perf_counter()
            for label in ("baseline", "candidate"):  # the runner's order
                spec = self.releases[label].spec
                t0 = time.perf_counter()
                backend = create_backend(spec)
                await backend.start()
                result.load_s += time.perf_counter() - t0
                try:
                    for case in self.dataset.cases:
                        chat = [(m["role"], m["content"]) for m in case.prompt_messages()]
                        request = generation_request(spec, chat, **overrides)
                        t1 = time.perf_counter()
                        parts = []
                        async for chunk in backend.stream(request):
                            parts.append(chunk.text)
                            result.completion_tokens += chunk.tokens
                        result.generation_s += time.perf_counter() - t1
                        result.texts.append("".join(parts))
                finally:
                    t2 = time.perf_counter()
                    await backend.close()
                    result.load_s += time.perf_counter() - t2
            result.wall_s = time.perf_counter() - began
            result.backend_s = result.load_s + result.generation_s
            return result

        return asyncio.run(run())

    def cli(self, rep: int) -> EvalRun:
        ref = {k: r.ref for k, r in self.releases.items()}
        out = self.workdir / "cli-report.json"
        command = [
            sys.executable, "-m", "llmship", "eval", "--dataset", str(self.dataset.path),
            "--candidate", ref["candidate"], "--baseline", ref["baseline"], "--no-cache",
            "--seed", "0", "--temperature", "0", "--max-tokens", str(self.args.max_tokens),
            "--json", str(out),
        ]  # fmt: skip
        env = {**os.environ, "LLMSHIP_HOME": str(self.home), "NO_COLOR": "1"}
        env.pop("LLMSHIP_CONFIG", None)
        began = time.perf_counter()
        done = subprocess.run(
            command, cwd=self.workdir, env=env, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - began
        if done.returncode not in (0, 1):  # 1: the gate failed, which is not our business
            raise BenchmarkError(
                f"llmship eval exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        timing = json.loads(out.read_text())["timing"]
        return EvalRun(
            "cli",
            rep,
            wall,
            generation_s=timing["generation_s"],
            scoring_s=timing["scoring_s"],
        )

    def close(self) -> None:
        self.registry.close()


def bench_eval(args: argparse.Namespace, workdir: Path) -> tuple[list[EvalRun], int]:
    """Every variant, rep by rep; returns the runs and the number of cases."""
    bench = EvalBench(args, workdir)
    variants = ["runner", "raw"] + (["cli"] if args.cli else [])
    runs: list[EvalRun] = []
    n = len(bench.dataset.cases)
    print(
        f"dataset {args.dataset} ({n} cases x 2 releases), max_tokens {args.max_tokens}, "
        f"n_threads {args.threads}"
    )
    try:
        bench.raw(-1)  # warm-up: page the model in, import everything
        bench.runner(-1)
        for rep in range(args.reps):
            order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
            for variant in order:
                run = getattr(bench, variant)(rep)
                runs.append(run)
                extra = ""
                if variant == "runner":
                    extra = f"(generation {run.generation_s:.2f} s, scoring {run.scoring_s:.3f} s)"
                elif variant == "raw":
                    extra = f"(streaming {run.generation_s:.2f} s, load/close {run.load_s:.2f} s)"
                print(
                    f"  rep {rep + 1}/{args.reps} {variant:6s} {run.wall_s:6.2f} s  "
                    f"{2 * n / run.wall_s:5.2f} cases/s {extra}",
                    flush=True,
                )
    finally:
        bench.close()
    return runs, n


@dataclass
class EvalSummary:
    cases: int
    wall_s: dict[str, float]
    cases_per_s: dict[str, float]
    overhead: float  # runner / raw - 1, median over reps
    overhead_p10: float
    overhead_p90: float
    cli_overhead: float | None  # cli / raw - 1, median over reps
    cli_outside_runner_s: float | None  # cli wall - the report's total_s: start, imports, I/O
    own_overhead: float  # (runner own time - raw own time) / raw backend time, median
    own_overhead_p10: float
    own_overhead_p90: float
    runner_own_s: float  # runner wall time outside the backend
    raw_own_s: float
    backend_s: dict[str, float]  # time inside the backend, per variant
    runner_generation_s: float
    runner_scoring_s: float
    raw_generation_s: float
    raw_load_s: float
    tokens: dict[str, float]
    text_mismatches: int


def summarize_eval(runs: list[EvalRun], cases: int) -> EvalSummary:
    by = {(r.variant, r.rep): r for r in runs}
    reps = sorted({r.rep for r in runs})
    variants = list(dict.fromkeys(r.variant for r in runs))

    def of(variant: str, fn: Any) -> float:
        return median([fn(r) for r in runs if r.variant == variant])

    overheads = [by[("runner", k)].wall_s / by[("raw", k)].wall_s - 1 for k in reps]
    own = [
        (by[("runner", k)].own_s - by[("raw", k)].own_s) / by[("raw", k)].backend_s for k in reps
    ]
    cli = [by[("cli", k)].wall_s / by[("raw", k)].wall_s - 1 for k in reps if ("cli", k) in by]
    mismatches = sum(
        a != b
        for k in reps
        for a, b in zip(by[("runner", k)].texts, by[("raw", k)].texts, strict=True)
    )
    return EvalSummary(
        cases=cases,
        wall_s={v: of(v, lambda r: r.wall_s) for v in variants},
        cases_per_s={v: of(v, lambda r: 2 * cases / r.wall_s) for v in variants},
        overhead=median(overheads),
        overhead_p10=percentile(overheads, 0.1),
        overhead_p90=percentile(overheads, 0.9),
        cli_overhead=median(cli) if cli else None,
        cli_outside_runner_s=(
            of("cli", lambda r: r.wall_s - r.generation_s - r.scoring_s) if cli else None
        ),
        own_overhead=median(own),
        own_overhead_p10=percentile(own, 0.1),
        own_overhead_p90=percentile(own, 0.9),
        runner_own_s=of("runner", lambda r: r.own_s),
        raw_own_s=of("raw", lambda r: r.own_s),
        backend_s={v: of(v, lambda r: r.backend_s) for v in ("runner", "raw")},
        runner_generation_s=of("runner", lambda r: r.generation_s),
        runner_scoring_s=of("runner", lambda r: r.scoring_s),
        raw_generation_s=of("raw", lambda r: r.generation_s),
        raw_load_s=of("raw", lambda r: r.load_s),
        tokens={v: of(v, lambda r: r.completion_tokens) for v in ("runner", "raw")},
        text_mismatches=mismatches,
    )


# -- 2. the load generator's CPU ------------------------------------------------------


@dataclass
class LoadtestRun:
    target: str  # "instant upstream" or "model server"
    users: int
    requests: int
    throughput: float  # successful requests/s
    tokens_per_s: float
    errors: int
    cpu_ms_per_request: float
    cpu_share: float  # of one core
    ttft_p50_ms: float | None


def loadtest(
    url: str, target: str, args: argparse.Namespace, workdir: Path, *, users: int
) -> LoadtestRun:
    out = workdir / f"loadtest-{target.replace(' ', '-')}.json"
    command = [
        sys.executable, "-m", "llmship", "loadtest", "--target", url, "--users", str(users),
        "--duration", f"{args.loadtest_seconds:g}s", "--warmup", "2s",
        "--max-tokens", str(args.loadtest_max_tokens), "--no-record", "--json", str(out),
    ]  # fmt: skip
    env = {**os.environ, "LLMSHIP_HOME": str(workdir / "home"), "NO_COLOR": "1"}
    env.pop("LLMSHIP_CONFIG", None)
    done = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode not in (0, 1) or not out.exists():
        raise BenchmarkError(
            f"llmship loadtest exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    report = json.loads(out.read_text())
    results = report["results"]
    ttft = results.get("ttft") or {}
    return LoadtestRun(
        target=target,
        users=users,
        requests=int(results["requests"]),
        throughput=float(results["throughput"]),
        tokens_per_s=float(results["tokens_per_second"]),
        errors=int(results["errors"]),
        cpu_ms_per_request=float(report["generator_cpu_per_request_s"]) * 1000,
        cpu_share=float(report["generator_cpu_share"]),
        ttft_p50_ms=ttft["p50"] * 1000 if ttft.get("p50") is not None else None,
    )


def bench_loadtest(args: argparse.Namespace, workdir: Path) -> list[LoadtestRun]:
    import yaml

    from llmship.release.bundled import bundled_spec

    (workdir / "home").mkdir(parents=True, exist_ok=True)
    runs = []
    upstream, url = start_upstream(workdir, tokens=32)
    try:
        run = loadtest(url, "instant upstream", args, workdir, users=args.loadtest_users)
        runs.append(run)
        print(_loadtest_line(run), flush=True)
    finally:
        upstream.stop()

    data = bundled_spec().to_dict()
    data["runtime"] |= {"n_threads": args.threads}
    spec_path = workdir / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    port = free_port()
    command = [
        sys.executable, "-m", "llmship", "serve", "--spec", str(spec_path),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    server = Proc(
        "llmship serve", command, workdir / "serve.log", env={"LLMSHIP_HOME": str(workdir / "home")}
    )
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_http(f"{url}/readyz")
        run = loadtest(url, "model server", args, workdir, users=1)
        runs.append(run)
        print(_loadtest_line(run), flush=True)
    finally:
        server.stop()
    return runs


def _loadtest_line(run: LoadtestRun) -> str:
    return (
        f"  {run.target:16s} users {run.users}: {run.requests} requests, "
        f"{run.throughput:7.1f} req/s, {run.errors} errors, generator "
        f"{run.cpu_ms_per_request:6.2f} CPU ms/request, {run.cpu_share:.2f} of a core"
    )


# -- report -----------------------------------------------------------------------


def report(
    summary: EvalSummary | None, runs: list[LoadtestRun], args: argparse.Namespace
) -> dict[str, bool]:
    verdicts: dict[str, bool] = {}
    if summary is not None:
        print()
        print(f"1. eval runner vs raw backend, medians over {args.reps} reps")
        print(f"  {'variant':8s} {'wall s':>8s} {'cases/s':>8s}")
        for variant, wall in summary.wall_s.items():
            print(f"  {variant:8s} {wall:8.2f} {summary.cases_per_s[variant]:8.2f}")
        print(
            f"  runner: generation {summary.runner_generation_s:.2f} s, "
            f"scoring + statistics + gate {summary.runner_scoring_s * 1000:.0f} ms; "
            f"raw: streaming {summary.raw_generation_s:.2f} s, "
            f"backend load/close {summary.raw_load_s:.2f} s"
        )
        print(
            f"  time inside the backend (model load, generation, close): runner "
            f"{summary.backend_s['runner']:.2f} s, raw {summary.backend_s['raw']:.2f} s; "
            f"outside it: runner {summary.runner_own_s:.3f} s, raw {summary.raw_own_s:.3f} s"
        )
        ok = summary.overhead < TARGET_EVAL_OVERHEAD
        verdicts["eval_overhead_wall"] = ok
        print(
            f"runner / raw wall time - 1: {summary.overhead * 100:+.1f}% "
            f"(p10 {summary.overhead_p10 * 100:+.1f}%, p90 {summary.overhead_p90 * 100:+.1f}%;"
            f" target < {TARGET_EVAL_OVERHEAD * 100:g}%): {verdict(ok)}"
        )
        ok = summary.own_overhead < TARGET_EVAL_OVERHEAD
        verdicts["eval_overhead_own"] = ok
        print(
            f"runner's own time over the backend's (noise-free estimate): "
            f"{summary.own_overhead * 100:+.2f}% (p10 {summary.own_overhead_p10 * 100:+.2f}%, "
            f"p90 {summary.own_overhead_p90 * 100:+.2f}%; target < "
            f"{TARGET_EVAL_OVERHEAD * 100:g}%): {verdict(ok)}"
        )
        if summary.cli_overhead is not None:
            print(
                f"`llmship eval` CLI (subprocess) / raw wall time - 1: "
                f"{summary.cli_overhead * 100:+.1f}% (reported, no target); outside the "
                f"runner (start, imports, registry, reports): {summary.cli_outside_runner_s:.2f} s"
            )
        tokens = summary.tokens
        same = "identical" if not summary.text_mismatches else "DIFFERENT"
        print(
            f"texts runner vs raw: {same} ({summary.text_mismatches} differ); completion "
            f"tokens runner {tokens['runner']:.0f}, raw {tokens['raw']:.0f}"
        )
    if runs:
        print()
        print(f"2. load generator (llmship loadtest, Locust) over {args.loadtest_seconds:g} s")
        for run in runs:
            print(_loadtest_line(run))
        by = {r.target: r for r in runs}
        model, instant = by.get("model server"), by.get("instant upstream")
        if model is not None:
            ok = model.cpu_share < TARGET_GENERATOR_SHARE
            verdicts["generator_share"] = ok
            print(
                f"generator against the model server: {model.cpu_share:.3f} of a core "
                f"(target < {TARGET_GENERATOR_SHARE}): {verdict(ok)}"
            )
        if model is not None and instant is not None:
            capacity = 1000 / instant.cpu_ms_per_request
            headroom = capacity / model.throughput
            ok = headroom >= TARGET_GENERATOR_HEADROOM
            verdicts["generator_headroom"] = ok
            print(
                f"generator capacity {capacity:.0f} req/s per core (instant upstream) vs "
                f"the model server's {model.throughput:.2f} req/s: x{headroom:.0f} "
                f"(target >= {TARGET_GENERATOR_HEADROOM:g}x): {verdict(ok)}"
            )
    return verdicts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure what `llmship eval` and `llmship loadtest` cost on top of the model."
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--max-tokens", type=int, default=64, help="max_tokens of every case (default 64)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="n_threads of the model (default 1: on a shared 2-core machine two llama.cpp "
        "threads stall whenever another process takes a core)",
    )
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument(
        "--cli", action="store_true", help="also run `llmship eval` as a subprocess each rep"
    )
    parser.add_argument("--loadtest-seconds", type=float, default=10.0)
    parser.add_argument(
        "--loadtest-users", type=int, default=4, help="users against the instant upstream (4)"
    )
    parser.add_argument("--loadtest-max-tokens", type=int, default=32)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--skip-loadtest", action="store_true")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.max_tokens < 1 or args.threads < 1:
        parser.error("--reps, --max-tokens and --threads must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from llmship.errors import LlmshipError

    args = parse_args(argv)
    exit_on_sigterm()
    runs: list[EvalRun] = []
    summary = None
    loadtests: list[LoadtestRun] = []
    try:
        with tempfile.TemporaryDirectory(prefix="llmship-eval-bench-") as tmp:
            if not args.skip_eval:
                print("1. eval runner vs the raw backend")
                runs, cases = bench_eval(args, Path(tmp) / "eval")
                summary = summarize_eval(runs, cases)
            if not args.skip_loadtest:
                print("2. load generator CPU")
                loadtests = bench_loadtest(args, Path(tmp) / "loadtest")
    except (BenchmarkError, LlmshipError, OSError) as exc:
        print(f"benchmark failed: {exc}")
        return 1
    verdicts = report(summary, loadtests, args)
    if args.json:
        payload = {
            "benchmark": "eval_overhead",
            "environment": environment(
                ("llmship", "llama-cpp-python", "locust"), load_average=os.getloadavg()
            ),
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "targets": {
                "eval_overhead_max": TARGET_EVAL_OVERHEAD,
                "generator_share_max": TARGET_GENERATOR_SHARE,
                "generator_headroom_min": TARGET_GENERATOR_HEADROOM,
            },
            "verdicts": verdicts,
            "eval": asdict(summary) if summary else None,
            "eval_runs": [asdict(r) | {"texts": None} for r in runs],
            "loadtest": [asdict(r) for r in loadtests],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
