"""docker-compose.yml and the Dockerfile cannot run here (no Docker engine), so their promises
are checked instead: the file's shape and its `${...}` interpolations (read as compose reads
them), every command it runs (and every `docker compose run` shown beside it) is a real
`veo-batch` command with options that command accepts, every VEO_ variable is a known setting,
no service is handed a secret it does not use, and the image installs the locked versions as
user `veo`, who owns the folders the volumes are mounted on."""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from veobatch.cli import cli
from veobatch.errors import ExitCode
from veobatch.settings import SETTING_ENV_NAMES, Settings

ROOT = Path(__file__).parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
OURS = {name: s for name, s in COMPOSE["services"].items() if "build" in s}
DOCKERFILE = (ROOT / "Dockerfile").read_text()

# What a user sets (in the shell or .env) for a whole deployment.
EVERY_SECRET = {
    "VEO_API_BASE": "https://relay.example",
    "VEO_API_KEY": "sk-test-key-0123456789",
    "VEO_API_TOKENS": "token-for-callers-0123456789",
    "VEO_API_READ_TOKENS": "token-for-viewers-0123456789",
    "VEO_WEBHOOK_SECRET": "whsec-0123456789",
    "AWS_ACCESS_KEY_ID": "AKIATEST",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-0123456789",
}


# ---------------------------------------------------------------------------- interpolation


class BadInterpolation(ValueError):
    """A `$` compose would refuse ("invalid interpolation format")."""


class MissingRequired(LookupError):
    """A `${VAR:?message}` or `${VAR?message}` whose variable is not set."""


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """`text` with its variables replaced as compose does: `$$` is a `$`, `$VAR` and `${VAR}`
    are the value or empty, and `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`,
    `${VAR?message}`, `${VAR:+other}`, `${VAR+other}` as in the shell (nested too)."""
    out: list[str] = []
    at = 0
    while at < len(text):
        if text[at] != "$":
            out.append(text[at])
            at += 1
        elif text.startswith("$$", at):
            out.append("$")
            at += 2
        elif text.startswith("${", at):
            end = _closing(text, at + 2)
            out.append(_braced(text[at + 2 : end], env))
            at = end + 1
        elif match := _NAME.match(text, at + 1):
            out.append(env.get(match[0], ""))
            at = match.end()
        else:
            raise BadInterpolation(f"a lone $ in {text!r}")
    return "".join(out)


def _closing(text: str, start: int) -> int:
    depth, at = 1, start
    while at < len(text):
        if text.startswith("${", at):
            depth, at = depth + 1, at + 2
            continue
        if text[at] == "}":
            depth -= 1
            if depth == 0:
                return at
        at += 1
    raise BadInterpolation(f"unclosed ${{ in {text!r}")


def _braced(inner: str, env: Mapping[str, str]) -> str:
    match = _NAME.match(inner)
    if not match:
        raise BadInterpolation(f"no variable name in ${{{inner}}}")
    name, rest = match[0], inner[match.end() :]
    if not rest:
        return env.get(name, "")
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise BadInterpolation(f"${{{inner}}}: {rest[0]!r} is not one of {_OPERATORS}")
    word = rest[len(operator) :]
    value = env.get(name)
    if operator.startswith(":"):
        value = value or None  # with a colon, an empty value counts as unset
    if operator.endswith("-"):
        return value if value is not None else interpolate(word, env)
    if operator.endswith("?"):
        if value is None:
            raise MissingRequired(f"required variable {name} is missing a value: {word}")
        return value
    return interpolate(word, env) if value is not None else ""


class _EverythingSet(Mapping[str, str]):
    """An environment where every variable is set (so that only a malformed `$` can fail)."""

    def __getitem__(self, name: str) -> str:
        return "x"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, name: object) -> bool:
        return True


def strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string value of the file (compose interpolates values, not keys), with its path."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, f"{path}[{index}]")


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """The file as compose sees it for any command, with `env` as the shell and .env."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, env) for value in node]
    return node


def container_env(service: str, env: Mapping[str, str]) -> dict[str, str]:
    """The environment a service's container gets: its values interpolated; a variable listed
    without a value takes the shell's (or .env's), and is left out when neither has it."""
    found: dict[str, str] = {}
    for name, value in OURS[service]["environment"].items():
        if value is None:
            if name in env:
                found[name] = env[name]
        else:
            found[name] = interpolate(str(value), env)
    return found


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A:-${B:-x}}/y", {}, "x/y"),
        ("$$A and $A", {"A": "1"}, "$A and 1"),
        ("${A:+on}", {"A": "1"}, "on"),
        ("${A:?say}", {"A": "v"}, "v"),
    ],
)
def test_the_interpolation_reads_as_compose_does(
    text: str, env: dict[str, str], expected: str
) -> None:
    assert interpolate(text, env) == expected


@pytest.mark.parametrize("text", ["${VEO_RATE", "${}", "$ 5", "${VEO RATE}", "${A/x/y}", "${1A}"])
def test_a_malformed_interpolation_is_found(text: str) -> None:
    with pytest.raises(BadInterpolation):
        interpolate(text, _EverythingSet())


def test_a_required_variable_is_demanded_by_the_whole_file() -> None:
    """Why the file has none: compose resolves every service for every command."""
    with pytest.raises(MissingRequired, match="VEO_API_KEY"):
        resolve({"worker": {"environment": {"VEO_API_KEY": "${VEO_API_KEY:?set it}"}}}, {})


def test_every_interpolation_is_well_formed() -> None:
    found = list(strings(COMPOSE))
    assert any("${" in text for _, text in found)
    for path, text in found:
        try:
            interpolate(text, _EverythingSet())
        except BadInterpolation as exc:
            pytest.fail(f"{path}: {exc}")


def test_any_command_works_with_nothing_set() -> None:
    """`docker compose run --rm scheduler status` must not ask for the worker's key or the
    api's tokens: with an empty shell and no .env the whole file still resolves."""
    resolve(COMPOSE, {})


# ---------------------------------------------------------------------------- structure


def test_the_services_are_there() -> None:
    assert set(OURS) == {"migrate", "scheduler", "worker", "api"}
    assert {"postgres", "redis"} <= set(COMPOSE["services"])
    for name, service in COMPOSE["services"].items():
        if name in OURS:
            assert service["build"] == ".", name
            assert "image" not in service, name
        else:
            assert re.fullmatch(r"[a-z0-9./-]+:[\w.-]+", service["image"]), name
        assert isinstance(service.get("environment", {}), dict), f"{name}: use the map form"


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each of a service's volumes, interpolated with nothing set."""
    return [
        (parts[0], parts[1])
        for parts in (interpolate(v, {}).split(":") for v in service.get("volumes", []))
    ]


def test_every_named_volume_is_declared_and_used() -> None:
    declared = set(COMPOSE["volumes"])
    used = {
        source
        for service in COMPOSE["services"].values()
        for source, _ in _mounts(service)
        if not source.startswith((".", "/", "~"))
    }
    assert used == declared
    assert {"pgdata", "videos", "data"} <= declared


def test_each_service_is_given_settings_that_parse() -> None:
    for name in OURS:
        for env in ({}, EVERY_SECRET):
            Settings.from_env(container_env(name, env))  # raises ConfigError on a bad default


def test_workers_write_videos_where_the_setting_says() -> None:
    worker = OURS["worker"]
    assert "videos:/videos" in worker["volumes"]
    assert worker["environment"]["VEO_DOWNLOAD_DIR"] == "/videos"
    assert OURS["scheduler"]["environment"]["VEO_DOWNLOAD_DIR"] == "/videos"


def test_the_database_url_points_at_the_postgres_service() -> None:
    for name in OURS:
        env = OURS[name]["environment"]
        assert re.match(r"postgresql://veo:veo@postgres:5432/veo$", env["VEO_DATABASE_URL"]), name
    for name in ("scheduler", "worker"):
        assert OURS[name]["environment"]["VEO_REDIS_URL"].startswith("redis://redis:6379/")


# ---------------------------------------------------------------------------- settings


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_variable_is_a_known_setting(name: str) -> None:
    names = set(OURS[name]["environment"])
    assert names, name
    unknown = {n for n in names if n.startswith("VEO_")} - SETTING_ENV_NAMES
    assert not unknown, f"{name}: unknown settings {sorted(unknown)}"


def _mentioning(word: str) -> set[str]:
    """The services whose definition (merged anchors included) names `word` anywhere."""
    return {name for name, service in OURS.items() if word in yaml.safe_dump(service)}


@pytest.mark.parametrize(
    ("secret", "holders"),
    [
        ("VEO_API_KEY", {"worker"}),
        ("VEO_API_BASE", {"worker"}),
        ("AWS_SECRET_ACCESS_KEY", {"worker"}),
        ("VEO_API_TOKENS", {"api"}),
        ("VEO_WEBHOOK_SECRET", {"scheduler"}),
    ],
)
def test_each_secret_goes_only_to_the_service_that_uses_it(secret: str, holders: set[str]) -> None:
    assert _mentioning(secret) == holders
    given = {name for name in OURS if secret in container_env(name, EVERY_SECRET)}
    assert given == holders


def test_the_workers_take_the_key_from_the_shell_and_lack_it_when_unset() -> None:
    assert container_env("worker", EVERY_SECRET)["VEO_API_KEY"] == EVERY_SECRET["VEO_API_KEY"]
    assert "VEO_API_KEY" not in container_env("worker", {})
    assert "VEO_API_BASE" not in container_env("worker", {})


