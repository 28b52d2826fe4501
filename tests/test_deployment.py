"""docker-compose.yml, .env.example and the Dockerfile agree with the code.

Each service runs a real ``longcat-monitor`` command with options that exist, every ``MONITOR_*``
variable named anywhere is a setting, every setting is in ``.env.example``, and services start only
once Postgres is healthy and the schema migrated.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from monitor.cli import cli
from monitor.config import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
SETTINGS = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
MONITOR_VAR = re.compile(r"\bMONITOR_[A-Z0-9_]+\b")
#: The services built from this repository's image (everything but Postgres).
APP_SERVICES = ("migrate", "scheduler", "dashboard", "gateway", "simulator")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def resolve(argv: list[str]) -> click.Command:
    """The command ``longcat-monitor ARGV`` runs; fails on an unknown command or option."""
    group: click.Command = cli
    args = list(argv)
    while isinstance(group, click.Group) and args and not args[0].startswith("-"):
        name = args.pop(0)
        sub = group.get_command(click.Context(group), name)
        assert sub is not None, f"no command {name!r} in `longcat-monitor {' '.join(argv)}`"
        group = sub
    assert not isinstance(group, click.Group), f"`{' '.join(argv)}` names a group, not a command"
    # Parse the options as click would, without running anything: a typo raises here.
    context = group.make_context(group.name, args, resilient_parsing=False)
    assert context.params is not None
    return group


def test_every_service_runs_a_real_command(compose: dict[str, Any]) -> None:
    by_name = services(compose)
    assert set(APP_SERVICES) <= set(by_name)
    expected = {
        "migrate": "upgrade",
        "scheduler": "scheduler",
        "dashboard": "dashboard",
        "gateway": "gateway",
        "simulator": "simulate",
    }
    for name in APP_SERVICES:
        command = by_name[name]["command"]
        assert isinstance(command, list), f"{name}: give the command as a list"
        assert resolve(command).name == expected[name], name


def test_resolve_catches_typos() -> None:
    with pytest.raises(AssertionError):
        resolve(["schedular"])
    with pytest.raises(click.UsageError):
        resolve(["scheduler", "--metric-port", "9464"])
    with pytest.raises(click.BadParameter):
        resolve(["scheduler", "--metrics-port", "many"])
    with pytest.raises(AssertionError):
        resolve(["db"])


def test_services_listen_where_they_are_published(compose: dict[str, Any]) -> None:
    by_name = services(compose)
    for name, port in (("dashboard", 8501), ("gateway", 8787), ("scheduler", 9464)):
        command = by_name[name]["command"]
        assert "0.0.0.0" in command, f"{name} must listen on every address in its container"
        assert str(port) in command
        assert any(str(p).endswith(f":{port}") for p in by_name[name]["ports"]), name
    health = " ".join(by_name["dashboard"]["healthcheck"]["test"])
    assert "/_stcore/health" in health


def test_services_wait_for_postgres_and_the_migration(compose: dict[str, Any]) -> None:
    by_name = services(compose)
    postgres = by_name["postgres"]
    assert str(postgres["image"]).startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volumes = [str(v).split(":", 1) for v in postgres["volumes"]]
    assert ["postgres-data", "/var/lib/postgresql/data"] in volumes
    assert "postgres-data" in compose["volumes"]

    migrate = by_name["migrate"]["depends_on"]
    assert migrate == {"postgres": {"condition": "service_healthy"}}
    assert by_name["migrate"]["restart"] == "no"  # one-shot
    for name in ("scheduler", "dashboard", "gateway"):
        depends = by_name[name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
    assert by_name["simulator"]["profiles"] == ["try"]
    for name in ("postgres", *APP_SERVICES):
        assert "profiles" not in by_name[name] or name == "simulator", name


def test_the_gateway_cannot_start_without_its_token(compose: dict[str, Any]) -> None:
    gateway = services(compose)["gateway"]["environment"]
    assert str(gateway["MONITOR_GATEWAY_TOKEN"]).startswith("${MONITOR_GATEWAY_TOKEN:?")


def test_the_dashboard_is_local_or_behind_its_password(compose: dict[str, Any]) -> None:
    """Finding 9 of issue 12: it was published on every interface with no password. Now it is
    published on the host's loopback only, and cannot start without a password either (it
    listens on every address inside its container, which the command refuses without one)."""
    dashboard = services(compose)["dashboard"]
    assert [str(p) for p in dashboard["ports"]] == ["127.0.0.1:8501:8501"]
    password = str(dashboard["environment"]["MONITOR_DASHBOARD_PASSWORD"])
    assert password.startswith("${MONITOR_DASHBOARD_PASSWORD:?")
    assert "MONITOR_DATABASE_URL" in dashboard["environment"]  # the shared environment, kept
    assert re.search(r"^MONITOR_DASHBOARD_PASSWORD=$", ENV_EXAMPLE.read_text(), re.MULTILINE)


def test_compose_uses_only_known_variables(compose: dict[str, Any]) -> None:
    named = set(MONITOR_VAR.findall(COMPOSE.read_text()))
    assert "MONITOR_DATABASE_URL" in named
    assert named <= SETTINGS, named - SETTINGS
    for name in APP_SERVICES:
        service = services(compose)[name]
        assert service["env_file"] == ".env", name
        assert set(service["environment"]) <= SETTINGS, name


def env_example_names() -> list[str]:
    """Variables set or shown (commented out) in .env.example, in order."""
    assignment = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=")
    return [m[1] for line in ENV_EXAMPLE.read_text().splitlines() if (m := assignment.match(line))]


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    names = env_example_names()
    monitor_names = [n for n in names if n.startswith(ENV_PREFIX)]
    assert len(monitor_names) == len(set(monitor_names)), "a variable is listed twice"
    assert set(monitor_names) == SETTINGS, (
        f"missing: {sorted(SETTINGS - set(monitor_names))}; "
        f"unknown: {sorted(set(monitor_names) - SETTINGS)}"
    )
    others = set(names) - set(monitor_names)
    assert others <= {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB"}, others


def test_env_example_as_given_is_a_valid_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The uncommented lines (blank required values) load; the commented defaults are real."""
    from monitor.config import load_settings

    defaults = load_settings()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^(#\s*)?(MONITOR_[A-Z0-9_]+)=(.*)$", line)
        if match is None:
            continue
        commented, name, value = match.groups()
        if commented is None:
            monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.gateway_token is None  # left for the user to fill in
    assert settings.dashboard_password is None
    assert settings.retention_days is None
    shown = {
        m[1]: m[2]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if (m := re.match(r"^#\s*(MONITOR_[A-Z0-9_]+)=(.+)$", line))
    }
    # Spot-check that the defaults shown are the defaults.
    assert shown["MONITOR_QUOTA_TZ"] == defaults.quota_tz
    assert int(shown["MONITOR_DEFAULT_QUOTA"]) == defaults.default_quota
    assert int(shown["MONITOR_PARTITION_DAYS_AHEAD"]) == defaults.partition_days_ahead
    assert int(shown["MONITOR_SPOOL_MAX_BYTES"]) == defaults.spool_max_bytes
    assert shown["MONITOR_UPSTREAM_URL"] == defaults.upstream_url
    assert int(shown["MONITOR_GATEWAY_MAX_BODY_BYTES"]) == defaults.gateway_max_body_bytes
    assert float(shown["MONITOR_GATEWAY_HEADER_TIMEOUT_S"]) == defaults.gateway_header_timeout_s
    assert float(shown["MONITOR_GATEWAY_IDLE_TIMEOUT_S"]) == defaults.gateway_idle_timeout_s
    assert int(shown["MONITOR_GATEWAY_MAX_CONCURRENCY"]) == defaults.gateway_max_concurrency


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"longcat-monitor": "monitor.cli:main"}
    text = DOCKERFILE.read_text()
    assert re.search(r'^ENTRYPOINT \["longcat-monitor"\]$', text, re.MULTILINE)
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    assert re.search(r"^RUN pip install \.", text, re.MULTILINE)
    user = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    # What the image copies is what the package needs, and .dockerignore keeps secrets out.
    for folder in ("monitor", "dashboard", "migrations"):
        assert f"COPY {folder} ./{folder}" in text
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and ".git" in ignored
