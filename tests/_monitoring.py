"""Real Prometheus and Alertmanager for tests (Debian's `prometheus` and
`prometheus-alertmanager`, which `make test` installs): free ports, a temp
directory each, readiness polls, clean stops."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from _procs import free_port

MISSING = (
    "{binary} is not installed: run `make test`, which installs it, or "
    "`apt-get install -y prometheus prometheus-alertmanager`"
)


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AssertionError(MISSING.format(binary=name))
    return found


class _Daemon:
    """A monitoring daemon on a free local port, its output in a log file."""

    name = ""

    def __init__(self, workdir: Path, argv: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{self.name}.log"
        self._log = self.log_path.open("wb")
        address = f"--web.listen-address=127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*argv, address], cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {timeout:g}s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


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
