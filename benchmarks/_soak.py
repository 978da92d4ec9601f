"""The soak's load and probes (``benchmarks/soak.py``): client threads sending requests
and ratings through the gateway, and samples of a process's memory and open file
descriptors from ``/proc``, with their least-squares slope."""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _common import BenchmarkError, Proc

QUESTIONS = (
    "What is a canary release?",
    "Name one colour of the sky.",
    "Say hello.",
    "Why do teams roll back a release?",
)

# -- the clients ---------------------------------------------------------------------------


@dataclass
class Request:
    """One request a client sent, and what came back."""

    sent: float
    kind: str
    status: int
    version: str
    query_id: str
    seconds: float
    problem: str = ""
    feedback_token: str = ""


@dataclass
class Rating:
    """One rating a client posted (with a thumbs, sometimes), and the answer's status."""

    query_id: str
    rating: int
    thumbs: str | None
    status: int
    problem: str = ""


class Clients:
    """``n`` client threads sending requests and ratings through the gateway."""

    def __init__(self, url: str, n: int, rated: float):
        self.url = url
        self.rated = rated
        self.requests: list[Request] = []
        self.ratings: list[Rating] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(n)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=180)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self._stop.is_set():
                user = f"user-{rng.randrange(100)}"
                kind = rng.choice(("predict", "chat", "stream"))
                request = self._ask(http, kind, user, rng.choice(QUESTIONS))
                with self._lock:
                    self.requests.append(request)
                if request.status == 200 and rng.random() < self.rated:
                    rating = self._rate(http, request, user, rng)
                    with self._lock:
                        self.ratings.append(rating)
                self._stop.wait(rng.uniform(0.1, 0.5))

    def _ask(self, http: httpx.Client, kind: str, user: str, question: str) -> Request:
        """One request of ``kind`` (``predict``, ``chat`` or ``stream``), read to its end."""
        headers = {"X-User-Id": user}
        sent = time.monotonic()
        if kind == "predict":
            path, body = "/predict", {"prompt": question, "max_new_tokens": 8}
        else:
            messages = [{"role": "user", "content": question}]
            path = "/v1/chat/completions"
            body = {"messages": messages, "max_tokens": 8, "stream": kind == "stream"}
        try:
            with http.stream("POST", path, json=body, headers=headers) as r:
                problem = read_stream(r) if kind == "stream" else read_whole(r)
        except httpx.HTTPError as exc:
            return Request(sent, kind, 0, "", "", time.monotonic() - sent, f"{exc!r}")
        return Request(
            sent,
            kind,
            r.status_code,
            r.headers.get("x-llmship-version", ""),
            r.headers.get("x-llmship-query-id") or r.headers.get("x-request-id", ""),
            time.monotonic() - sent,
            problem,
            r.headers.get("x-llmship-feedback-token", ""),
        )

    def _rate(self, http: httpx.Client, answer: Request, user: str, rng: random.Random) -> Rating:
        """Rate ``answer`` 1-5, half the time with a thumbs too, with its feedback token."""
        rating = rng.randint(1, 5)
        thumbs = rng.choice(("up", "down")) if rng.random() < 0.5 else None
        body: dict[str, Any] = {"query_id": answer.query_id, "rating": rating}
        if thumbs:
            body["thumbs"] = thumbs
        if answer.feedback_token:
            body["feedback_token"] = answer.feedback_token
        try:
            r = http.post("/feedback", json=body, headers={"X-User-Id": user})
        except httpx.HTTPError as exc:
            return Rating(answer.query_id, rating, thumbs, 0, f"{exc!r}")
        ok = 200 <= r.status_code < 300
        return Rating(answer.query_id, rating, thumbs, r.status_code, "" if ok else r.text[:300])

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)


def read_whole(r: httpx.Response) -> str:
    """Read a JSON answer: '' for a 200 with a JSON body, else what was wrong."""
    r.read()
    if r.status_code != 200:
        return r.text[:300]
    try:
        r.json()
    except ValueError:
        return f"not JSON: {r.text[:300]}"
    return ""


def read_stream(r: httpx.Response) -> str:
    """Read a streamed answer to its end: '' when it ended with ``[DONE]`` and no error
    event, else what was wrong."""
    if r.status_code != 200:
        r.read()
        return r.text[:300]
    done = False
    for line in r.iter_lines():
        if not line.startswith("data: "):
            continue
        data = line.removeprefix("data: ")
        if data == "[DONE]":
            done = True
            continue
        if done:
            return "data after [DONE]"
        event = json.loads(data)
        if "error" in event:
            return f"error event: {event['error']}"
    return "" if done else "the stream ended without data: [DONE]"


# -- memory and file descriptors --------------------------------------------------------


@dataclass
class Samples:
    """(seconds since the start, RSS in MiB, open fds) of one process."""

    pid: int
    points: list[tuple[float, float, int]] = field(default_factory=list)

    def take(self, now: float) -> None:
        status = Path(f"/proc/{self.pid}/status").read_text()
        rss = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if rss is None:  # a zombie has no VmRSS line
            raise OSError(f"no VmRSS in /proc/{self.pid}/status")
        rss_kib = int(rss.group(1))
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        self.points.append((now, rss_kib / 1024, fds))


def slope_per_min(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of (seconds, value) per minute, and its standard error."""
    n = len(points)
    if n < 3:
        return float("nan"), float("nan")
    xs = [p[0] / 60 for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    residual = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, (residual / (n - 2) / sxx) ** 0.5


class Sampler:
    """Samples the gateway and the controller every ``every`` seconds in a thread."""

    def __init__(self, up: Proc, every: float, started: float):
        self.up = up
        self.every = every
        self.started = started
        self.pids = pids(up)
        if set(self.pids) != {"gateway", "controller"}:
            raise BenchmarkError(f"llmship up did not print both pids:\n{up.tail()}")
        self.samples = {name: Samples(pid) for name, pid in self.pids.items()}
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic() - self.started
            if pids(self.up) != self.pids:
                self.problems.append(f"restarted at {now:.0f}s: {pids(self.up)} != {self.pids}")
                return
            for name, samples in self.samples.items():
                try:
                    samples.take(now)
                except OSError as exc:
                    self.problems.append(f"{name} (pid {samples.pid}) at {now:.0f}s: {exc}")
                    return
            self._stop.wait(self.every)


def pids(up: Proc) -> dict[str, int]:
    """The gateway's and the controller's pids, the latest ``llmship up`` printed."""
    text = up.log_path.read_text(errors="replace")
    found: dict[str, int] = {}
    for name, pattern in (
        ("gateway", r"started the gateway on port \d+, pid (\d+)"),
        ("controller", r"started the rollout controller, pid (\d+)"),
    ):
        matches = re.findall(pattern, text)
        if matches:
            found[name] = int(matches[-1])
    return found
