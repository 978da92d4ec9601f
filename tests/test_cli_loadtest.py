"""`llmship loadtest` through the real command line: usage errors (exit 2), a run
against the fake LLM server (exit 0, reports, the registry), and one real run of
`--release` with the real SmolLM2 model (exit 1 on an impossible SLO)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from _cli import Result, Run, cli_runner
from _procs import LlmshipProcess, free_port
from fakes_loadtest import VERSION, FakeLLMServer
from llmship.registry import Registry
from llmship.release.spec import parse_spec


@pytest.fixture
def state(cli_home: Path) -> Path:
    """A clean working directory (conftest's ``cli_home``): no llmship.yaml, env dev."""
    return cli_home


@pytest.fixture
def run(state: Path) -> Run:
    """Run `llmship loadtest ...`."""
    cli = cli_runner()

    def _run(*args: str, code: int = 0) -> Result:
        return cli("loadtest", *args, code=code)

    return _run


def _registry(state: Path) -> Registry:
    return Registry.open(f"sqlite:///{state / 'state' / 'registry.db'}", home=state / "state")


def _register(state: Path, ref: str) -> None:
    name, version = ref.split("@")
    spec = parse_spec(
        {
            "name": name,
            "version": version,
            "backend": "openai",
            "model": {"base_url": "http://127.0.0.1:9/v1", "id": "fake-llm"},
        }
    )
    with _registry(state) as registry:
        registry.register(spec, actor="tester")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


# -- usage errors: exit 2 before any load ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --target URL or --release NAME@VERSION (exactly one)"),
        (["--target", "http://x", "--release", "a@1.0.0"], "exactly one"),
        (["--release", "a@1.0.0", "--ref", "a@1.0.0"], "--ref goes with --target"),
        (["--target", "http://x", "--rate", "2", "--users", "3"], "--rate (open loop) excludes"),
        (["--target", "http://x", "--arrival", "poisson"], "give --rate too"),
        (["--target", "http://x", "--slo", "ttft_p42=1"], "valid keys: ttft_mean, ttft_p50"),
        (["--target", "http://x", "--slo", "ttft_p95"], "KEY=VALUE"),
        (
            ["--target", "http://x", "--slo", "error_rate=150%"],
            "an error rate must be between 0 and 100% (0 and 1 as a fraction, e.g. 1% or "
            "0.01); '150%' was given",
        ),
        (["--target", "http://x", "--duration", "3x"], "--duration: not a duration: '3x'"),
        (["--target", "http://x", "--endpoint", "embed"], "--endpoint must be one of"),
        (["--target", "localhost:1"], "--target must be an http(s) URL"),
        (["--target", "http://x", "--users", "0"], "--users must be at least 1"),
        (["--target", "http://127.0.0.1:9", "--ref", "nope@1.0.0"], "nope"),
    ],
)
def test_usage_errors_exit_2(run: Run, args: list[str], message: str) -> None:
    result = run(*args, code=2)
    assert message in " ".join(result.output.split())


def test_an_unknown_flag_exits_2(run: Run) -> None:
    assert "No such option" in run("--target", "http://x", "--bogus", code=2).output


def test_an_unreachable_target_exits_2(run: Run) -> None:
    result = run("--target", f"http://127.0.0.1:{free_port()}", "--duration", "1", code=2)
    assert "cannot reach the target" in result.output


def test_a_failing_first_request_exits_2(run: Run, fake: FakeLLMServer, state: Path) -> None:
    prompts = state / "prompts.txt"
    prompts.write_text("FAIL now\n", encoding="utf-8")
    result = run("--target", fake.url, "--prompts", str(prompts), code=2)
    assert "the first request to" in result.output and "HTTP 503" in result.output


def test_config_file_errors_exit_2(run: Run, state: Path) -> None:
    (state / "llmship.yaml").write_text("gates:\n  loadtest:\n    slo: {p95: 1}\n")
    result = run("--target", "http://x", code=2)
    assert "gates.loadtest.slo: unknown SLO key 'p95'" in " ".join(result.output.split())


# -- a run against the fake server ----------------------------------------------------


