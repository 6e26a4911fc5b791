"""docker-compose.yml cannot run here (no Docker engine), so its promises are checked instead:
every command it runs is a real `veo-batch` command, and every VEO_ variable a known setting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from veobatch.cli import cli
from veobatch.settings import SETTING_ENV_NAMES, Settings

ROOT = Path(__file__).parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OURS = {name: s for name, s in COMPOSE["services"].items() if "build" in s}


def test_the_image_runs_veo_batch() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["veo-batch"]' in dockerfile
    assert "COPY veobatch ./veobatch" in dockerfile


def test_the_services_are_there() -> None:
    assert set(OURS) == {"migrate", "scheduler", "worker", "api"}
    assert {"postgres", "redis"} <= set(COMPOSE["services"])
    assert {"pgdata", "videos"} <= set(COMPOSE["volumes"])


def test_workers_write_videos_where_the_setting_says() -> None:
    worker = OURS["worker"]
    assert "videos:/videos" in worker["volumes"]
    assert worker["environment"]["VEO_DOWNLOAD_DIR"] == "/videos"


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_service_runs_a_real_command(name: str) -> None:
    command = OURS[name]["command"]
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, f"{name}: veo-batch {' '.join(command)}: {result.output}"
    options = [arg for arg in command if arg.startswith("--")]
    for option in options:
        assert option in result.output, f"{name}: {option} is not an option of {command}"


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_variable_is_a_known_setting(name: str) -> None:
    names = set(OURS[name]["environment"])
    assert names, name
    unknown = {n for n in names if n.startswith("VEO_")} - SETTING_ENV_NAMES
    assert not unknown, f"{name}: unknown settings {sorted(unknown)}"


def test_the_database_url_points_at_the_postgres_service() -> None:
    env = OURS["worker"]["environment"]
    assert re.match(r"postgresql://veo:veo@postgres:5432/veo$", env["VEO_DATABASE_URL"])
    assert env["VEO_REDIS_URL"].startswith("redis://redis:6379/")


def test_only_the_workers_hold_the_provider_key() -> None:
    holders = {name for name, s in OURS.items() if "VEO_API_KEY" in s["environment"]}
    assert holders == {"worker"}
    assert "VEO_API_TOKENS" in OURS["api"]["environment"]
    assert OURS["scheduler"]["environment"]["VEO_DOWNLOAD_DIR"] == "/videos"


@pytest.mark.parametrize("name", ["scheduler", "worker"])
def test_the_healthchecks_run_a_real_command_of_the_service_role(name: str) -> None:
    test = OURS[name]["healthcheck"]["test"]
    assert test[:4] == ["CMD", "veo-batch", "health", "--role"]
    assert test[4] == name
    result = CliRunner().invoke(cli, [*test[2:], "--help"])
    assert result.exit_code == 0, result.output


def test_the_api_is_ready_when_its_readyz_answers_and_the_metrics_ports_are_open() -> None:
    assert "/readyz" in " ".join(OURS["api"]["healthcheck"]["test"])
    for name, port in (("worker", "9101"), ("scheduler", "9102")):
        command = OURS[name]["command"]
        assert command[command.index("--metrics-port") + 1] == port
        assert port in OURS[name]["expose"]
    grace = int(OURS["worker"]["stop_grace_period"].removesuffix("s"))
    assert grace > Settings().stop_grace  # a worker's own bound on its stop (80 s by default)
