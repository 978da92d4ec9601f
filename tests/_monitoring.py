"""Real Prometheus and Alertmanager for tests (Debian's `prometheus` and
`prometheus-alertmanager`, which `make test` installs): free ports, a temp
directory each, readiness polls, clean stops."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def check_rules(exprs: Sequence[str], folder: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` over a rule file in ``folder`` that records expression
    ``i`` of ``exprs`` as ``x_i``: every expression parses when it exits 0."""
    rules = [{"record": f"x_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = folder / "exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
    return subprocess.run(
        [binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


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


DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SHIPPED_ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
SHIPPED_RULES = DEPLOY / "prometheus" / "rules.yml"


def shipped_alertmanager(gateway_url: str, token_file: Path) -> dict[str, Any]:
    """The shipped Alertmanager config, delivering rollbacks to ``gateway_url`` with the
    token in ``token_file``, and grouping within a second instead of 10 s (nothing else
    changed: the Slack receiver reads ``slack-webhook-url`` in the daemon's directory)."""
    config: dict[str, Any] = yaml.safe_load(SHIPPED_ALERTMANAGER.read_text())
    config["route"] |= {"group_wait": "1s", "group_interval": "1s"}
    [rollback] = [r for r in config["receivers"] if r["name"] == "llmship-rollback"]
    [webhook] = rollback["webhook_configs"]
    webhook["url"] = f"{gateway_url}/api/v1/alerts"
    webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return config


def shipped_rules(path: Path, for_: str = "0s") -> Path:
    """The shipped alerting rules written to ``path`` with every ``for:`` set to ``for_``
    (the expressions, labels and annotations as shipped), so a test need not wait minutes."""
    rules: dict[str, Any] = yaml.safe_load(SHIPPED_RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = for_
    path.write_text(yaml.safe_dump(rules, allow_unicode=True))
    return path


class Receiver:
    """A local HTTP server that records the JSON bodies POSTed to it (standing in for
    Slack, or for the gateway's webhook)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        """(path, body) of each POST, in order."""
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
