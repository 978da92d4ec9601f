"""The load generator (Locust in its own process) against a tiny fast fake
OpenAI-compatible server: closed and open loops, errors, endpoints, and the
repository's locustfile under plain `locust`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from _procs import free_port
from fakes_loadtest import VERSION, FakeLLMServer
from llmship.loadtest import LoadPlan, Prompt, arrivals_until, summarize
from llmship.loadtest.runner import GeneratorResult, run_generator, run_load_test

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(words=4, delay=0.002, first_delay=0.005) as fake:
        yield fake


def _entries(result: GeneratorResult) -> dict[tuple[str, str], dict[str, int]]:
    return {(e["method"], e["name"]): e for e in result.locust["entries"]}


def test_closed_loop_numbers_are_consistent(server: FakeLLMServer) -> None:
    prompts = (Prompt(text="fine"), Prompt(text="FAIL please"), Prompt(text="BREAK it"))
    plan = LoadPlan(
        target=server.url, users=2, duration=1.5, warmup=0.5, model="fake-llm", prompts=prompts
    ).validated()
    result = run_generator(plan)
    assert result.user_errors == []
    window = result.window_records
    stats = summarize(
        result.records,
        window_start=result.window_start,
        window_end=result.window_end,
        sent=result.sent,
        incomplete=result.incomplete,
    )
    # Given a closed loop of two users, every measured send is answered
    assert stats.requests == len(window) == result.sent > 20
    assert stats.requests == stats.successes + stats.errors
    assert result.incomplete == 0
    # warm-up requests were made and are not counted
    assert stats.warmup_requests > 0
    assert all(r.start >= result.window_start for r in window)
    # one in three prompts fails with a 503, one in three breaks mid-stream
    assert set(stats.errors_by_kind) == {"HTTP 503", "stream error"}
    assert stats.error_rate == pytest.approx(2 / 3, abs=0.1)
    for record in window:
        if record.ok:
            assert record.ttft is not None and 0 < record.ttft <= record.e2e
            assert record.output_tokens == 4  # from the final usage
            assert len(record.itl) == 3
            assert record.version == VERSION
    assert stats.tokens_per_second > 0 and stats.throughput > 0
    # Locust's own statistics saw the same requests: one POST and one TTFT row
    entries = _entries(result)
    post = entries["POST", "/v1/chat/completions"]
    assert post["failures"] > 0 and entries["TTFT", "/v1/chat/completions"]["failures"] == 0
    assert post["requests"] >= stats.requests - 2  # reset at the window's start
    assert result.cpu_window_s >= 0 and result.locust_version
    # and the body was an OpenAI streaming request
    body = server.bodies[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "fake-llm" and body["max_tokens"] == 100


def _scheduled(rate: float, arrival: str, seed: int, result: GeneratorResult) -> int:
    """Arrivals of the seeded schedule within the generator's measured window."""
    times = arrivals_until(rate, arrival, seed=seed, end=result.window_end)
    return sum(1 for t in times if t >= result.window_start)


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_open_loop_keeps_its_rate(server: FakeLLMServer, arrival: str) -> None:
    plan = LoadPlan(
        target=server.url,
        rate=40.0,
        arrival=arrival,  # type: ignore[arg-type]
        seed=3,
        duration=1.5,
        warmup=0.3,
    ).validated()
    result = run_generator(plan)
    stats = summarize(
        result.records,
        window_start=result.window_start,
        window_end=result.window_end,
        sent=result.sent,
        dropped=result.dropped,
        incomplete=result.incomplete,
    )
    # Then the generator sent the seeded schedule, on time
    assert abs(stats.sent - _scheduled(40.0, arrival, 3, result)) <= 1
    if arrival == "constant":
        assert stats.sent_rate == pytest.approx(40.0, rel=0.05)
    assert stats.dropped == 0 and stats.errors == 0 and stats.incomplete == 0
    assert stats.requests == stats.sent
    assert stats.throughput == pytest.approx(stats.sent / stats.elapsed)
    assert stats.e2e is not None and stats.e2e.p50 < 0.1


def test_open_loop_drops_beyond_max_in_flight() -> None:
    """A slow server does not slow the arrivals: what cannot be sent is dropped."""
    with FakeLLMServer(words=2, delay=0.3, first_delay=0.3) as slow:
        plan = LoadPlan(
            target=slow.url, rate=20.0, duration=1.0, max_in_flight=2, drain_timeout=5
        ).validated()
        result = run_generator(plan)
    assert result.dropped > 5
    assert abs(result.sent + result.dropped - _scheduled(20.0, "constant", 0, result)) <= 1
    assert len(result.window_records) == result.sent and result.incomplete == 0


def test_run_load_test_report(server: FakeLLMServer) -> None:
    plan = LoadPlan(target=server.url, rate=20.0, duration=1.0, model="fake-llm").validated()
    report = run_load_test(plan, {"error_rate": 0.0, "ttft_p99": 0.000001}, ref="a@1")
    assert report.ref == "a@1" and report.load.mode == "open"
    assert [v.passed for v in report.verdicts] == [False, True]
    assert report.passed is False and report.results.good_requests == 0
    assert report.generator_cpu_per_request_s is not None
    assert report.timeline and sum(r.requests for r in report.timeline) == report.results.requests


@pytest.mark.parametrize(
    ("endpoint", "path"), [("predict", "/predict"), ("completions", "/v1/completions")]
)
def test_other_endpoints(server: FakeLLMServer, endpoint: str, path: str) -> None:
    plan = LoadPlan(target=server.url, endpoint=endpoint, duration=0.5).validated()  # type: ignore[arg-type]
    result = run_generator(plan)
    window = result.window_records
    assert window and all(r.ok and r.output_tokens == 4 for r in window)
    if endpoint == "predict":
        # a whole answer has no first token: no TTFT (not its E2E), no TPOT
        assert all(r.ttft is None and r.tpot is None and not r.streamed for r in window)
        assert result.window_records and all(r.e2e > 0 for r in window)
        assert server.bodies[-1] == {"prompt": "请解释什么是量子计算", "max_new_tokens": 100}
        assert ("TTFT", path) not in _entries(result)
    else:
        assert all(r.ttft is not None and r.ttft < r.e2e for r in window)
        assert server.bodies[-1]["prompt"] == "请解释什么是量子计算"
        assert server.bodies[-1]["model"] == "fake-llm"  # found through /v1/models


def test_unreachable_target_counts_connection_errors() -> None:
    plan = LoadPlan(target=f"http://127.0.0.1:{free_port()}", duration=0.3).validated()
    result = run_generator(plan)
    stats = summarize(
        result.records,
        window_start=result.window_start,
        window_end=result.window_end,
        sent=result.sent,
    )
    assert stats.requests > 0 and stats.successes == 0
    assert all("Connection" in kind or "refused" in kind for kind in stats.errors_by_kind)


def test_repository_locustfile_under_plain_locust(server: FakeLLMServer) -> None:
    """The seed's way: `locust -f locustfile.py --host ...` (headless here)."""
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py")]
    command += ["--host", server.url, "--headless", "-u", "2", "-r", "2", "-t", "4s", "--json"]
    command += ["--endpoint", "predict", "--max-tokens", "7"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {(r["method"], r["name"]): r for r in json.loads(done.stdout)}
    predict = rows["POST", "/predict"]
    assert predict["num_requests"] >= 2 and predict["num_failures"] == 0  # each user's
    assert server.bodies[-1] == {"prompt": "请解释什么是量子计算", "max_new_tokens": 7}
