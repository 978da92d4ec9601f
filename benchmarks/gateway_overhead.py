"""Gateway overhead: ``llmship gateway`` against talking to the upstream directly.

Everything runs in one go, as real processes on free local ports:

(a) **Instant upstream.** A minimal OpenAI-compatible server (this file run as
    ``_upstream``: uvloop + httptools, one fixed JSON answer) is registered in a
    temporary ``LLMSHIP_HOME`` as the endpoint of an ``openai`` release that the
    ``production`` alias of env ``fake`` points at; a real ``python -m llmship
    gateway --env fake`` runs in front of it. A load generator in its own process
    (this file run as ``_loadgen``: aiohttp, uvloop, keep-alive) sends the same
    ``POST /v1/chat/completions`` body to each side, in blocks that alternate
    between the sides round after round (direct, gateway[, litellm]; the order
    rotates each round):

    * concurrency 1: p50 and p90 latency per side; added latency = gateway - direct
      per round, median over rounds (target: added p50 <= 1 ms);
    * concurrency 16: requests/s per side in blocks of ``--seconds``; the ratio
      gateway / direct per round, median over rounds (reported, no target: on 2
      cores the gateway competes with the upstream and the load generator).

    * streamed TTFT: ``--stream-pairs`` pairs of streamed chat completions (16 content
      events), one at a time, the sides alternating: added TTFT = gateway - direct per
      pair, median. The same quantity as (b)'s TTFT target, without the model's noise.

    CPU seconds per request of every process (gateway, upstream, load generator,
    LiteLLM) are read from ``/proc`` around every block: on a saturated machine
    requests/s is roughly cores / (sum of the CPU per request of all processes).

    When ``litellm`` is importable by ``--litellm-python`` (default: this Python),
    LiteLLM's proxy (started with ``LITELLM_MASTER_KEY`` set, the same upstream as an
    ``openai/`` model) is a third side of the same rounds (target: the gateway's
    requests/s >= 10x LiteLLM's at concurrency 16).

    Where the gateway's time goes: with ``py-spy`` on ``PATH`` (or ``--py-spy``),
    py-spy samples the gateway during a separate concurrency-16 block after the
    measurements, and the script prints the CPU samples by thread, by package of the
    running frame, the top running functions and llmship's functions, inclusive.

(b) **The real model.** ``llmship serve --release`` with the bundled SmolLM2 release
    (temperature 0, a fixed seed) and a gateway of env ``model`` in front of it; one
    stream at a time, both sides on every prompt, each pair at most two requests
    apart and never the same prompt twice in a row (llama-cpp-python would reuse the
    previous prompt's KV cache), the order flipped each repetition:

    * ``--reps`` x 4 pairs of ``--max-tokens`` streams: output tokens/s (usage
      completion tokens over the request time), gateway / direct per pair (target:
      median >= 0.97);
    * ``--ttft-pairs`` pairs of short requests (4 tokens): TTFT (to the first non-empty
      content delta), gateway - direct per pair (target: median <= 2 ms). Short
      requests give many pairs in little time: on a shared machine one TTFT varies
      by several ms, so the median needs dozens of pairs.

    The gateway's own account is printed too: its ``X-Llmship-Overhead-Ms`` header
    (its time before the first byte) and the mean of ``llmship_gateway_overhead_seconds``.

    .venv/bin/python benchmarks/gateway_overhead.py [--rounds 8] [--seconds 2]
        [--requests 400] [--reps 6] [--max-tokens 128] [--ttft-pairs 400] [--threads N]
        [--stream-pairs 300]
        [--litellm-python PATH | --no-litellm] [--py-spy PATH | --no-profile]
        [--skip-model] [--json results.json]

Exit status 0 whatever the verdict (this is a report), 1 when something broke.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from _common import (
    PROMPTS,
    WARMUP_PROMPT,
    BenchmarkError,
    Proc,
    environment,
    exit_on_sigterm,
    free_port,
    median,
    median_ci,
    percentile,
    start_upstream,
    stream_chat,
    verdict,
)

TARGET_ADDED_P50_MS = 1.0  # gateway p50 - direct p50 at concurrency 1, at most
TARGET_LITELLM_RATIO = 10.0  # gateway req/s over LiteLLM's at concurrency 16, at least
TARGET_TOKENS_RATIO = 0.97  # gateway tokens/s over direct, at least
TARGET_ADDED_TTFT_MS = 2.0  # gateway TTFT - direct TTFT, at most

MODEL_NAME = "bench"
REQUEST_BODY = json.dumps(
    {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Say hello."}]}
).encode()
LITELLM_KEY = "sk-llmship-bench"
TTFT_MAX_TOKENS = 4  # the TTFT pairs: short requests, many pairs


# -- the instant upstream (this file run as `_upstream`) ------------------------------


def upstream_main(argv: Sequence[str]) -> None:
    """An OpenAI-compatible server that answers at once: POST /v1/chat/completions (a
    fixed JSON answer, or ``--tokens`` server-sent events when ``"stream": true``),
    GET /v1/models, /healthz and /readyz. Prints ``PORT <n>`` once it listens."""
    import asyncio

    import httptools
    import uvloop

    parser = argparse.ArgumentParser(prog="gateway_overhead.py _upstream")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=16, help="content events of a stream")
    args = parser.parse_args(argv)

    answer = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1764288000,
        "model": MODEL_NAME,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }
    chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1764288000}
    chunk["model"] = MODEL_NAME
    events = []
    for i in range(args.tokens):
        delta = {"content": "tok "} | ({"role": "assistant"} if i == 0 else {})
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        events.append(chunk | {"choices": [choice]})
    events.append(chunk | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = {"prompt_tokens": 9, "completion_tokens": args.tokens, "total_tokens": 9 + args.tokens}
    events.append(chunk | {"choices": [], "usage": usage})
    sse = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    sse += b"data: [DONE]\n\n"
    models = {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0}]}

    def reply(status: bytes, ctype: bytes, body: bytes) -> bytes:
        return (
            b"HTTP/1.1 " + status + b"\r\ncontent-type: " + ctype
            + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip

    json_type = b"application/json"
    replies = {
        "answer": reply(b"200 OK", json_type, json.dumps(answer).encode()),
        "stream": reply(b"200 OK", b"text/event-stream", sse),
        "models": reply(b"200 OK", json_type, json.dumps(models).encode()),
        "ok": reply(b"200 OK", json_type, b'{"status":"ok"}'),
        "missing": reply(b"404 Not Found", json_type, b'{"error":{"message":"not found"}}'),
    }

    class Connection(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""
            self.body: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

        def on_message_begin(self) -> None:
            self.url = b""
            self.body = []

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            path = self.url.partition(b"?")[0]
            method = self.parser.get_method()
            if method == b"POST" and path == b"/v1/chat/completions":
                body = b"".join(self.body)
                streamed = b'"stream"' in body and json.loads(body).get("stream") is True
                out = replies["stream" if streamed else "answer"]
            elif method == b"GET" and path == b"/v1/models":
                out = replies["models"]
            elif method == b"GET" and path in (b"/healthz", b"/readyz"):
                out = replies["ok"]
            else:
                out = replies["missing"]
            self.transport.write(out)
            if not self.parser.should_keep_alive():
                self.transport.close()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Connection, "127.0.0.1", args.port, backlog=2048)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()

    uvloop.run(serve())


# -- the load generator (this file run as `_loadgen`) ---------------------------------


def loadgen_main() -> None:
    """Reads one JSON command per line on stdin, answers one JSON line on stdout.

    ``{"op": "seq", "url", "n", "headers"}``: ``n`` requests one after another on one
    keep-alive connection; ``{"op": "conc", "url", "c", "seconds", "headers"}``: ``c``
    workers in a closed loop for ``seconds``. Each block opens a fresh session and
    warms it up (not measured). Answers ``{"lat": [...], "elapsed", "errors"}``.
    """
    import asyncio

    import aiohttp
    import uvloop

    async def block(command: dict[str, Any]) -> dict[str, Any]:
        url, headers = command["url"], command.get("headers") or {}
        headers = {"Content-Type": "application/json", **headers}
        concurrency = 1 if command["op"] == "seq" else int(command["c"])
        connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=30)
        errors: list[str] = []
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60)
        ) as session:

            async def one() -> float:
                began = time.perf_counter()
                async with session.post(url, data=REQUEST_BODY, headers=headers) as response:
                    await response.read()
                    if response.status != 200 and len(errors) < 5:
                        errors.append(f"HTTP {response.status}")
                return time.perf_counter() - began

            await asyncio.gather(*(one() for _ in range(concurrency)))  # open the connections
            for _ in range(int(command.get("warmup", 20))):
                await one()
            if command["op"] == "seq":
                began = time.perf_counter()
                lat = [await one() for _ in range(int(command["n"]))]
                return {"lat": lat, "elapsed": time.perf_counter() - began, "errors": errors}
            deadline = time.perf_counter() + float(command["seconds"])
            lat = []

            async def worker() -> None:
                while time.perf_counter() < deadline:
                    lat.append(await one())

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return {"lat": lat, "elapsed": time.perf_counter() - began, "errors": errors}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or json.loads(line)["op"] == "quit":
                return
            try:
                result = await block(json.loads(line))
            except Exception as exc:  # reported to the controller, which stops
                result = {"lat": [], "elapsed": 0.0, "errors": [f"{type(exc).__name__}: {exc}"]}
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()

    uvloop.run(main())


# -- processes ---------------------------------------------------------------------


class LoadGen:
    """The load generator process: one block at a time."""

    def __init__(self, workdir: Path):
        self.proc = Proc(
            "load generator",
            [sys.executable, __file__, "_loadgen"],
            workdir / "loadgen.log",
            stdout_pipe=True,
            stdin_pipe=True,
        )

    def run(self, command: dict[str, Any]) -> dict[str, Any]:
        stdin: IO[bytes] | None = self.proc.proc.stdin
        stdout: IO[bytes] | None = self.proc.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write((json.dumps(command) + "\n").encode())
        stdin.flush()
        line = stdout.readline()
        if not line:
            self.proc.check()
            raise BenchmarkError("the load generator stopped answering")
        result: dict[str, Any] = json.loads(line)
        if result["errors"]:
            raise BenchmarkError(f"{command['url']}: {', '.join(result['errors'])}")
        return result

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.proc.stdin is not None
            self.proc.proc.stdin.write(b'{"op": "quit"}\n')
            self.proc.proc.stdin.flush()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.proc.wait(timeout=5)
        self.proc.stop()


def register_fake(home: Path, upstream_url: str) -> str:
    """Env ``fake``: its ``production`` alias points at an ``openai`` release whose
    model server is the instant upstream. Returns the release's ref."""
    from llmship.registry import Registry
    from llmship.release.spec import parse_spec

    spec = parse_spec(
        {
            "name": MODEL_NAME,
            "version": "1.0.0",
            "backend": "openai",
            "model": {"base_url": f"{upstream_url}/v1", "id": MODEL_NAME},
        }
    )
    with Registry.open(f"sqlite:///{home / 'registry.db'}", home=home) as registry:
        record, _ = registry.register(spec, actor="bench")
        registry.set_alias("fake", "production", record.ref, actor="bench", reason="benchmark")
        registry.register_endpoint("fake", record.ref, upstream_url, pid=None)
    return record.ref


