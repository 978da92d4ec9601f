"""Two environments' stacks in one home (`llmship up --env staging` and `--env prod`, as
`llmship demo` runs them): each logs to its own folder, and both share one admin token
even when they start at the same moment."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from rich.console import Console

from llmship.settings import Settings
from llmship.supervisor.stack import Stack, ensure_admin_token


def stack_of(home: Path, env: str) -> Stack:
    cfg = Settings(home=home, env=env)
    return Stack(cfg, gateway_port=0, console=Console(file=io.StringIO()))


def test_each_environment_logs_to_its_own_folder(tmp_path: Path) -> None:
    # Given the stacks of staging and prod in one home
    staging, prod = stack_of(tmp_path, "staging"), stack_of(tmp_path, "prod")
    # Then their children write to different files, named as before, in one folder per env
    assert staging.logs == tmp_path / "logs" / "staging"
    assert prod.logs == tmp_path / "logs" / "prod"
    for name in ("gateway", "controller", "serve:chat@1.0.0#1"):
        a, b = staging._child(name).log_path, prod._child(name).log_path
        assert a != b and a.name == b.name, (a, b)
    # And they share the admin token kept in the home
    assert staging.token == prod.token
    assert staging.token_path == prod.token_path == tmp_path / "admin-token"


def test_stacks_starting_at_once_get_one_token(tmp_path: Path) -> None:
    # When eight stacks start at the same moment on a home without a token
    cfg = Settings(home=tmp_path)
    barrier = threading.Barrier(8)
    tokens: list[str] = []

    def start() -> None:
        barrier.wait()
        tokens.append(ensure_admin_token(cfg)[0])

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    # Then all of them use the one token written to the file, readable by its owner only
    path = tmp_path / "admin-token"
    assert len(tokens) == 8 and set(tokens) == {path.read_text().strip()}
    assert len(tokens[0]) >= 32
    assert path.stat().st_mode & 0o777 == 0o600


def test_an_empty_token_file_is_filled(tmp_path: Path) -> None:
    # Given an empty admin-token file (left by a crash before the write)
    # that others may read
    path = tmp_path / "admin-token"
    path.touch()
    path.chmod(0o644)
    # When a stack starts, it writes a new token there and uses it
    token, where = ensure_admin_token(Settings(home=tmp_path))
    assert where == path and token and path.read_text().strip() == token
    # and only its owner may read it
    assert path.stat().st_mode & 0o777 == 0o600
    # And the next one reads it back
    assert ensure_admin_token(Settings(home=tmp_path))[0] == token
