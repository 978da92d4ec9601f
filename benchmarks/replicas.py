"""Replicas: what balancing over a release's model servers costs at the gateway, and what
two one-thread model servers give against one two-thread server.

Everything runs in one go, as real processes on free local ports, with a temporary
``LLMSHIP_HOME`` (a SQLite registry):

(a) **Instant upstreams.** Four instant OpenAI-compatible upstreams
    (``gateway_overhead.py _upstream``) are the endpoints of one ``openai`` release; env
    ``r1`` has the first as its only replica, ``r2`` the first two, ``r4`` all four, and
    one ``llmship gateway`` per env runs in front. The load generator
    (``gateway_overhead.py _loadgen``) sends the same chat completion to each side in
    blocks that alternate round after round (direct to the first upstream, gateway r1,
    r2, r4; the order rotates each round):

    * concurrency 1: p50 per block; **added p50** = gateway rN - direct within each
      round, median over rounds (target: <= 0.5 ms for every N, what the gateway
      added before replicas; and balancing's own cost, rN - r1, is printed);
    * concurrency 16: requests/s per block; gateway rN / direct and rN / r1 within
      each round, median over rounds (reported).

(b) **The real model.** The bundled SmolLM2 release, temperature 0: env ``one`` has one
    ``llmship serve --threads 2``, env ``two`` has two ``llmship serve --threads 1``, each
    env with its own gateway. A block sends ``--requests`` streamed chat completions of
    ``--max-tokens`` tokens through one env's gateway, four at a time (closed loop, the
    same prompts in the same order for both envs); its **aggregate output tokens/s** is
    the sum of the completion tokens over the block's wall time. Blocks come in pairs
    (one of each env, the order flipped each pair); the ratio two / one per pair,
    median over ``--pairs`` pairs.

    .venv/bin/python benchmarks/replicas.py [--rounds 6] [--requests 300] [--seconds 2]
        [--pairs 4] [--model-requests 12] [--max-tokens 64] [--skip-instant]
        [--skip-model] [--json results.json]

Exit status 0 whatever the verdict (this is a report), 1 when something broke.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    PROMPTS,
    WARMUP_PROMPT,
    BenchmarkError,
    Proc,
    environment,
    exit_on_sigterm,
    free_port,
    median,
    start_upstream,
    stream_chat,
    verdict,
)
from gateway_overhead import MODEL_NAME, Block, LoadGen, run_blocks, start_gateway

TARGET_ADDED_P50_MS = 0.5  # gateway p50 - direct p50 at concurrency 1, with any replicas
REPLICAS = (1, 2, 4)
CONCURRENCY = 4  # (b)


def _registry(home: Path) -> Any:
    from llmship.registry import Registry

    return Registry.open(f"sqlite:///{home / 'registry.db'}", home=home)


# -- (a) instant upstreams ------------------------------------------------------------


@dataclass
class InstantSummary:
    rounds: int
    p50_ms: dict[str, float] = field(default_factory=dict)
    rps: dict[str, float] = field(default_factory=dict)
    added_p50_ms: dict[int, float] = field(default_factory=dict)
    balancing_p50_ms: dict[int, float] = field(default_factory=dict)
    """Added p50 with N replicas minus with one, per round, median."""
    rps_ratio: dict[int, float] = field(default_factory=dict)
    """Gateway rN / direct requests/s."""
    rps_vs_r1: dict[int, float] = field(default_factory=dict)


def bench_instant(args: argparse.Namespace, workdir: Path) -> tuple[InstantSummary, list[Block]]:
    from llmship.release.spec import parse_spec

    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    procs: dict[str, Proc] = {}
    gen: LoadGen | None = None
    try:
        urls = []
        for i in range(max(REPLICAS)):
            (workdir / f"u{i}").mkdir(parents=True, exist_ok=True)
            upstream, url = start_upstream(workdir / f"u{i}")
            procs[f"upstream{i}"] = upstream
            urls.append(url)
        spec = parse_spec(
            {
                "name": MODEL_NAME,
                "version": "1.0.0",
                "backend": "openai",
                "model": {"base_url": f"{urls[0]}/v1", "id": MODEL_NAME},
            }
        )
        with _registry(home) as registry:
            record, _ = registry.register(spec, actor="bench")
            for n in REPLICAS:
                registry.set_alias(f"r{n}", "production", record.ref, actor="bench", reason="-")
                for url in urls[:n]:
                    registry.register_endpoint(f"r{n}", record.ref, url, pid=None)
        path = "/v1/chat/completions"
        sides: dict[str, tuple[str, dict[str, str]]] = {"direct": (urls[0] + path, {})}
        for n in REPLICAS:
            gateway, gateway_url = start_gateway(workdir, home, f"r{n}", args.log_level)
            procs[f"r{n}"] = gateway
            sides[f"r{n}"] = (gateway_url + path, {})
        gen = LoadGen(workdir)
        procs["loadgen"] = gen.proc
        print(f"upstreams {', '.join(urls)}; gateways " + ", ".join(sides))
        print("concurrency 1 (sequential requests, one keep-alive connection):")
        requests_for = dict.fromkeys(sides, args.requests)
        c1 = run_blocks(
            gen, sides, procs, rounds=args.rounds, op={"op": "seq"}, requests_for=requests_for
        )
        print(f"concurrency 16 ({args.seconds:g} s blocks):")
        c16 = run_blocks(
            gen,
            sides,
            procs,
            rounds=args.rounds,
            op={"op": "conc", "c": 16, "seconds": args.seconds},
        )
        return summarize_instant(c1, c16, args.rounds), c1 + c16
    finally:
        if gen is not None:
            gen.stop()
        for name, proc in procs.items():
            if name != "loadgen":
                proc.stop()


def summarize_instant(c1: list[Block], c16: list[Block], rounds: int) -> InstantSummary:
    summary = InstantSummary(rounds=rounds)
    p50 = {(b.side, b.round): b.p50_ms for b in c1}
    rps = {(b.side, b.round): b.rps for b in c16}
    sides = list(dict.fromkeys(b.side for b in c1))
    for side in sides:
        summary.p50_ms[side] = median([p50[(side, r)] for r in range(rounds)])
        summary.rps[side] = median([rps[(side, r)] for r in range(rounds)])
    for n in REPLICAS:
        s = f"r{n}"
        summary.added_p50_ms[n] = median([p50[(s, r)] - p50[("direct", r)] for r in range(rounds)])
        summary.balancing_p50_ms[n] = median([p50[(s, r)] - p50[("r1", r)] for r in range(rounds)])
        summary.rps_ratio[n] = median([rps[(s, r)] / rps[("direct", r)] for r in range(rounds)])
        summary.rps_vs_r1[n] = median([rps[(s, r)] / rps[("r1", r)] for r in range(rounds)])
    return summary


# -- (b) the real model ---------------------------------------------------------------


@dataclass
class ModelBlock:
    env: str
    pair: int
    requests: int
    tokens: int
    elapsed_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s


@dataclass
class ModelSummary:
    pairs: int
    max_tokens: int
    requests: int
    tokens_per_s: dict[str, float] = field(default_factory=dict)
    ratio: float = float("nan")
    """Two one-thread servers over one two-thread server, per pair, median."""
    ratios: list[float] = field(default_factory=list)


def start_server(
    workdir: Path, home: Path, ref: str, env: str, threads: int, i: int, log_level: str
) -> tuple[Proc, str]:
    """``llmship serve --release ref --env env --threads threads`` (it announces itself)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "llmship", "serve", "--release", ref, "--env", env,
        "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads),
    ]  # fmt: skip
    proc = Proc(
        f"llmship serve ({env} #{i}, {threads} threads)",
        command,
        workdir / f"serve-{env}-{i}.log",
        env={"LLMSHIP_HOME": str(home), "LLMSHIP_LOG_LEVEL": log_level},
    )
    return proc, url