def test_the_api_will_not_start_without_its_tokens() -> None:
    """The api's tokens are not required by the file, so `serve` must refuse without them."""
    env: dict[str, str | None] = dict.fromkeys(SETTING_ENV_NAMES)
    env.update(container_env("api", {}))
    assert "VEO_API_TOKENS" not in env or env["VEO_API_TOKENS"] is None
    result = CliRunner().invoke(cli, OURS["api"]["command"], env=env)
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert "VEO_API_TOKENS" in result.stderr


# ---------------------------------------------------------------------------- commands


def parse_command(args: Sequence[str]) -> click.Command:
    """The command `veo-batch ARGS` runs, with ARGS parsed as the CLI parses them: an unknown
    command or option, a missing argument or a bad value raises click's error. An option must
    be the command's own, even for `worker` (which hands unknown options on to Celery)."""
    command: click.Command = cli
    path = ["veo-batch"]
    rest = list(args)
    while isinstance(command, click.Group):
        if not rest:
            raise click.UsageError(f"{' '.join(path)} needs a command")
        name = rest.pop(0)
        if name not in command.commands:
            raise click.UsageError(f"{' '.join(path)} has no command {name!r}")
        command, path = command.commands[name], [*path, name]
    own = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for arg in rest:
        if arg == "--":
            break
        flag = arg.split("=", 1)[0]
        if flag.startswith("-") and flag not in own:
            raise click.NoSuchOption(flag)
    command.make_context(" ".join(path), rest)
    return command


@pytest.mark.parametrize(
    "args",
    [
        ["sheduler"],
        ["db"],
        ["db", "upgrad"],
        ["worker", "--concurency", "4"],
        ["scheduler", "--metrics-port", "x"],
        ["serve", "--port", "99999"],
        ["budget", "NAME"],
    ],
)
def test_a_command_the_cli_would_refuse_is_found(args: list[str]) -> None:
    with pytest.raises(click.ClickException):
        parse_command(args)


def _commands() -> Iterator[tuple[str, list[str]]]:
    """Every veo-batch command the file runs: each service's, and its healthcheck's."""
    for name, service in sorted(OURS.items()):
        yield f"{name}.command", service["command"]
        test = service.get("healthcheck", {}).get("test", [])
        if test[:2] == ["CMD", "veo-batch"]:
            yield f"{name}.healthcheck", test[2:]


def _shown_runs() -> Iterator[tuple[str, str, list[str]]]:
    """Each `docker compose run --rm SERVICE ARGS` line of the file's comments and of the
    runbook: where it is, the service, and the veo-batch arguments (the service's own command
    when none are given)."""
    line_start = re.compile(r"^[#\s]*docker compose run --rm ([\w-]+)([^#\n]*)", re.MULTILINE)
    for where in ("docker-compose.yml", "docs/operations.md"):
        for match in line_start.finditer((ROOT / where).read_text()):
            yield where, match[1], shlex.split(match[2])


COMMANDS = dict(_commands())
SHOWN = list(_shown_runs())


@pytest.mark.parametrize("where", sorted(COMMANDS))
def test_each_service_runs_a_real_command(where: str) -> None:
    try:
        parse_command(COMMANDS[where])
    except click.ClickException as exc:
        pytest.fail(f"{where}: veo-batch {shlex.join(COMMANDS[where])}: {exc.format_message()}")


def test_the_commands_shown_beside_the_file_are_real() -> None:
    assert len({where for where, _, _ in SHOWN}) == 2, SHOWN
    assert any(service == "worker" for _, service, _ in SHOWN)
    for where, service, args in SHOWN:
        assert service in OURS, f"{where}: no service {service}"
        command = args or OURS[service]["command"]
        try:
            parse_command(command)
        except click.ClickException as exc:
            pytest.fail(f"{where}: veo-batch {shlex.join(command)}: {exc.format_message()}")


@pytest.mark.parametrize("name", ["scheduler", "worker"])
def test_the_healthchecks_ask_about_the_service_role(name: str) -> None:
    test = OURS[name]["healthcheck"]["test"]
    assert test[:4] == ["CMD", "veo-batch", "health", "--role"]
    assert test[4] == name


def test_the_api_is_ready_when_its_readyz_answers_and_the_metrics_ports_are_open() -> None:
    assert "/readyz" in " ".join(OURS["api"]["healthcheck"]["test"])
    for name, port in (("worker", "9101"), ("scheduler", "9102")):
        command = OURS[name]["command"]
        assert command[command.index("--metrics-port") + 1] == port
        assert port in OURS[name]["expose"]
    grace = int(OURS["worker"]["stop_grace_period"].removesuffix("s"))
    assert grace > Settings().stop_grace  # a worker's own bound on its stop (80 s by default)