def register_model(home: Path, data: dict[str, Any]) -> str:
    """Env ``model``: its ``production`` alias points at the release ``data``."""
    from llmship.registry import Registry
    from llmship.release.spec import parse_spec

    with Registry.open(f"sqlite:///{home / 'registry.db'}", home=home) as registry:
        record, _ = registry.register(parse_spec(data), actor="bench")
        registry.set_alias("model", "production", record.ref, actor="bench", reason="benchmark")
    return record.ref


def start_gateway(workdir: Path, home: Path, env: str, log_level: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        f"llmship gateway --env {env}",
        [sys.executable, "-m", "llmship", "gateway", "--env", env, "--port", str(port)],
        workdir / f"gateway-{env}.log",
        env={
            "LLMSHIP_HOME": str(home),
            "LLMSHIP_ENDPOINT_MAX_AGE": "86400",
            "LLMSHIP_LOG_LEVEL": log_level,
        },
    )
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{url}/readyz", timeout=60)
    return proc, url


def start_litellm(python: str, workdir: Path, upstream_url: str) -> tuple[Proc, str]:
    """LiteLLM's proxy, one worker, the instant upstream as an ``openai/`` model."""
    config = workdir / "litellm.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "model_list": [
                    {
                        "model_name": MODEL_NAME,
                        "litellm_params": {
                            "model": f"openai/{MODEL_NAME}",
                            "api_base": f"{upstream_url}/v1",
                            "api_key": "none",
                        },
                    }
                ],
                "litellm_settings": {"telemetry": False},
                "general_settings": {"master_key": LITELLM_KEY},
            }
        ),
        encoding="utf-8",
    )
    port = free_port()
    litellm = Path(python).with_name("litellm")
    command = (
        [str(litellm)] if litellm.exists() else [python, "-m", "litellm.proxy.proxy_cli"]
    ) + ["--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    proc = Proc(
        "litellm proxy",
        command,
        workdir / "litellm.log",
        env={"LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOG": "ERROR", "NO_DOCS": "True"},
    )
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{url}/health/liveliness")
    return proc, url


