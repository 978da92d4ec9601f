"""Soak: steady load through `llmship up` while canaries start, promote and abort in a loop.

Everything is what a user runs, in a fresh project directory (a temporary copy of
``models/``) with its own ``LLMSHIP_HOME``:

* ``llmship up`` starts the stack (the bundled SmolLM2 as production, the gateway, the
  rollout controller; the model server of each candidate when its rollout starts);
* three more releases of the bundled model with other system prompts are written and
  registered with ``llmship models register``;
* a loop runs canaries with ``llmship rollout start soak-canary.yaml --candidate X``
  (25% -> 10 s -> a pause until a person acts -> 60% -> 10 s -> 100%, with a background
  ``error_rate`` analysis), waits for the pause (watching ``GET /api/v1/rollouts/ID``
  with the admin token, as the dashboard does), checks the candidate answered clients,
  then ``llmship rollout promote`` (the next cycle's candidate is one of the others)
  or ``llmship rollout abort``, alternately, until the rollout has ended; one cycle
  takes about 30-60 s on two cores;
* ``--clients`` threads send requests through the gateway the whole time, each as one
  of 100 sticky users: ``POST /predict``, ``POST /v1/chat/completions`` and the same
  streamed, a third each, 8 tokens; a ``--rated`` share of the answers gets a rating
  (1-5) on ``POST /feedback``, half of them a thumbs too, with the answer's query id
  and feedback token (its ``X-Llmship-Query-Id`` and ``X-Llmship-Feedback-Token``);
* every ``--sample-every`` seconds the gateway's and the controller's resident memory
  (``VmRSS`` in ``/proc/PID/status``) and open file descriptors (``/proc/PID/fd``) are
  read; the pids are the ones ``llmship up`` printed (a restart fails the soak).

Afterwards ``llmship up`` is stopped with SIGINT (Ctrl-C) and the soak fails unless:

* no client-visible error: every request got a 200, every stream ended with
  ``data: [DONE]`` and no error event, every rating a 2xx;
* no lost feedback: every rating and thumbs a client got a 2xx for is in the registry
  with its value (``Registry.page_feedback``, read once the stack has stopped);
* every rollout ended as the loop chose (promoted ones Healthy, aborted ones Aborted:
  none aborted by its analysis);
* memory and file descriptors flat: the least-squares slope of the samples after the
  warm-up (the first quarter, at least 60 s) is under ``RSS_BOUND_MIB_PER_MIN`` and
  ``FD_BOUND_PER_MIN`` for both processes, when there are ``JUDGED_AFTER_S`` seconds
  of them (shorter runs print the slopes only). docs/benchmarks.md says why these bounds.

    .venv/bin/python benchmarks/soak.py [--seconds 600] [--clients 3] [--json out.json]

``make soak`` runs it (``SOAK_SECONDS`` to change the length). Exit status 0 when every
check passes, 1 when one fails or something broke (with ``llmship up``'s output); the
figures are printed whenever the run got to its end, and the project directory with
every log is kept when a check fails (or with ``--keep``)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from _common import BenchmarkError, Proc, environment, exit_on_sigterm, free_port, percentile
from _soak import Clients, Rating, Sampler, Samples, slope_per_min
from llmship.registry import Registry

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = "dev"
STABLE = "smollm2-chat@1.0.0"
PROMPTS = {
    "1.1.0": "You are a concise assistant.",
    "1.2.0": "You are a friendly assistant who answers in plain words.",
    "1.3.0": "You are a careful assistant; answer briefly.",
}
"""The candidates: the bundled release with another system prompt each."""
RSS_BOUND_MIB_PER_MIN = 0.5
"""Largest RSS slope (MiB per minute, after the warm-up) taken as flat."""
FD_BOUND_PER_MIN = 0.5
"""Largest slope of open file descriptors (per minute, after the warm-up) taken as flat."""
JUDGED_AFTER_S = 300.0
"""Seconds of samples after the warm-up below which the slopes are printed but not
judged: a shorter window cannot tell a leak from the warm-up's tail (a run of about
400 s or more is judged; ``make soak``'s 600 s is)."""
SPEC = {
    "name": "soak-canary",
    "description": "The soak's canary: 25% -> 10 s -> a person -> 60% -> 10 s -> 100%.",
    "progressDeadline": "5m",
    "strategy": {
        "canary": {
            "steps": [
                {"setWeight": 25},
                {"pause": {"duration": "10s"}},
                {"pause": {}},
                {"setWeight": 60},
                {"pause": {"duration": "10s"}},
                {"setWeight": 100},
            ],
            "analysis": {"templates": [{"templateName": "errors"}]},
        }
    },
    "analysisTemplates": [
        {
            "name": "errors",
            "metrics": [
                {
                    "name": "error-rate",
                    "interval": "5s",
                    "initialDelay": "5s",
                    "inconclusiveLimit": 1000,
                    "failureLimit": 0,
                    "successCondition": "result <= 0.05",
                    "provider": {"builtin": {"metric": "error_rate", "window": "30s"}},
                }
            ],
        }
    ],
}
ENDS = {"promote": "Healthy", "abort": "Aborted"}
"""The phase a rollout ends in after each action of a person."""
HELD_AT = 2
"""The index of the spec's ``pause: {}`` step, where a person promotes or aborts."""