def test_run_passes_writes_reports_and_records(run: Run, fake: FakeLLMServer, state: Path) -> None:
    # Given a registered release that the fake server names in X-Llmship-Version
    _register(state, VERSION)
    # and a config file whose SLO a flag overrides
    (state / "llmship.yaml").write_text(
        yaml.safe_dump({"gates": {"loadtest": {"slo": {"ttft_p95": 1e-9, "error_rate": 0.0}}}})
    )
    out = state / "reports"
    result = run(
        "--target",
        f"{fake.url}/v1",
        "--users",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "0.3s",
        "--max-tokens",
        "8",
        "--slo",
        "ttft_p95=5",
        "--slo",
        "throughput_min=1",
        "--json",
        str(out / "r.json"),
        "--markdown",
        str(out / "r.md"),
        "--html",
        str(out / "r.html"),
        "--junit",
        str(out / "r.xml"),
    )
    assert "Load test passed: fake-llm@1.0.0" in result.output
    report = json.loads((out / "r.json").read_text())
    assert report["passed"] is True and report["ref"] == VERSION
    assert report["slo"] == {"ttft_p95": 5.0, "error_rate": 0.0, "throughput_min": 1.0}
    assert report["model"] == "fake-llm" and report["target"] == fake.url
    results = report["results"]
    assert results["requests"] == results["successes"] > 10
    assert results["ttft"]["p95"] <= results["e2e"]["p95"]
    assert report["generator_cpu_per_request_s"] > 0 and report["generator_cpu_share"] > 0
    assert report["ref_source"] == "X-Llmship-Version"
    assert (out / "r.md").read_text().startswith("### ✅ Load test passed: fake-llm@1.0.0")
    assert "<svg" in (out / "r.html").read_text()
    junit = ET.parse(out / "r.xml").getroot()
    assert junit.get("tests") == "4" and junit.get("failures") == "0"
    # Then the run is stored against the release
    with _registry(state) as registry:
        runs = registry.list_gate_runs(kind="loadtest", ref=VERSION)
    assert len(runs) == 1 and runs[0].passed and runs[0].env == "dev"
    assert runs[0].summary["requests"] == results["requests"]
    assert runs[0].report["results"] == results


def test_run_without_a_registered_release_is_not_recorded(
    run: Run, fake: FakeLLMServer, state: Path
) -> None:
    result = run("--target", fake.url, "--endpoint", "predict", "--duration", "0.5")
    assert "not recorded in the registry" in " ".join(result.output.split())
    assert "Load test passed: fake-llm@1.0.0" in result.output


# -- one real run with the real model --------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_release_run_with_the_real_model(tmp_path: Path) -> None:
    """`llmship loadtest --release` serves the real SmolLM2 itself; an impossible SLO
    fails the gate (exit 1) while the numbers stay consistent."""
    from llmship.release.spec import load_spec
    from test_serve_process import write_spec

    home = tmp_path / ".llmship"
    with Registry.open(f"sqlite:///{home / 'registry.db'}", home=home) as registry:
        record, _ = registry.register(load_spec(write_spec(tmp_path / "s.yaml")), actor="t")
    args = ["loadtest", "--release", record.ref, "--users", "2", "--duration", "3s"]
    args += ["--warmup", "1s", "--max-tokens", "12", "--json", "r.json", "--junit", "r.xml"]
    args += ["--slo", "ttft_p95=0.000001", "--slo", "error_rate=0", "--seed", "1"]
    process = LlmshipProcess(args, tmp_path)
    try:
        code = process.wait(timeout=80)
    finally:
        process.stop()
    output = process.output()
    assert code == 1, output
    report = json.loads((tmp_path / "r.json").read_text())
    results = report["results"]
    assert report["ref"] == record.ref and report["passed"] is False
    assert [(v["key"], v["passed"]) for v in report["verdicts"]] == [
        ("ttft_p95", False),
        ("error_rate", True),
    ]
    # counts add up; the warm-up is left out
    assert results["requests"] == results["successes"] + results["errors"] >= 1
    assert results["errors"] == 0 and results["incomplete"] == 0
    assert results["sent"] == results["requests"]
    assert results["warmup_requests"] >= 1
    # TTFT <= E2E, tokens flow
    for stat in ("mean", "p50", "p90", "p95", "p99"):
        assert 0 < results["ttft"][stat] <= results["e2e"][stat]
    assert results["ttft"]["max"] <= results["e2e"]["max"]
    assert results["tokens_per_second"] > 0 and results["output_tokens"] > 0
    assert results["tpot"]["mean"] > 0 and results["itl"]["count"] > results["requests"]
    assert results["versions"] == {record.ref: results["requests"]}
    assert report["generator_cpu_per_request_s"] >= 0
    failures = ET.parse(tmp_path / "r.xml").getroot().findall(".//failure")
    assert [f.get("message", "").split(" ")[0] for f in failures] == ["ttft_p95"]
    assert "Load test FAILED" in output and "recorded as gate run" in output
    with Registry.open(f"sqlite:///{home / 'registry.db'}", home=home) as registry:
        (stored,) = registry.list_gate_runs(kind="loadtest", ref=record.ref)
    assert stored.passed is False and stored.summary["reasons"][0].startswith("ttft_p95")