def litellm_available(python: str) -> str | None:
    """LiteLLM's version when ``python`` can import ``litellm.proxy``, else None."""
    try:
        out = subprocess.run(
            [
                python,
                "-c",
                "import importlib.metadata as m, litellm.proxy; print(m.version('litellm'))",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@dataclass
class Block:
    """One block of requests to one side."""

    side: str
    round: int
    concurrency: int
    requests: int
    elapsed_s: float
    p50_ms: float
    p90_ms: float
    cpu_ms_per_request: dict[str, float]  # process name -> CPU ms per request

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s


@dataclass
class Stream:
    """One streamed generation from the real model, timed at the client."""

    side: str
    prompt: int
    rep: int
    ttft_s: float
    total_s: float
    tokens: int
    text: str
    overhead_header_ms: float | None = None
    """The gateway's X-Llmship-Overhead-Ms: its own time before the first byte."""
    kind: str = "stream"
    """``stream`` (``--max-tokens``, for tokens/s) or ``ttft`` (2 tokens, for TTFT)."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.total_s


# -- (a) the instant upstream -------------------------------------------------------


def run_blocks(
    gen: LoadGen,
    sides: dict[str, tuple[str, dict[str, str]]],
    procs: dict[str, Proc],
    *,
    rounds: int,
    op: dict[str, Any],
    requests_for: dict[str, int] | None = None,
) -> list[Block]:
    """``rounds`` rounds of one block per side, the order rotated each round."""
    names = list(sides)
    blocks: list[Block] = []
    concurrency = int(op.get("c", 1))
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for side in order:
            url, headers = sides[side]
            command = {**op, "url": url, "headers": headers}
            if requests_for is not None:
                command["n"] = requests_for[side]
            for proc in procs.values():
                proc.check()
            before = {name: proc.cpu_s() for name, proc in procs.items()}
            result = gen.run(command)
            after = {name: proc.cpu_s() for name, proc in procs.items()}
            lat = result["lat"]
            n = len(lat)
            blocks.append(
                Block(
                    side=side,
                    round=r,
                    concurrency=concurrency,
                    requests=n,
                    elapsed_s=result["elapsed"],
                    p50_ms=percentile(lat, 0.5) * 1000,
                    p90_ms=percentile(lat, 0.9) * 1000,
                    cpu_ms_per_request={
                        name: (after[name] - before[name]) * 1000 / n for name in procs
                    },
                )
            )
            b = blocks[-1]
            print(
                f"  round {r + 1}/{rounds} c={concurrency:<2} {side:8s} "
                f"{b.rps:8.0f} req/s  p50 {b.p50_ms:7.3f} ms  p90 {b.p90_ms:7.3f} ms  "
                f"CPU ms/req: " + " ".join(f"{k} {v:.3f}" for k, v in b.cpu_ms_per_request.items()),
                flush=True,
            )
    return blocks


def profile_gateway(
    py_spy: str,
    gen: LoadGen,
    gateway: Proc,
    url: str,
    seconds: float,
    workdir: Path,
    keep: Path | None = None,
) -> dict[str, Any] | None:
    """py-spy samples the gateway while the load generator keeps 16 requests in flight."""
    out = workdir / "gateway.pyspy.txt"
    command = [
        py_spy, "record", "--pid", str(gateway.pid), "--duration", str(math.ceil(seconds)),
        "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking", "--threads",
    ]  # fmt: skip
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # py-spy attaches
    gen.run({"op": "conc", "c": 16, "seconds": seconds + 1.0, "url": url, "headers": {}})
    try:
        _, err = spy.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        _, err = spy.communicate()
    if spy.returncode != 0 or not out.exists():
        print(f"py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-500:]}")
        return None
    raw = out.read_text(encoding="utf-8", errors="replace")
    if keep is not None:
        keep.write_text(raw, encoding="utf-8")
    return summarize_profile(raw)


def _package(frame: str) -> str:
    """``func (aiohttp/client.py:123)`` -> ``aiohttp``; the stdlib is named by module."""
    inside = frame.rpartition(" (")[2].rstrip(")")
    path = inside.rpartition(":")[0]
    parts = path.split("/")
    if parts[0] in ("llmship",) and len(parts) > 1:
        return "/".join(parts[:2]).removesuffix(".py")
    if len(parts) == 1:
        return parts[0].removesuffix(".py") or "?"
    return parts[0]


def _thread(frame: str) -> str:
    """``thread (123): MainThread`` -> ``event loop``; worker threads by their pool."""
    name = frame.partition("): ")[2] or "unnamed"
    if name == "MainThread":
        return "event loop (MainThread)"
    return "threads " + name.rstrip("0123456789").rstrip("_-") + "*"


def summarize_profile(raw: str) -> dict[str, Any]:
    """py-spy's collapsed stacks (``--threads``) -> CPU share by thread, by package of the
    running frame, the top running functions, and llmship's functions, inclusive."""
    total = 0
    by_thread: collections.Counter[str] = collections.Counter()
    by_package: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[0].startswith("thread ("):
            by_thread[_thread(frames.pop(0))] += count
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        by_package[_package(leaf)] += count
        by_leaf[leaf.rpartition(":")[0] + ")"] += count
        seen = set()
        for frame in frames:
            if "llmship/gateway/" in frame or "llmship/registry/" in frame:
                name = frame.rpartition(":")[0] + ")"
                if name not in seen:
                    seen.add(name)
                    inclusive[name] += count

    def share(counter: collections.Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, v / total) for k, v in counter.most_common(n)] if total else []

    return {
        "samples": total,
        "by_thread": share(by_thread, 6),
        "by_package": share(by_package, 12),
        "top_running_functions": share(by_leaf, 15),
        "llmship_inclusive": share(inclusive, 16),
    }


@dataclass
class InstantSummary:
    rounds: int
    c1: dict[str, dict[str, float]] = field(default_factory=dict)  # side -> figures
    c16: dict[str, dict[str, float]] = field(default_factory=dict)
    added_p50_ms: float = math.nan  # median over rounds of gateway p50 - direct p50
    added_p90_ms: float = math.nan
    rps_ratio: float = math.nan  # gateway / direct at c16, median over rounds
    litellm_ratio: float | None = None  # gateway / litellm at c16, median over rounds
    litellm_added_p50_ms: float | None = None
    stream_pairs: int = 0
    stream_ttft_ms: dict[str, float] = field(default_factory=dict)  # side -> median TTFT
    added_stream_ttft_ms: float = math.nan  # gateway - direct TTFT, median over the pairs
    profile: dict[str, Any] | None = None


def summarize_instant(c1: list[Block], c16: list[Block], rounds: int) -> InstantSummary:
    summary = InstantSummary(rounds=rounds)
    for level, blocks, out in ((1, c1, summary.c1), (16, c16, summary.c16)):
        for side in dict.fromkeys(b.side for b in blocks):
            mine = [b for b in blocks if b.side == side]
            cpu_names = mine[0].cpu_ms_per_request
            out[side] = {
                "p50_ms": median([b.p50_ms for b in mine]),
                "p90_ms": median([b.p90_ms for b in mine]),
                "rps": median([b.rps for b in mine]),
                "requests": sum(b.requests for b in mine),
                **{
                    f"cpu_ms_{name}": median([b.cpu_ms_per_request[name] for b in mine])
                    for name in cpu_names
                },
            }
        del level

    def per_round(blocks: list[Block], a: str, b: str, fn: Any) -> float:
        by = {(x.side, x.round): x for x in blocks}
        values = [fn(by[(a, r)], by[(b, r)]) for r in range(rounds) if (b, r) in by]
        return median(values)

    summary.added_p50_ms = per_round(c1, "gateway", "direct", lambda g, d: g.p50_ms - d.p50_ms)
    summary.added_p90_ms = per_round(c1, "gateway", "direct", lambda g, d: g.p90_ms - d.p90_ms)
    summary.rps_ratio = per_round(c16, "gateway", "direct", lambda g, d: g.rps / d.rps)
    if any(b.side == "litellm" for b in c16):
        summary.litellm_ratio = per_round(c16, "gateway", "litellm", lambda g, x: g.rps / x.rps)
        summary.litellm_added_p50_ms = per_round(
            c1, "litellm", "direct", lambda x, d: x.p50_ms - d.p50_ms
        )
    return summary


def bench_instant(args: argparse.Namespace, workdir: Path) -> tuple[InstantSummary, list[Block]]:
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    upstream, upstream_url = start_upstream(workdir)
    procs: dict[str, Proc] = {"upstream": upstream}
    gen: LoadGen | None = None
    try:
        register_fake(home, upstream_url)
        gateway, gateway_url = start_gateway(workdir, home, "fake", args.log_level)
        procs["gateway"] = gateway
        path = "/v1/chat/completions"
        sides: dict[str, tuple[str, dict[str, str]]] = {
            "direct": (upstream_url + path, {}),
            "gateway": (gateway_url + path, {}),
        }
        requests_for = {"direct": args.requests, "gateway": args.requests}
        if args.litellm_version:
            print(f"starting LiteLLM {args.litellm_version} ({args.litellm_python}) ...")
            litellm, litellm_url = start_litellm(args.litellm_python, workdir, upstream_url)
            procs["litellm"] = litellm
            sides["litellm"] = (litellm_url + path, {"Authorization": f"Bearer {LITELLM_KEY}"})
            requests_for["litellm"] = max(50, args.requests // 4)
        gen = LoadGen(workdir)
        procs["loadgen"] = gen.proc
        print(f"instant upstream {upstream_url}, gateway {gateway_url}")
        print("concurrency 1 (sequential requests, one keep-alive connection):")
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
        summary = summarize_instant(c1, c16, args.rounds)
        if args.stream_pairs:
            print(f"streamed TTFT: {args.stream_pairs} pairs, one stream at a time ...")
            urls = {side: url for side, (url, _) in sides.items() if side != "litellm"}
            ttft = stream_ttft_pairs(urls, args.stream_pairs, args.seed)
            summary.stream_pairs = args.stream_pairs
            summary.stream_ttft_ms = {side: median(v) for side, v in ttft.items()}
            added = [g - d for d, g in zip(ttft["direct"], ttft["gateway"], strict=True)]
            summary.added_stream_ttft_ms = median(added)
        if args.py_spy:
            print(f"profiling the gateway with py-spy for {args.profile_seconds:g} s ...")
            url = gateway_url + path
            summary.profile = profile_gateway(
                args.py_spy, gen, gateway, url, args.profile_seconds, workdir, args.profile_out
            )
        return summary, c1 + c16
    finally:
        if gen is not None:
            gen.stop()
        for proc in procs.values():
            if proc is not (gen.proc if gen else None):
                proc.stop()


def stream_ttft_pairs(urls: dict[str, str], pairs: int, seed: int) -> dict[str, list[float]]:
    """TTFT (ms) of ``pairs`` streamed chat completions on each side, the sides
    alternating request by request and the order flipped each pair; one keep-alive
    connection per side."""
    import httpx

    ttft: dict[str, list[float]] = {side: [] for side in urls}
    sides = list(urls)
    with contextlib.ExitStack() as stack:
        clients = {side: stack.enter_context(httpx.Client(timeout=30)) for side in sides}
        for side in sides:  # open the connections
            stream_chat(clients[side], urls[side], "warm up", max_tokens=4, seed=seed)
        for i in range(pairs):
            for side in sides if i % 2 == 0 else reversed(sides):
                s = stream_chat(
                    clients[side], urls[side], PROMPTS[i % len(PROMPTS)], max_tokens=16, seed=seed
                )
                ttft[side].append(s.ttft_s * 1000)
    return ttft


# -- (b) the real model --------------------------------------------------------------


def stream_once(client: Any, url: str, prompt: str, max_tokens: int, seed: int) -> Stream:
    s = stream_chat(client, url, prompt, max_tokens=max_tokens, seed=seed)
    stream = Stream("", 0, 0, s.ttft_s, s.total_s, s.usage["completion_tokens"], s.text)
    overhead = s.headers.get("x-llmship-overhead-ms")
    stream.overhead_header_ms = float(overhead) if overhead is not None else None
    return stream


@dataclass
class ModelSummary:
    pairs: int  # of --max-tokens streams (tokens/s)
    ttft_pairs: int  # of short requests (TTFT)
    tokens_per_s: dict[str, float]
    ttft_ms: dict[str, float]
    tokens_ratio: float  # gateway / direct tokens/s, median over pairs
    tokens_ratio_p10: float
    tokens_ratio_p90: float
    added_ttft_ms: float  # gateway - direct TTFT, median over the short pairs
    added_ttft_p10_ms: float
    added_ttft_p90_ms: float
    added_ttft_long_ms: float  # the same over the long streams' pairs
    text_mismatches: int
    n_threads: int
    overhead_header_ms: float  # median X-Llmship-Overhead-Ms: gateway time before 1st byte
    overhead_metric_ms: float  # mean llmship_gateway_overhead_seconds: whole streams
    tokens_ratio_ci: tuple[float, float] = (math.nan, math.nan)  # 95% bootstrap, of the median
    added_ttft_ci_ms: tuple[float, float] = (math.nan, math.nan)


def gateway_overhead_metric(client: Any, gateway_url: str) -> float:
    """Mean of ``llmship_gateway_overhead_seconds`` over every request so far, in ms."""
    total = {"_sum": 0.0, "_count": 0.0}
    for line in client.get(f"{gateway_url}/metrics").text.splitlines():
        for suffix in total:
            if line.startswith(f"llmship_gateway_overhead_seconds{suffix}{{"):
                total[suffix] += float(line.rpartition(" ")[2])
    return total["_sum"] / total["_count"] * 1000 if total["_count"] else math.nan


def bench_model(args: argparse.Namespace, workdir: Path) -> tuple[ModelSummary, list[Stream]]:
    import httpx

    from llmship.release.bundled import bundled_spec

    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    data = bundled_spec().to_dict()
    data["version"] = "1.0.0-bench"
    data["runtime"] |= {"n_threads": args.threads, "n_ctx": 2048, "n_batch": 512}
    ref = register_model(home, data)
    port = free_port()
    command = [
        sys.executable, "-m", "llmship", "serve", "--release", ref, "--env", "model",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    server = Proc(
        "llmship serve",
        command,
        workdir / "serve.log",
        env={"LLMSHIP_HOME": str(home), "LLMSHIP_LOG_LEVEL": args.log_level},
    )
    procs = [server]
    try:
        direct_url = f"http://127.0.0.1:{port}"
        server.wait_http(f"{direct_url}/readyz")
        from llmship.registry import Registry

        with Registry.open(f"sqlite:///{home / 'registry.db'}", home=home) as registry:
            registry.register_endpoint("model", ref, direct_url, pid=server.pid)
        gateway, gateway_url = start_gateway(workdir, home, "model", args.log_level)
        procs.append(gateway)
        print(f"model server {direct_url} ({ref}, n_threads={args.threads}), gateway {gateway_url}")
        print(f"  tokens/s: {args.reps} x {len(PROMPTS)} pairs of {args.max_tokens}-token streams")
        path = "/v1/chat/completions"
        sides = {"direct": direct_url + path, "gateway": gateway_url + path}
        with httpx.Client(timeout=300) as client:
            streams = measure_model(client, sides, procs, args)
            metric_ms = gateway_overhead_metric(client, gateway_url)
    finally:
        for proc in reversed(procs):
            proc.stop()
    return summarize_model(streams, args.threads, metric_ms), streams


def measure_model(
    client: Any, sides: dict[str, str], procs: list[Proc], args: argparse.Namespace
) -> list[Stream]:
    """Long streams (tokens/s) in pairs, then short requests (TTFT) in pairs."""
    streams: list[Stream] = []
    for url in sides.values():  # warm-up: model pages, caches, connections
        for _ in range(2):
            stream_once(client, url, WARMUP_PROMPT, args.max_tokens, args.seed)
    done: dict[tuple[int, int], dict[str, Stream]] = {}
    total = args.reps * len(PROMPTS)
    for rep in range(args.reps):
        first, second = list(sides) if rep % 2 == 0 else list(sides)[::-1]
        for side, p in request_order(first, second, len(PROMPTS)):
            for proc in procs:
                proc.check()
            s = stream_once(client, sides[side], PROMPTS[p], args.max_tokens, args.seed)
            s.side, s.prompt, s.rep = side, p, rep
            streams.append(s)
            pair = done.setdefault((p, rep), {})
            pair[side] = s
            if len(pair) < 2:
                continue
            d, g = pair["direct"], pair["gateway"]
            print(
                f"  [{sum(len(x) == 2 for x in done.values())}/{total}] prompt {p} rep {rep}: "
                f"direct {d.tokens_per_s:6.1f} tok/s ttft {d.ttft_s * 1000:6.1f} ms | "
                f"gateway {g.tokens_per_s:6.1f} tok/s ttft {g.ttft_s * 1000:6.1f} ms"
                + ("" if d.text == g.text else "  (texts differ)"),
                flush=True,
            )
    rounds = math.ceil(args.ttft_pairs / len(PROMPTS))
    print(f"  TTFT: {rounds * len(PROMPTS)} pairs of short requests ...", flush=True)
    for rep in range(rounds):
        first, second = list(sides) if rep % 2 == 0 else list(sides)[::-1]
        for side, p in request_order(first, second, len(PROMPTS)):
            for proc in procs:
                proc.check()
            s = stream_once(client, sides[side], PROMPTS[p], TTFT_MAX_TOKENS, args.seed)
            s.side, s.prompt, s.rep, s.kind = side, p, rep, "ttft"
            streams.append(s)
    return streams


def request_order(first: str, second: str, prompts: int) -> list[tuple[str, int]]:
    """Both sides on every prompt, each pair at most two requests apart, and never the
    same prompt twice in a row: llama-cpp-python reuses the KV cache of the previous
    prompt's common prefix, so a repeated prompt would skip its prefill (a lower TTFT,
    and other floating-point sums) on whichever side came second.

    >>> request_order("a", "b", 3)
    [('a', 0), ('a', 1), ('b', 0), ('a', 2), ('b', 1), ('b', 2)]
    """
    order = [(first, 0)]
    for p in range(1, prompts):
        order += [(first, p), (second, p - 1)]
    return [*order, (second, prompts - 1)]


def _pairs(streams: list[Stream], kind: str) -> list[tuple[Stream, Stream]]:
    """(direct, gateway) streams of the same prompt and repetition."""
    mine = [s for s in streams if s.kind == kind]
    direct = {(s.prompt, s.rep): s for s in mine if s.side == "direct"}
    return [(direct[(s.prompt, s.rep)], s) for s in mine if s.side == "gateway"]


def summarize_model(streams: list[Stream], n_threads: int, metric_ms: float) -> ModelSummary:
    pairs = _pairs(streams, "stream")
    short = _pairs(streams, "ttft")
    ratios = [g.tokens_per_s / d.tokens_per_s for d, g in pairs]
    added = [(g.ttft_s - d.ttft_s) * 1000 for d, g in short or pairs]
    long_added = [(g.ttft_s - d.ttft_s) * 1000 for d, g in pairs]

    def side(name: str, fn: Any, kind: str = "stream") -> float:
        return median([fn(s) for s in streams if s.side == name and s.kind == kind])

    return ModelSummary(
        pairs=len(pairs),
        ttft_pairs=len(short),
        tokens_per_s={n: side(n, lambda s: s.tokens_per_s) for n in ("direct", "gateway")},
        ttft_ms={
            n: side(n, lambda s: s.ttft_s * 1000, "ttft" if short else "stream")
            for n in ("direct", "gateway")
        },
        tokens_ratio=median(ratios),
        tokens_ratio_p10=percentile(ratios, 0.1),
        tokens_ratio_p90=percentile(ratios, 0.9),
        added_ttft_ms=median(added),
        added_ttft_p10_ms=percentile(added, 0.1),
        added_ttft_p90_ms=percentile(added, 0.9),
        added_ttft_long_ms=median(long_added),
        text_mismatches=sum(d.text != g.text for d, g in pairs),
        n_threads=n_threads,
        overhead_header_ms=median([g.overhead_header_ms or math.nan for _, g in short or pairs]),
        overhead_metric_ms=metric_ms,
        tokens_ratio_ci=median_ci(ratios),
        added_ttft_ci_ms=median_ci(added),
    )


# -- report -----------------------------------------------------------------------


def report(instant: InstantSummary | None, model: ModelSummary | None) -> dict[str, bool]:
    verdicts: dict[str, bool] = {}
    if instant is not None:
        print()
        print(f"(a) instant upstream, medians over {instant.rounds} rounds")
        cpu_names = [k for k in next(iter(instant.c16.values())) if k.startswith("cpu_ms_")]
        head = f"{'':22s}" + "".join(f"{side:>12s}" for side in instant.c1)
        print(head)
        rows = [
            ("c=1 p50 (ms)", instant.c1, "p50_ms", "{:12.3f}"),
            ("c=1 p90 (ms)", instant.c1, "p90_ms", "{:12.3f}"),
            ("c=1 req/s", instant.c1, "rps", "{:12.0f}"),
            ("c=16 req/s", instant.c16, "rps", "{:12.0f}"),
            ("c=16 p50 (ms)", instant.c16, "p50_ms", "{:12.3f}"),
        ] + [(f"c=16 CPU ms/req {name[7:]}", instant.c16, name, "{:12.3f}") for name in cpu_names]
        for label, table, key, fmt in rows:
            print(f"{label:22s}" + "".join(fmt.format(table[s][key]) for s in table))
        ok = instant.added_p50_ms <= TARGET_ADDED_P50_MS
        verdicts["added_p50"] = ok
        print(
            f"added latency at c=1: p50 {instant.added_p50_ms:+.3f} ms, "
            f"p90 {instant.added_p90_ms:+.3f} ms "
            f"(target p50 <= {TARGET_ADDED_P50_MS:g} ms): {verdict(ok)}"
        )
        print(f"req/s at c=16, gateway / direct: x{instant.rps_ratio:.3f} (reported, no target)")
        if instant.litellm_ratio is not None:
            ok = instant.litellm_ratio >= TARGET_LITELLM_RATIO
            verdicts["litellm_ratio"] = ok
            print(
                f"req/s at c=16, gateway / LiteLLM: x{instant.litellm_ratio:.1f} "
                f"(target >= {TARGET_LITELLM_RATIO:g}x): {verdict(ok)}; "
                f"LiteLLM adds {instant.litellm_added_p50_ms:+.3f} ms p50 at c=1"
            )
        else:
            print("LiteLLM: not installed, skipped (see --litellm-python)")
        if instant.stream_pairs:
            print(
                f"streamed TTFT over {instant.stream_pairs} pairs: direct "
                f"{instant.stream_ttft_ms['direct']:.3f} ms, gateway "
                f"{instant.stream_ttft_ms['gateway']:.3f} ms; the gateway adds "
                f"{instant.added_stream_ttft_ms:+.3f} ms (median of the pairs; what (b)'s "
                "TTFT target measures, without the model's noise)"
            )
        if instant.profile:
            prof = instant.profile
            print(f"where the gateway's CPU goes (py-spy, {prof['samples']} samples at c=16):")
            print("  by thread:")
            for name, share in prof["by_thread"]:
                print(f"    {share * 100:5.1f}%  {name}")
            print("  by package of the running frame:")
            for name, share in prof["by_package"]:
                print(f"    {share * 100:5.1f}%  {name}")
            print("  running functions:")
            for name, share in prof["top_running_functions"][:10]:
                print(f"    {share * 100:5.1f}%  {name}")
            print("  llmship functions, inclusive:")
            for name, share in prof["llmship_inclusive"]:
                print(f"    {share * 100:5.1f}%  {name}")
    if model is not None:
        print()
        print(
            f"(b) real model (SmolLM2, n_threads={model.n_threads}), "
            f"streaming, medians over {model.pairs} pairs for tokens/s and "
            f"{model.ttft_pairs} pairs for TTFT"
        )
        for name in ("direct", "gateway"):
            print(
                f"  {name:8s} {model.tokens_per_s[name]:7.1f} tok/s  "
                f"TTFT {model.ttft_ms[name]:7.1f} ms"
            )
        ok = model.tokens_ratio >= TARGET_TOKENS_RATIO
        verdicts["tokens_ratio"] = ok
        print(
            f"tokens/s gateway / direct: x{model.tokens_ratio:.3f} "
            f"(95% CI of the median {model.tokens_ratio_ci[0]:.3f}-{model.tokens_ratio_ci[1]:.3f}; "
            f"p10 {model.tokens_ratio_p10:.3f}, p90 {model.tokens_ratio_p90:.3f}; "
            f"target >= {TARGET_TOKENS_RATIO}): {verdict(ok)}"
        )
        ok = model.added_ttft_ms <= TARGET_ADDED_TTFT_MS
        verdicts["added_ttft"] = ok
        print(
            f"added TTFT: {model.added_ttft_ms:+.2f} ms "
            f"(95% CI of the median {model.added_ttft_ci_ms[0]:+.2f} to "
            f"{model.added_ttft_ci_ms[1]:+.2f}; p10 {model.added_ttft_p10_ms:+.2f}, "
            f"p90 {model.added_ttft_p90_ms:+.2f}; "
            f"target <= {TARGET_ADDED_TTFT_MS:g} ms): {verdict(ok)}; "
            f"over the long streams' pairs {model.added_ttft_long_ms:+.2f} ms"
        )
        print(
            f"the gateway's own time (its X-Llmship-Overhead-Ms before the first byte, median): "
            f"{model.overhead_header_ms:.2f} ms; per whole stream "
            f"(llmship_gateway_overhead_seconds, mean): {model.overhead_metric_ms:.2f} ms"
        )
        if model.text_mismatches:
            print(f"warning: {model.text_mismatches} of {model.pairs} pairs generated other texts")
    return verdicts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure what `llmship gateway` adds over talking to the upstream directly."
    )
    parser.add_argument("--rounds", type=int, default=8, help="rounds of blocks (default 8)")
    parser.add_argument(
        "--requests", type=int, default=400, help="requests per c=1 block (default 400)"
    )
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="length of a c=16 block (default 2)"
    )
    parser.add_argument("--reps", type=int, default=6, help="model: repetitions of each prompt")
    parser.add_argument("--max-tokens", type=int, default=128, help="model: max_tokens (128)")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="model: n_threads (default os.cpu_count(); the server defaults to half)",
    )
    parser.add_argument("--seed", type=int, default=1234, help="model: sampling seed")
    parser.add_argument(
        "--ttft-pairs",
        type=int,
        default=400,
        help="model: pairs of short requests for TTFT (one TTFT varies by ~10 ms on a shared "
        "machine: the median is known to about +-1 ms at 400 pairs, +-2.5 ms at 48)",
    )
    parser.add_argument(
        "--stream-pairs",
        type=int,
        default=300,
        help="instant upstream: pairs of streams for TTFT (0: skip)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="LLMSHIP_LOG_LEVEL of the gateway and server (default INFO, the default setting: "
        "one access-log line per request)",
    )
    parser.add_argument(
        "--litellm-python",
        default=sys.executable,
        help="a Python that can import litellm[proxy] (default: this one)",
    )
    parser.add_argument("--no-litellm", action="store_true", help="do not run LiteLLM")
    parser.add_argument(
        "--py-spy", default=shutil.which("py-spy"), help="py-spy executable (default: on PATH)"
    )
    parser.add_argument("--no-profile", action="store_true", help="do not profile the gateway")
    parser.add_argument("--profile-seconds", type=float, default=6.0)
    parser.add_argument(
        "--profile-out", type=Path, metavar="PATH", help="keep py-spy's collapsed stacks here"
    )
    parser.add_argument("--skip-instant", action="store_true", help="skip part (a)")
    parser.add_argument("--skip-model", action="store_true", help="skip part (b)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 1 or args.seconds <= 0 or args.reps < 1:
        parser.error("--rounds, --requests, --reps must be >= 1 and --seconds > 0")
    if args.no_profile:
        args.py_spy = None
    args.litellm_version = None if args.no_litellm else litellm_available(args.litellm_python)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    instant = model = None
    blocks: list[Block] = []
    streams: list[Stream] = []
    try:
        with tempfile.TemporaryDirectory(prefix="llmship-gw-bench-") as tmp:
            if not args.skip_instant:
                print("(a) gateway vs direct against an instant upstream")
                instant, blocks = bench_instant(args, Path(tmp) / "instant")
            if not args.skip_model:
                print("(b) gateway vs direct against the real model server")
                model, streams = bench_model(args, Path(tmp) / "model")
    except (BenchmarkError, OSError) as exc:
        print(f"benchmark failed: {exc}")
        return 1
    verdicts = report(instant, model)
    if args.json:
        payload = {
            "benchmark": "gateway_overhead",
            "environment": environment(
                ("llmship", "uvicorn", "aiohttp", "uvloop", "httptools", "llama-cpp-python"),
                load_average=os.getloadavg(),
                litellm=args.litellm_version,
            ),
            "targets": {
                "added_p50_ms_max": TARGET_ADDED_P50_MS,
                "litellm_ratio_min": TARGET_LITELLM_RATIO,
                "tokens_ratio_min": TARGET_TOKENS_RATIO,
                "added_ttft_ms_max": TARGET_ADDED_TTFT_MS,
            },
            "verdicts": verdicts,
            "instant": asdict(instant) if instant else None,
            "model": asdict(model) if model else None,
            "blocks": [asdict(b) | {"rps": b.rps} for b in blocks],
            "streams": [asdict(s) | {"tokens_per_s": s.tokens_per_s} for s in streams],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    return 0


def _entry() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_upstream":
        upstream_main(sys.argv[2:])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_loadgen":
        loadgen_main()
        return 0
    return main()


if __name__ == "__main__":
    sys.exit(_entry())