# ---------------------------------------------------------------------------- the image


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continued lines joined), as (INSTRUCTION, rest)."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def shell_commands(script: str) -> list[list[str]]:
    """A RUN line's simple commands (split at &&, || and ;), each as its words."""
    commands: list[list[str]] = [[]]
    for word in shlex.split(script):
        if word in ("&&", "||", ";"):
            commands.append([])
        else:
            commands[-1].append(word)
    return [command for command in commands if command]


STEPS = instructions(DOCKERFILE)
RUNS = [
    (index, cmd)
    for index, (op, rest) in enumerate(STEPS)
    if op == "RUN"
    for cmd in shell_commands(rest)
]


def test_the_image_runs_veo_batch_as_veo() -> None:
    assert ("ENTRYPOINT", '["veo-batch"]') in STEPS
    assert ("COPY", "veobatch ./veobatch") in STEPS
    users = [rest for op, rest in STEPS if op == "USER"]
    assert users[-1] == "veo"
    assert any(cmd[0] == "useradd" and cmd[-1] == "veo" for _, cmd in RUNS)


def test_the_image_installs_the_versions_ci_tested() -> None:
    """The runtime lock, then veo-batch with no dependency of its own choosing."""
    installs = [(index, cmd) for index, cmd in RUNS if cmd[:2] == ["pip", "install"]]
    assert [cmd for _, cmd in installs] == [
        ["pip", "install", "--no-cache-dir", "-r", "requirements/runtime.txt"],
        ["pip", "install", "--no-cache-dir", "--no-deps", "."],
    ]
    copies = [index for index, (op, rest) in enumerate(STEPS) if op == "COPY"]
    lock_copied = next(i for i in copies if STEPS[i][1].split()[0] == "requirements/runtime.txt")
    assert lock_copied < installs[0][0]
    assert (ROOT / "requirements" / "runtime.txt").is_file()


def test_the_folders_the_volumes_mount_on_belong_to_veo() -> None:
    """Docker gives a new named volume the ownership of the image's folder it is mounted on:
    each one, and each folder a setting points into, must exist in the image and be veo's."""
    folders = {
        target
        for service in OURS.values()
        for source, target in _mounts(service)
        if not source.startswith((".", "/", "~"))
    }
    for name in OURS:
        env = container_env(name, {})
        folders |= {env[key] for key in ("VEO_DATA_DIR", "VEO_DOWNLOAD_DIR") if key in env}
    assert {"/videos", "/data"} <= folders
    made = {arg for _, cmd in RUNS if cmd[0] == "mkdir" for arg in cmd[1:] if arg[0] != "-"}
    owned: set[str] = set()
    for _, cmd in RUNS:
        if cmd[0] == "chown":
            owner, *paths = [arg for arg in cmd[1:] if not arg.startswith("-")]
            if owner.split(":")[0] == "veo":
                owned |= set(paths)
    assert folders <= made, folders - made
    assert folders <= owned, folders - owned
    last_user = max(index for index, (op, _) in enumerate(STEPS) if op == "USER")
    assert all(index < last_user for index, cmd in RUNS if cmd[0] in ("mkdir", "chown"))


# ---------------------------------------------------------------------------- .dockerignore


def _ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and line[0] != "#"]


def ignored(path: str, patterns: Sequence[str]) -> bool:
    """Whether .dockerignore keeps `path` (or a folder holding it) out of the build context."""
    parts = path.split("/")
    for pattern in patterns:
        anywhere = pattern.startswith("**/")
        bare = pattern.removeprefix("**/")
        for end in range(1, len(parts) + 1):
            starts = range(end) if anywhere else [0]
            if any(fnmatch.fnmatchcase("/".join(parts[s:end]), bare) for s in starts):
                return True
    return False


@pytest.mark.parametrize(
    "path",
    [
        ".git",
        ".venv/bin/python",
        ".env",
        "veobatch/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/content",
        "veo_batch.egg-info/PKG-INFO",
        "build/lib/veobatch/__init__.py",
        "veo-batch.db",
        "examples/shop/veo-batch.db-wal",
        "videos/jobs/sku-1.mp4",
        "veo-batch-data/images/a.jpg",
        "jobs/photos/sku-1.jpg",
        "jobs.example.results.csv",
        "bench/out/poll.json",
    ],
)
def test_the_build_context_leaves_out_local_state(path: str) -> None:
    assert ignored(path, _ignore_patterns())


def test_the_build_context_keeps_what_the_dockerfile_copies() -> None:
    sources = [
        source
        for op, rest in STEPS
        if op == "COPY"
        for source in rest.split()[:-1]
        if not source.startswith("--")
    ]
    assert "requirements/runtime.txt" in sources
    for source in [*sources, "veobatch/cli/app.py", "veobatch/migrations/versions"]:
        assert (ROOT / source).exists(), source
        assert not ignored(source, _ignore_patterns()), f"{source} is left out of the context"
