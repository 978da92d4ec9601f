"""Real Prometheus and Alertmanager for tests (Debian's `prometheus` and
`prometheus-alertmanager`, which `make test` installs): free ports, a temp
directory each, readiness polls, clean stops."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import httpx
import yaml

from _procs import Process, free_port

MISSING = (
    "{binary} is not installed: run `make test`, which installs it, or "
    "`apt-get install -y prometheus prometheus-alertmanager`"
)


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AssertionError(MISSING.format(binary=name))
    return found


class _Daemon(Process):
    """A monitoring daemon on a free local port, stopped with SIGTERM."""

    name = ""
    stop_signal = signal.SIGTERM

    def __init__(self, workdir: Path, argv: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        address = f"--web.listen-address=127.0.0.1:{self.port}"
        super().__init__(self.name, [*argv, address], workdir, workdir / f"{self.name}.log")

    def wait_ready(self, timeout: float = 30) -> None:
        self.wait_http(f"{self.url}/-/ready", timeout)


class Prometheus(_Daemon):
    """``prometheus`` scraping ``targets`` every second and evaluating ``rule_files``
    every second, sending alerts to ``alertmanager`` (a URL) when given."""

    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        rule_files: list[Path],
        alertmanager: str | None = None,
    ):
        workdir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "llmship", "static_configs": [{"targets": targets}]}],
        }
        if alertmanager:
            target = alertmanager.removeprefix("http://")
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        super().__init__(
            workdir,
            [
                binary("prometheus"),
                "--config.file=prometheus.yml",
                f"--storage.tsdb.path={workdir / 'data'}",
            ],
        )

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``promql`` gives now."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


class Alertmanager(_Daemon):
    """``prometheus-alertmanager`` with ``config`` (a mapping), clustering off."""

    name = "alertmanager"

    def __init__(self, workdir: Path, config: dict[str, Any]):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        super().__init__(
            workdir,
            [
                binary("prometheus-alertmanager"),
                "--config.file=alertmanager.yml",
                f"--storage.path={workdir / 'data'}",
                "--cluster.listen-address=",
            ],
        )
