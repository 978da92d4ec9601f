"""llmship.loadtest.ops, the load-test workflow as functions: a run against a fake
OpenAI-compatible server (measured, written, recorded, told to a progress callback),
the refusals before any load, recording that fails, and the attribution of a run
to the release that answered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from _procs import FakeUpstream
from fakes_loadtest import VERSION, FakeLLMServer
from llmship.errors import LlmshipError, NotFoundError
from llmship.loadtest import LoadPlan, evaluate, summarize, timeline
from llmship.loadtest.ops import (
    Event,
    Measured,
    Measuring,
    ReportFiles,
    ServingRelease,
    attribute,
    record,
    run,
    write_reports,
)
from llmship.loadtest.report_model import LoadTestReport, build_report, parse_report
from llmship.loadtest.runner import GeneratorResult
from llmship.registry import Registry
from llmship.release.promotion_guard import missing_gates
from llmship.release.spec import parse_spec
from llmship.settings import Settings, load_settings

SLOS = {"ttft_p95": 5.0, "error_rate": 0.0}


@pytest.fixture
def cfg(cli_home: Path) -> Settings:
    """Settings of a clean home (registry in cli_home/state, env dev, actor tester)."""
    return load_settings()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def _register(cfg: Settings, ref: str, base_url: str = "http://127.0.0.1:9/v1") -> None:
    name, version = ref.split("@")
    spec = parse_spec(
        {
            "name": name,
            "version": version,
            "backend": "openai",
            "model": {"base_url": base_url, "id": "fake-llm"},
        }
    )
    with Registry.open(cfg.registry_url, home=cfg.home) as registry:
        registry.register(spec, actor="tester")


def _plan(target: str, **changes: object) -> LoadPlan:
    plan = LoadPlan(target=target, users=2, duration=0.6, warmup=0.2, max_tokens=8)
    return replace(plan, **changes).validated()  # type: ignore[arg-type]


def _fixed_report(ref: str | None, versions: dict[str, int]) -> LoadTestReport:
    """A report of no load at all, attributed as ``ref``, answered by ``versions``."""
    plan = LoadPlan(target="http://127.0.0.1:9", duration=1.0).validated()
    generator = GeneratorResult(
        records=[],
        window_start=0.0,
        window_end=1.0,
        drained=1.0,
        sent=0,
        dropped=0,
        incomplete=0,
        cpu_window_s=0.0,
        cpu_run_s=0.0,
        cpu_process_s=0.0,
        locust_version="2.0",
    )
    stats = replace(summarize([], window_start=0.0, window_end=1.0, sent=0), versions=versions)
    return build_report(
        plan=plan,
        stats=stats,
        verdicts=evaluate({}, stats),
        slos={},
        generator=generator,
        timeline=timeline([], window_start=0.0, window_end=1.0),
        ref=ref,
    )


# -- a whole run ------------------------------------------------------------------------


def test_run_measures_writes_and_records(
    fake: FakeLLMServer, cfg: Settings, tmp_path: Path
) -> None:
    # Given a registered release that the fake server names in X-Llmship-Version
    _register(cfg, VERSION)
    events: list[Event] = []
    files = ReportFiles(json=tmp_path / "out" / "r.json", junit=tmp_path / "out" / "r.xml")
    # When the service runs a load test against it
    outcome = run(_plan(fake.url), SLOS, cfg, files=files, progress=events.append)
    # Then the report is typed, passed, and attributed to the release that answered
    report = outcome.report
    assert outcome.passed and report.passed
    assert report.ref == VERSION and report.ref_source == "X-Llmship-Version"
    assert report.model == "fake-llm" and report.target == fake.url
    assert [v.key for v in report.verdicts] == ["ttft_p95", "error_rate"]
    assert all(v.passed for v in report.verdicts)
    assert report.results.requests == report.results.successes > 0
    # and the files asked for are written, the JSON one being the report itself
    assert outcome.files == {"json": files.json, "junit": files.junit}
    assert files.json is not None and json.loads(files.json.read_text()) == report.to_json()
    # and the run is stored against the release, its report readable as a typed one
    assert outcome.recording is not None and outcome.recording.error is None
    with Registry.open(cfg.registry_url, home=cfg.home) as registry:
        (stored,) = registry.list_gate_runs(kind="loadtest", ref=VERSION)
    assert stored.id == outcome.run_id and stored.passed and stored.env == cfg.env
    assert parse_report(stored.report) == report
    assert stored.summary["requests"] == report.results.requests
    # and progress went to the callback: ticks of the generator, then Measured, nothing more
    assert not any(isinstance(e, ServingRelease) for e in events)
    ticks = [e for e in events if isinstance(e, Measuring)]
    assert ticks and all(t.total == pytest.approx(0.8) and not t.open_loop for t in ticks)
    assert [t.elapsed for t in ticks] == sorted(t.elapsed for t in ticks)
    assert events[-1] == Measured() and events.count(Measured()) == 1


def test_run_against_an_anonymous_upstream_is_not_recorded(cfg: Settings) -> None:
    # Given an OpenAI-compatible server that names no release (no X-Llmship-Version)
    upstream = FakeUpstream()
    try:
        # When a failing SLO is given, and no progress callback
        outcome = run(_plan(upstream.url, rate=10.0, users=1), {"throughput_min": 1000.0}, cfg)
    finally:
        upstream.close()
    # Then the run fails its gate, names no release, and is recorded nowhere
    report = outcome.report
    assert not outcome.passed and report.reasons[0].startswith("throughput_min ")
    assert report.ref is None and report.ref_source is None and report.model == "fake"
    assert report.load.mode == "open" and report.results.versions == {}
    assert outcome.recording is None and outcome.run_id is None and outcome.files == {}
    assert upstream.hits > 1


def test_an_unknown_ref_fails_before_any_load(fake: FakeLLMServer, cfg: Settings) -> None:
    before = fake.requests
    with pytest.raises(NotFoundError):
        run(_plan(fake.url), SLOS, cfg, ref="ghost@1.0.0")
    assert fake.requests == before


def test_release_and_ref_together_are_refused(cfg: Settings) -> None:
    with pytest.raises(LlmshipError, match="not both"):
        run(_plan("http://127.0.0.1:9"), SLOS, cfg, release="a@1.0.0", ref="a@1.0.0")


# -- the steps --------------------------------------------------------------------------


def test_record_of_an_unregistered_release(cfg: Settings) -> None:
    report = _fixed_report("ghost@1.0.0", {})
    # not named by the user: a Recording that says why, no exception
    recording = record(report, cfg, required=False)
    assert recording is not None and recording.run is None
    assert recording.error is not None and "ghost" in recording.error
    # named by the user: the registry's error
    with pytest.raises(NotFoundError):
        record(report, cfg, required=True)
    # no release at all: nothing to record
    assert record(_fixed_report(None, {}), cfg, required=True) is None


def test_write_reports_names_a_file_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LlmshipError, match=r"cannot write .*r\.md"):
        write_reports(_fixed_report(None, {}), ReportFiles(markdown=blocker / "r.md"))
    assert write_reports(_fixed_report(None, {}), ReportFiles()) == {}


@pytest.mark.parametrize(
    ("ref", "source", "versions", "expected"),
    [
        ("a@1", "--ref", {"a@1": 3}, ("a@1", "--ref")),
        ("a@1", "--release", {"b@2": 3}, ("a@1", "--release")),
        (None, None, {"b@2": 3}, ("b@2", "X-Llmship-Version")),
        (None, None, {"b@2": 3, "c@1": 1}, (None, None)),
        (None, None, {}, (None, None)),
    ],
)
def test_attribute(
    ref: str | None,
    source: str | None,
    versions: dict[str, int],
    expected: tuple[str | None, str | None],
) -> None:
    report = attribute(_fixed_report(ref, versions), source=source)
    assert (report.ref, report.ref_source) == expected


def test_run_serves_a_release(fake: FakeLLMServer, cfg: Settings) -> None:
    # Given a release whose backend is the fake OpenAI-compatible server, named by an alias
    _register(cfg, "proxied@1.0.0", base_url=f"{fake.url}/v1")
    with Registry.open(cfg.registry_url, home=cfg.home) as registry:
        registry.set_alias(cfg.env, "loadtested", "proxied@1.0.0", actor="tester", reason="test")
    events: list[Event] = []
    # When the service load-tests the alias
    outcome = run(
        _plan("http://unused.invalid"), SLOS, cfg, release="loadtested", progress=events.append
    )
    # Then it served the resolved release itself, said so first, and recorded the run
    report = outcome.report
    assert events[0] == ServingRelease("proxied@1.0.0")
    assert report.ref == "proxied@1.0.0" and report.ref_source == "--release"
    assert report.target.startswith("http://127.0.0.1:") and report.results.successes > 0
    assert outcome.run_id is not None


def test_a_run_that_made_no_request_is_recorded_as_an_error(cfg: Settings) -> None:
    _register(cfg, "chat@1.0.0")
    recording = record(_fixed_report("chat@1.0.0", {}), cfg, required=True)
    assert recording is not None and recording.run is not None
    run_ = recording.run
    assert run_.passed is False and "checked nothing" in run_.summary["error"]
    with Registry.open(cfg.registry_url, home=cfg.home) as registry:
        # it satisfies no requirement of the load-test gate
        assert missing_gates(["loadtest"], registry.latest_gate_runs("chat@1.0.0")) == ["loadtest"]
