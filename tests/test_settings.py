"""Settings: environment over llmship.yaml over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from _cli import Run
from llmship.errors import SpecError
from llmship.settings import load_settings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for var in (
        "LLMSHIP_CONFIG",
        "LLMSHIP_ENV",
        "LLMSHIP_QUEUE_SIZE",
        "LLMSHIP_DATABASE_URL",
        "LLMSHIP_HOME",
        "LLMSHIP_REPLICAS",
        "LLMSHIP_N_THREADS",
    ):
        monkeypatch.delenv(var, raising=False)


def test_defaults() -> None:
    cfg = load_settings()
    assert (cfg.env, cfg.serve_port, cfg.queue_size, cfg.log_prompts) == ("dev", 8000, 16, False)
    assert cfg.registry_url.startswith("sqlite:///") and cfg.registry_url.endswith(
        ".llmship/registry.db"
    )


def test_environment_beats_file_beats_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "llmship.yaml").write_text(
        "env: staging\nqueue_size: 3\nserve_port: 9000\ngates: {}\n"
    )
    cfg = load_settings()
    assert (cfg.env, cfg.queue_size, cfg.serve_port) == ("staging", 3, 9000)
    monkeypatch.setenv("LLMSHIP_QUEUE_SIZE", "7")
    assert load_settings().queue_size == 7
    assert load_settings(queue_size=1).queue_size == 1


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "conf" / "prod.yaml"
    other.parent.mkdir()
    other.write_text("env: prod\n")
    monkeypatch.setenv("LLMSHIP_CONFIG", str(other))
    assert load_settings().env == "prod"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("queue_size: -1\n", "queue_size"),
        ("env: Prod Env\n", "env"),
        ("database_url: not-a-url\n", "database_url"),
        ("- a list\n", "must be a mapping"),
        ("env: [unclosed\n", "not valid YAML"),
        ("replicas: 0\n", "replicas: 0: use a whole number from 1 to 64"),
        ("replicas: two\n", "replicas: 'two': use a whole number"),
        ("replicas: {chat: 0}\n", "chat: 0 is not a whole number from 1 to 64"),
        ("replicas: {Chat: 2}\n", "'Chat' is not a release NAME or NAME@VERSION"),
        ("replicas: {'chat@': 2}\n", "'chat@' is not a release NAME or NAME@VERSION"),
        ("n_threads: 0\n", "n_threads: 0: Input should be greater than or equal to 1"),
    ],
)
def test_invalid_settings_say_what_to_fix(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "llmship.yaml").write_text(content)
    with pytest.raises(SpecError, match=message):
        load_settings()


RULE = "use 1 to 32 lowercase letters, digits or '-', starting with a letter (e.g. prod)"


def test_a_bad_env_option_names_the_option_the_value_and_the_rule() -> None:
    with pytest.raises(SpecError) as info:
        load_settings(env="PROD")
    assert (
        info.value.message
        == f"invalid settings: --env 'PROD' is not a valid environment name; {RULE}"
    )


def test_a_bad_env_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSHIP_ENV", "PROD")
    with pytest.raises(SpecError) as info:
        load_settings()
    assert info.value.message == (
        f"invalid settings: LLMSHIP_ENV='PROD' is not a valid environment name; {RULE}"
    )


def test_a_bad_value_in_the_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "llmship.yaml").write_text("env: prod_eu\nqueue_size: -1\n")
    with pytest.raises(SpecError) as info:
        load_settings()
    message = info.value.message
    assert f"llmship.yaml: env: 'prod_eu' is not a valid environment name; {RULE}" in message
    assert "llmship.yaml: queue_size: -1: Input should be greater than or equal to 0" in message
    assert "pattern" not in message


def test_the_command_line_says_which_option_was_wrong(run: Run) -> None:
    result = run("alias", "list", "--env", "PROD", code=2)
    text = " ".join(result.output.split())
    assert f"--env 'PROD' is not a valid environment name; {RULE}" in text
    assert "^[a-z]" not in text


def test_postgres_url_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSHIP_DATABASE_URL", "postgresql+psycopg://u@db/llmship")
    assert load_settings().registry_url == "postgresql+psycopg://u@db/llmship"


def test_missing_config_named_by_environment_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMSHIP_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(SpecError, match="no such file"):
        load_settings()


def test_replicas_for_every_release_or_by_name_and_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_settings()
    assert (cfg.replicas, cfg.n_threads, cfg.replicas_of("chat@1.0.0")) == (1, None, 1)
    (tmp_path / "llmship.yaml").write_text("replicas: 3\nn_threads: 2\n")
    cfg = load_settings()
    assert (cfg.replicas_of("chat@1.0.0"), cfg.n_threads) == (3, 2)
    # NAME@VERSION wins over NAME; a release in neither gets one server
    (tmp_path / "llmship.yaml").write_text("replicas: {chat: 2, chat@1.1.0: 4}\n")
    cfg = load_settings()
    counts = [cfg.replicas_of(r) for r in ("chat@1.0.0", "chat@1.1.0", "other@1.0.0")]
    assert counts == [2, 4, 1]
    # From the environment: a number, or the mapping in JSON or YAML flow style
    monkeypatch.setenv("LLMSHIP_REPLICAS", "2")
    assert load_settings().replicas == 2
    monkeypatch.setenv("LLMSHIP_REPLICAS", '{"chat": 5}')
    assert load_settings().replicas_of("chat@9.0.0") == 5
    monkeypatch.setenv("LLMSHIP_REPLICAS", "{chat@1.0.0: 2}")
    assert load_settings().replicas == {"chat@1.0.0": 2}
    assert load_settings(n_threads=1).n_threads == 1


def test_a_bad_threads_option_names_the_option() -> None:
    with pytest.raises(SpecError) as info:
        load_settings(n_threads=0)
    assert info.value.message == (
        "invalid settings: --threads 0: Input should be greater than or equal to 1"
    )