def model_block(
    client: Any, url: str, args: argparse.Namespace, procs: list[Proc]
) -> tuple[int, float]:
    """``--model-requests`` streams, four at a time: (completion tokens, seconds)."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.model_requests)]

    def one(prompt: str) -> int:
        s = stream_chat(client, url, prompt, max_tokens=args.max_tokens, seed=args.seed)
        return int(s.usage.get("completion_tokens", 0))

    for proc in procs:
        proc.check()
    began = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        tokens = sum(pool.map(one, prompts))
    return tokens, time.perf_counter() - began


def bench_model(args: argparse.Namespace, workdir: Path) -> tuple[ModelSummary, list[ModelBlock]]:
    import httpx

    from llmship.release.bundled import bundled_spec
    from llmship.release.spec import parse_spec

    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    data = bundled_spec().to_dict()
    data["version"] = "1.0.0-bench"
    data["runtime"] |= {"n_ctx": 2048, "n_batch": 512}
    with _registry(home) as registry:
        record, _ = registry.register(parse_spec(data), actor="bench")
        for env in ("one", "two"):
            registry.set_alias(env, "production", record.ref, actor="bench", reason="-")
    procs: list[Proc] = []
    blocks: list[ModelBlock] = []
    try:
        servers = [start_server(workdir, home, record.ref, "one", 2, 0, args.log_level)]
        servers += [
            start_server(workdir, home, record.ref, "two", 1, i, args.log_level) for i in range(2)
        ]
        procs += [proc for proc, _ in servers]
        for proc, url in servers:
            proc.wait_http(f"{url}/readyz")
        gateways = {}
        for env in ("one", "two"):
            gateway, gateway_url = start_gateway(workdir, home, env, args.log_level)
            procs.append(gateway)
            gateways[env] = gateway_url + "/v1/chat/completions"
        limits = httpx.Limits(max_connections=CONCURRENCY * 2)
        with httpx.Client(timeout=300, limits=limits) as client:
            for url in gateways.values():  # warm-up: both replicas of two get some
                for _ in range(CONCURRENCY):
                    stream_chat(client, url, WARMUP_PROMPT, max_tokens=8, seed=args.seed)
            print(
                f"{args.pairs} pairs of blocks of {args.model_requests} streams "
                f"({args.max_tokens} tokens), {CONCURRENCY} at a time"
            )
            for pair in range(args.pairs):
                order = ("one", "two") if pair % 2 == 0 else ("two", "one")
                got = {}
                for env in order:
                    tokens, elapsed = model_block(client, gateways[env], args, procs)
                    got[env] = ModelBlock(env, pair, args.model_requests, tokens, elapsed)
                    blocks.append(got[env])
                one, two = got["one"], got["two"]
                print(
                    f"  pair {pair + 1}/{args.pairs}: one server x 2 threads "
                    f"{one.tokens_per_s:6.1f} tok/s | two servers x 1 thread "
                    f"{two.tokens_per_s:6.1f} tok/s | x{two.tokens_per_s / one.tokens_per_s:.3f}",
                    flush=True,
                )
    finally:
        for proc in reversed(procs):
            proc.stop()
    summary = ModelSummary(args.pairs, args.max_tokens, args.model_requests)
    for env in ("one", "two"):
        summary.tokens_per_s[env] = median([b.tokens_per_s for b in blocks if b.env == env])
    by = {(b.env, b.pair): b for b in blocks}
    summary.ratios = [
        by[("two", p)].tokens_per_s / by[("one", p)].tokens_per_s for p in range(args.pairs)
    ]
    summary.ratio = median(summary.ratios)
    return summary, blocks


# -- the report -----------------------------------------------------------------------


def report(instant: InstantSummary | None, model: ModelSummary | None) -> dict[str, bool]:
    verdicts: dict[str, bool] = {}
    if instant is not None:
        print(f"\n(a) instant upstreams, medians over {instant.rounds} rounds")
        print(
            f"  direct: p50 c=1 {instant.p50_ms['direct']:.3f} ms, "
            f"c=16 {instant.rps['direct']:.0f} req/s"
        )
        for n in REPLICAS:
            added = instant.added_p50_ms[n]
            ok = added <= TARGET_ADDED_P50_MS
            verdicts[f"added_p50_r{n}"] = ok
            print(
                f"  gateway, {n} replica{'s' if n > 1 else ' '}: p50 c=1 "
                f"{instant.p50_ms[f'r{n}']:.3f} ms, added {added:+.3f} ms "
                f"(balancing vs 1 replica {instant.balancing_p50_ms[n]:+.3f} ms) "
                f"[{verdict(ok)}: <= {TARGET_ADDED_P50_MS} ms]; c=16 "
                f"{instant.rps[f'r{n}']:.0f} req/s, x{instant.rps_ratio[n]:.3f} of direct, "
                f"x{instant.rps_vs_r1[n]:.3f} of 1 replica"
            )
    if model is not None:
        print(
            f"\n(b) real model, {model.pairs} pairs of {model.requests} streams of "
            f"{model.max_tokens} tokens at concurrency {CONCURRENCY}"
        )
        print(
            f"  one server x 2 threads: {model.tokens_per_s['one']:.1f} tok/s; two servers "
            f"x 1 thread: {model.tokens_per_s['two']:.1f} tok/s; two / one per pair, "
            f"median x{model.ratio:.3f} (pairs: "
            + ", ".join(f"x{r:.3f}" for r in model.ratios)
            + ")"
        )
    return verdicts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="(a) rounds of blocks")
    parser.add_argument("--requests", type=int, default=300, help="(a) requests per c=1 block")
    parser.add_argument("--seconds", type=float, default=2.0, help="(a) seconds per c=16 block")
    parser.add_argument("--pairs", type=int, default=4, help="(b) pairs of blocks")
    parser.add_argument("--model-requests", type=int, default=12, help="(b) streams per block")
    parser.add_argument("--max-tokens", type=int, default=64, help="(b) tokens per stream")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="LLMSHIP_LOG_LEVEL of the gateways and servers (INFO, the default: access log on)",
    )
    parser.add_argument("--skip-instant", action="store_true")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if min(args.rounds, args.requests, args.pairs, args.model_requests) < 1:
        parser.error("--rounds, --requests, --pairs and --model-requests must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    instant = model = None
    blocks: list[Block] = []
    model_blocks: list[ModelBlock] = []
    try:
        with tempfile.TemporaryDirectory(prefix="llmship-replicas-bench-") as tmp:
            if not args.skip_instant:
                print("(a) one gateway in front of 1, 2 and 4 instant upstreams")
                instant, blocks = bench_instant(args, Path(tmp) / "instant")
            if not args.skip_model:
                print("(b) two one-thread model servers against one two-thread server")
                model, model_blocks = bench_model(args, Path(tmp) / "model")
    except (BenchmarkError, OSError) as exc:
        print(f"benchmark failed: {exc}")
        return 1
    verdicts = report(instant, model)
    if args.json:
        payload = {
            "benchmark": "replicas",
            "environment": environment(
                ("llmship", "uvicorn", "aiohttp", "uvloop", "llama-cpp-python"),
                load_average=os.getloadavg(),
            ),
            "targets": {"added_p50_ms_max": TARGET_ADDED_P50_MS},
            "verdicts": verdicts,
            "instant": asdict(instant) if instant else None,
            "model": asdict(model) if model else None,
            "blocks": [asdict(b) | {"rps": b.rps} for b in blocks],
            "model_blocks": [asdict(b) | {"tokens_per_s": b.tokens_per_s} for b in model_blocks],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