# -- the user's side: a project, its commands, `llmship up` ---------------------------------


class Project:
    """A fresh project directory with its own ``LLMSHIP_HOME``; runs ``llmship`` there."""

    def __init__(self, root: Path, port: int):
        self.root = root
        self.home = root / ".llmship"
        self.url = f"http://127.0.0.1:{port}"
        shutil.copytree(REPO / "models", root / "models")
        (root / "soak-canary.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSHIP_")}
        env |= {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "LLMSHIP_HOME": str(self.home),
            "LLMSHIP_GATEWAY_PORT": str(port),
            "LLMSHIP_ENDPOINT_MAX_AGE": "30",
            "PYTHONUNBUFFERED": "1",
        }
        self.env = env
        self.commands: list[tuple[str, float]] = []
        """Each command run and its seconds."""

    def llmship(self, *args: str) -> str:
        """Run ``llmship ARGS`` to its end; its output; BenchmarkError unless it exits 0."""
        began = time.monotonic()
        done = subprocess.run(
            [str(BIN / "llmship"), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.commands.append((" ".join(args[:2]), time.monotonic() - began))
        if done.returncode != 0:
            raise BenchmarkError(f"llmship {' '.join(args)}: exit {done.returncode}\n{done.stdout}")
        return done.stdout

    def register_candidates(self) -> list[str]:
        """Write and register the releases of ``PROMPTS``; their refs."""
        bundled = yaml.safe_load((self.root / "models" / "smollm2-chat-1.0.0.yaml").read_text())
        refs = []
        for version, system in PROMPTS.items():
            path = self.root / "models" / f"smollm2-chat-{version}.yaml"
            data = bundled | {"version": version, "prompt": {"system": system}}
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            self.llmship("models", "register", str(path.relative_to(self.root)))
            refs.append(f"smollm2-chat@{version}")
        return refs

    def up(self) -> Proc:
        """Start ``llmship up`` and return once it says ``ready`` (stopped if it does not)."""
        proc = Proc(
            "llmship up",
            [str(BIN / "llmship"), "up"],
            self.root / "up.log",
            env=self.env,
            cwd=self.root,
            stop_signal=signal.SIGINT,
        )
        deadline = time.monotonic() + 300
        while "ready" not in proc.tail(200):
            proc.check()
            if time.monotonic() > deadline:
                proc.stop()
                raise BenchmarkError(f"llmship up not ready:\n{proc.tail()}")
            time.sleep(0.5)
        return proc


# -- the canary loop -------------------------------------------------------------------


@dataclass
class Cycle:
    candidate: str
    action: str
    started: float
    held: float = 0.0
    ended: float = 0.0
    phase: str = ""
    answered: int = 0


class Loop:
    """Canaries started, then promoted or aborted alternately, until ``until``."""

    def __init__(self, project: Project, clients: Clients, candidates: list[str], up: Proc):
        self.project = project
        self.clients = clients
        self.refs = [STABLE, *candidates]
        self.up = up
        token = (project.home / "admin-token").read_text().strip()
        self.http = httpx.Client(
            base_url=project.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        self.production = STABLE
        self.cycles: list[Cycle] = []

    def run(self, until: float) -> None:
        while time.monotonic() < until:
            self.cycle("promote" if len(self.cycles) % 2 == 0 else "abort")

    def cycle(self, action: str) -> None:
        others = [r for r in self.refs if r != self.production]
        candidate = others[len(self.cycles) % len(others)]
        cycle = Cycle(candidate, action, time.monotonic())
        self.cycles.append(cycle)
        self.project.llmship(
            "rollout", "start", "soak-canary.yaml", "--candidate", candidate, "--env", ENV
        )
        found = self.http.get("/api/v1/rollouts", params={"env": ENV, "active": "true"}).json()
        if found["total"] != 1:
            raise BenchmarkError(f"no active rollout after `rollout start`: {found}")
        rollout_id = found["items"][0]["id"]
        self._wait(rollout_id, lambda r: r["step_index"] == HELD_AT and r["paused"], 180)
        self._wait_answered(cycle)
        cycle.held = time.monotonic()
        reason = f"soak cycle {len(self.cycles)}"
        self.project.llmship("rollout", action, "--env", ENV, "--reason", reason)
        final = self._wait(rollout_id, lambda r: not r["active"], 180)
        cycle.ended, cycle.phase = time.monotonic(), final["phase"]
        if cycle.phase == "Healthy":
            self.production = candidate

    def _wait_answered(self, cycle: Cycle) -> None:
        """Until the candidate has answered a client (it takes 25% of the traffic)."""
        deadline = time.monotonic() + 120
        while True:
            cycle.answered = sum(
                1
                for r in self.clients.snapshot()
                if r.sent >= cycle.started and r.version == cycle.candidate
            )
            if cycle.answered or time.monotonic() > deadline:
                return
            time.sleep(0.5)

    def _wait(self, rollout_id: int, done: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            self.up.check()
            detail: dict[str, Any] = self.http.get(f"/api/v1/rollouts/{rollout_id}").json()
            if done(detail):
                return detail
            if not detail["active"]:
                raise BenchmarkError(f"rollout {rollout_id} ended early: {detail['message']}")
            if time.monotonic() > deadline:
                raise BenchmarkError(f"rollout {rollout_id} stuck: {detail['step']}")
            time.sleep(1.0)


# -- the checks and the report -----------------------------------------------------------


def stored_feedback(home: Path) -> dict[tuple[str, str], int]:
    """Every rating and thumbs in the registry: (query id, kind) -> value."""
    registry = Registry.open(f"sqlite:///{home / 'registry.db'}", home=home)
    try:
        stored: dict[tuple[str, str], int] = {}
        offset = 0
        while True:
            page, total = registry.page_feedback(env=ENV, limit=500, offset=offset)
            stored |= {(r.query_id, r.kind): r.value for r in page}
            offset += len(page)
            if not page or offset >= total:
                return stored
    finally:
        registry.close()


def lost_feedback(ratings: list[Rating], stored: dict[tuple[str, str], int]) -> list[str]:
    """Each acknowledged rating or thumbs not in ``stored`` with its value."""
    lost = []
    for r in ratings:
        if not 200 <= r.status < 300:
            continue
        wanted = {"rating": r.rating}
        if r.thumbs:
            wanted["thumbs"] = 1 if r.thumbs == "up" else 0
        for kind, value in wanted.items():
            if stored.get((r.query_id, kind)) != value:
                lost.append(f"{r.query_id} {kind}={value}: stored {stored.get((r.query_id, kind))}")
    return lost


def trend(samples: Samples, warmup: float) -> dict[str, Any]:
    """Medians, ranges and slopes (per minute, after ``warmup`` s) of one process."""
    after = [p for p in samples.points if p[0] >= warmup]
    rss, rss_se = slope_per_min([(t, m) for t, m, _ in after])
    fds, fds_se = slope_per_min([(t, float(f)) for t, _, f in after])
    return {
        "samples": len(after),
        "rss_mib_median": statistics.median(m for _, m, _ in after) if after else None,
        "rss_mib_first_last": [after[0][1], after[-1][1]] if after else None,
        "rss_mib_per_min": rss,
        "rss_mib_per_min_se": rss_se,
        "fds_median": statistics.median(f for _, _, f in after) if after else None,
        "fds_min_max": [min(f for _, _, f in after), max(f for _, _, f in after)]
        if after
        else None,
        "fds_per_min": fds,
        "fds_per_min_se": fds_se,
        "points": samples.points,
    }


def figures(
    clients: Clients, loop: Loop, sampler: Sampler, stored: dict[tuple[str, str], int], args: Any
) -> dict[str, Any]:
    requests = clients.snapshot()
    warmup = max(60.0, args.seconds / 4)
    by_kind = {
        kind: {
            "requests": sum(1 for r in requests if r.kind == kind),
            "p50_s": percentile([r.seconds for r in requests if r.kind == kind], 0.5),
            "p95_s": percentile([r.seconds for r in requests if r.kind == kind], 0.95),
        }
        for kind in ("predict", "chat", "stream")
    }
    acked = [r for r in clients.ratings if 200 <= r.status < 300]
    lost = lost_feedback(clients.ratings, stored)
    cycle_s = [c.ended - c.started for c in loop.cycles if c.ended]
    return {
        "seconds": args.seconds,
        "clients": args.clients,
        "requests": len(requests),
        "requests_per_s": len(requests) / max(1e-9, args.seconds),
        "by_kind": by_kind,
        "errors": [asdict(r) for r in requests if r.status != 200 or r.problem][:20],
        "error_count": sum(1 for r in requests if r.status != 200 or r.problem),
        "answered_by": {
            v: sum(1 for r in requests if r.version == v) for v in sorted(set(loop.refs))
        },
        "ratings_sent": len(clients.ratings),
        "ratings_acked": len(acked),
        "rows_expected": sum(2 if r.thumbs else 1 for r in acked),
        "rows_stored": len(stored),
        "feedback_errors": [asdict(r) for r in clients.ratings if r.problem][:20],
        "lost_feedback": lost[:20],
        "lost_count": len(lost),
        "cycles": [asdict(c) | {"seconds": c.ended - c.started} for c in loop.cycles],
        "cycle_s_median": statistics.median(cycle_s) if cycle_s else None,
        "promoted": sum(1 for c in loop.cycles if c.phase == "Healthy"),
        "aborted": sum(1 for c in loop.cycles if c.phase == "Aborted"),
        "warmup_s": warmup,
        "judged": args.seconds - warmup >= JUDGED_AFTER_S,
        "sample_every_s": args.sample_every,
        "processes": {n: trend(s, warmup) for n, s in sampler.samples.items()},
        "sampler_problems": sampler.problems,
        "commands": {
            name: statistics.median(s for n, s in loop.project.commands if n == name)
            for name in sorted({n for n, _ in loop.project.commands})
        },
    }


def failures(fig: dict[str, Any]) -> list[str]:
    """Every check that failed, in words."""
    out = []
    if fig["error_count"]:
        out.append(f"{fig['error_count']} client-visible errors, e.g. {fig['errors'][:3]}")
    if fig["feedback_errors"]:
        out.append(f"ratings not acknowledged: {fig['feedback_errors'][:3]}")
    if fig["lost_count"]:
        out.append(
            f"{fig['lost_count']} acknowledged ratings or thumbs missing from the registry: "
            f"{fig['lost_feedback'][:5]}"
        )
    wrong = [c for c in fig["cycles"] if c["phase"] != ENDS[c["action"]]]
    if wrong:
        out.append(f"rollouts that did not end as chosen: {wrong}")
    unused = [c for c in fig["cycles"] if not c["answered"]]
    if unused:
        out.append(f"canaries whose candidate answered no client at 25%: {unused}")
    out += fig["sampler_problems"]
    if not fig["judged"]:
        return out  # too short a window after the warm-up to tell a leak from warming up
    for name, t in fig["processes"].items():
        if not t["rss_mib_per_min"] < RSS_BOUND_MIB_PER_MIN:
            out.append(f"{name}: RSS grows {t['rss_mib_per_min']:.3f} MiB/min")
        if not t["fds_per_min"] < FD_BOUND_PER_MIN:
            out.append(f"{name}: open fds grow {t['fds_per_min']:.3f}/min")
    return out


def print_figures(fig: dict[str, Any]) -> None:
    print(f"\nsoak: {fig['seconds']:g} s, {fig['clients']} clients")
    print(
        f"  requests: {fig['requests']} ({fig['requests_per_s']:.2f}/s), "
        f"errors {fig['error_count']}"
    )
    for kind, k in fig["by_kind"].items():
        print(f"    {kind:8} {k['requests']:5}  p50 {k['p50_s']:.2f} s  p95 {k['p95_s']:.2f} s")
    print(f"  answered by: {fig['answered_by']}")
    print(
        f"  feedback: {fig['ratings_acked']}/{fig['ratings_sent']} ratings acknowledged, "
        f"{fig['rows_expected']} rows expected, {fig['lost_count']} lost "
        f"({fig['rows_stored']} rows in the registry)"
    )
    print(
        f"  canaries: {len(fig['cycles'])} cycles ({fig['promoted']} promoted, {fig['aborted']} "
        f"aborted), median {fig['cycle_s_median'] or 0:.1f} s per cycle"
    )
    print(f"  command medians (s): {', '.join(f'{n} {s:.1f}' for n, s in fig['commands'].items())}")
    judged = "" if fig["judged"] else f" (not judged: under {JUDGED_AFTER_S:.0f} s after it)"
    print(
        f"  after a {fig['warmup_s']:.0f} s warm-up, sampled every "
        f"{fig['sample_every_s']:g} s{judged}:"
    )
    for name, t in fig["processes"].items():
        print(
            f"    {name:10} RSS {t['rss_mib_first_last'][0]:.1f} -> "
            f"{t['rss_mib_first_last'][1]:.1f} MiB (median {t['rss_mib_median']:.1f}), slope "
            f"{t['rss_mib_per_min']:+.3f} ± {t['rss_mib_per_min_se']:.3f} MiB/min "
            f"(bound {RSS_BOUND_MIB_PER_MIN}); fds median {t['fds_median']:g} "
            f"(range {t['fds_min_max']}), slope {t['fds_per_min']:+.3f} ± "
            f"{t['fds_per_min_se']:.3f}/min (bound {FD_BOUND_PER_MIN})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600"))
    )
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rated", type=float, default=0.4, help="share of answers rated")
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the project directory")
    args = parser.parse_args()
    if args.seconds <= 0 or args.clients < 1 or not 0 <= args.rated <= 1 or args.sample_every <= 0:
        parser.error("--seconds, --clients and --sample-every must be positive, --rated in [0, 1]")
    exit_on_sigterm()
    root = Path(tempfile.mkdtemp(prefix="llmship-soak-"))
    project = Project(root / "project", free_port())
    print(f"soak in {project.root} for {args.seconds:g} s")
    up = project.up()
    clients = Clients(project.url, args.clients, args.rated)
    try:
        candidates = project.register_candidates()
        loop = Loop(project, clients, candidates, up)
        started = time.monotonic()
        sampler = Sampler(up, args.sample_every, started)
        sampler.start()
        clients.start()
        try:
            loop.run(until=started + args.seconds)
        finally:
            clients.stop()
            sampler.stop()
            loop.http.close()
            args.seconds = time.monotonic() - started
    except BaseException:
        print(f"--- llmship up\n{up.tail(60)}", file=sys.stderr)
        raise
    finally:
        up.stop()
    fig = figures(clients, loop, sampler, stored_feedback(project.home), args)
    fig["environment"] = environment(["llmship", "llama-cpp-python", "uvicorn"])
    print_figures(fig)
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2))
    failed = failures(fig)
    for line in failed:
        print(f"FAIL: {line}")
    print("PASS" if not failed else f"FAIL ({len(failed)} checks)")
    if not args.keep and not failed:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as exc:
        print(f"soak broke: {exc}", file=sys.stderr)
        sys.exit(1)
