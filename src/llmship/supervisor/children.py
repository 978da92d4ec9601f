"""Child processes of ``llmship up``: started in their own session, logged to files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

STOP_TIMEOUT = 8.0
"""Seconds a child has to stop cleanly (the servers give requests in flight 5 s)."""


class Child:
    """One ``python -m llmship ...`` process with its output appended to ``log_path``."""

    def __init__(self, name: str, args: list[str], log_path: Path, env: dict[str, str]):
        self.name = name
        self.args = args
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llmship", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
            )

    def exit_code(self) -> int | None:
        """The exit status once the process has ended; None while it runs."""
        return self.proc.poll() if self.proc else None

    def terminate(self) -> None:
        """Ask for a clean shutdown: SIGTERM, which every llmship process handles (SIGINT
        may be ignored, as in a job a shell started in the background)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Wait for the process to end; SIGKILL it after ``timeout`` seconds. False when
        it had to be killed."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False
        return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout`` seconds."""
        self.terminate()
        self.wait_stopped(timeout)

    def tail(self, lines: int = 5) -> str:
        """The last lines of the child's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
