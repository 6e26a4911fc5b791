"""Several relay accounts behind one batch: the file that names them, the choice of an account
for each row, and runs over several mock relays at once (one out of balance, one down, one
healthy), in the embedded mode here and the distributed mode in test_distributed.py."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from tests.conftest import REDIS_URL
from tests.helpers import account_for, load_prompts, sender_for
from veobatch.accounts import store
from veobatch.accounts.routing import BREAKER, Candidate, Row, route
from veobatch.accounts.spec import DEFAULT, accounts_of
from veobatch.cli import cli
from veobatch.embedded_runner import EmbeddedRunner
from veobatch.errors import ConfigError
from veobatch.lifecycle import transitions
from veobatch.lifecycle.due import Rules, Wanted, due_work
from veobatch.lifecycle.fanout import Fanout
from veobatch.lifecycle.poll import poll_rows
from veobatch.lifecycle.progress import Progress
from veobatch.lifecycle.rate_limit import LocalRateLimiter
from veobatch.lifecycle.sender import Account
from veobatch.lifecycle.spend_rules import Spending
from veobatch.lifecycle.submit import submit_rows
from veobatch.provider.client import ProviderClient
from veobatch.provider.mock import MockConfig, MockProvider
from veobatch.provider.relay import RELAY
from veobatch.service import BatchService
from veobatch.settings import Rate, Secret, Settings
from veobatch.store import database
from veobatch.store.tables import Attempt, Batch, Job, RelayAccount

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------ the file


def accounts_file(tmp_path: Path, text: str, suffix: str = ".toml") -> Settings:
    path = tmp_path / f"accounts{suffix}"
    path.write_text(text, encoding="utf-8")
    return Settings(accounts=str(path), prices={"veo3.1": 250_000})


TWO = """
[accounts.relay-a]
base = "https://a.example.com"
key_env = "RELAY_A_KEY"
rate = "30/min"
max_in_flight = 4
priority = 2

[accounts.relay-b]
base = "https://b.example.com/"
key_env = "RELAY_B_KEY"
prices = { "veo3.1" = 0.2 }
daily_budget = 40
models = { "veo3.1" = "veo-3.1", "veo3-fast" = "veo3-fast" }
priority = 1
"""
KEYS = {"RELAY_A_KEY": "sk-a-123", "RELAY_B_KEY": "sk-b-456"}


def test_a_file_names_each_account_its_key_by_variable_in_priority_order(tmp_path: Path) -> None:
    b, a = accounts_of(accounts_file(tmp_path, TWO), KEYS)
    assert (b.name, b.base, b.key.reveal(), b.key_from) == (
        "relay-b",
        "https://b.example.com",
        "sk-b-456",
        "RELAY_B_KEY",
    )
    assert (b.prices, b.daily_budget, b.priority) == ({"veo3.1": 200_000}, 40_000_000, 1)
    assert (b.serves("veo3.1"), b.serves("veo2"), b.api_model("veo3.1")) == (True, False, "veo-3.1")
    assert (a.name, a.rate, a.max_in_flight) == ("relay-a", Rate(30, 60), 4)
    assert a.prices == {"veo3.1": 250_000}  # VEO_PRICES, where the account names none
    assert a.serves("anything")
    assert a.api_model("veo3.1") == "veo3.1"
    assert "sk-" not in repr(a) + repr(b)


def test_the_same_accounts_in_yaml_with_a_key_file(tmp_path: Path) -> None:
    (tmp_path / "b.key").write_text("sk-b-456\n")
    text = (
        "accounts:\n  relay-b:\n    base: https://b.example.com\n    key_file: b.key\n"
        "    models: [veo3.1]\n    rate: 2/s\n"
    )
    (b,) = accounts_of(accounts_file(tmp_path, text, ".yaml"), {})
    assert (b.key.reveal(), b.key_from, b.models) == (
        "sk-b-456",
        str(tmp_path / "b.key"),
        {"veo3.1": "veo3.1"},
    )


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "[accounts.a]\nbase = 'https://a'\nkey_env = 'RELAY_A_KEY'\nrat = '1/s'\n",
            "account 'a': unknown field 'rat'",
        ),
        (
            "[accounts.a]\nbase = 'ftp://a'\nkey_env = 'RELAY_A_KEY'\n",
            "account 'a': base: 'ftp://a' must start with http:// or https://",
        ),
        (
            "[accounts.a]\nbase = 'https://a'\nkey_env = 'NOT_SET_HERE'\n",
            "account 'a': key_env: the variable NOT_SET_HERE is not set",
        ),
        (
            "[accounts.a]\nbase = 'https://a'\n",
            "account 'a': key_env: give the name of the variable",
        ),
        (
            "[accounts.a]\nbase = 'https://a'\nkey_env = 'RELAY_A_KEY'\nmax_in_flight = 0\n",
            "account 'a': max_in_flight: 0 is not a whole number of at least 1",
        ),
        (
            "[accounts.a]\nbase = 'https://a'\nkey_env = 'RELAY_A_KEY'\nrate = 'fast'\n",
            "account 'a': rate: 'fast' is not a rate",
        ),
        (
            "[accounts.a]\nbase = 'https://a'\nkey_env = 'RELAY_A_KEY'\nprices = { x = -1 }\n",
            "account 'a': prices: x: -1 is not an amount",
        ),
        ("[accounts.a]\nkey_env = 'RELAY_A_KEY'\n", "account 'a': base: missing"),
        (
            "[accounts.a]\nbase = 'https://a'\nkey_env = 'RELAY_A_KEY'\n"
            "[accounts.b]\nbase = 'https://a'\nkey_env = 'RELAY_A_KEY'\n",
            "accounts 'a' and 'b' have the same base and key",
        ),
        ("[accounts.a\n", "not valid TOML"),
        ("", "give a table per account"),
    ],
)
def test_each_mistake_in_the_file_names_the_file_the_account_and_the_field(
    tmp_path: Path, text: str, said: str
) -> None:
    settings = accounts_file(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        accounts_of(settings, KEYS)
    assert str(error.value).startswith(f"VEO_ACCOUNTS: {tmp_path / 'accounts.toml'}: ")
    assert said in str(error.value)
    assert error.value.exit_code == 6
    assert "sk-a-123" not in str(error.value)


def test_without_a_file_the_relay_settings_are_the_one_default_account() -> None:
    settings = Settings(api_base="https://relay.example", api_key=Secret("sk-1"), rate=Rate(10, 60))
    (default,) = accounts_of(settings, {})
    assert (default.name, default.base, default.rate, default.key_from) == (
        DEFAULT,
        "https://relay.example",
        Rate(10, 60),
        "VEO_API_KEY",
    )
    assert accounts_of(Settings(), {}) == []


# ------------------------------------------------------------------------------ routing


def rows(count: int, model: str = "veo3.1", batch: int = 1) -> list[Row]:
    return [Row(n, batch, model) for n in range(count)]


def test_the_lowest_priority_then_the_lower_price_then_the_most_room_wins() -> None:
    cheap = Candidate("cheap", priority=1, prices={"veo3.1": 100})
    dear = Candidate("dear", priority=1, prices={"veo3.1": 200})
    first = Candidate("first", priority=0, prices={"veo3.1": 300}, cap=2)
    routing = route(rows(4), [cheap, dear, first], NOW)
    assert routing.going == {0: "first", 1: "first", 2: "cheap", 3: "cheap"}
    a = Candidate("a", interval=0.1)
    b = Candidate("b", interval=0.1, ready_in=0.05)
    spread = route(rows(6), [a, b], NOW).going
    assert Counter(spread.values()) == Counter({"a": 3, "b": 3})  # each where a slot comes first


def test_an_account_whose_next_slot_is_far_takes_rows_only_when_no_other_is_sooner() -> None:
    slow = Candidate("slow", priority=0, ready_in=30.0, interval=1.0)
    other = Candidate("other", priority=5, interval=0.5)
    assert set(route(rows(3), [slow, other], NOW).going.values()) == {"other"}
    assert set(route(rows(2), [slow], NOW).going.values()) == {"slow"}  # the only one: it waits


def test_rows_wait_while_every_account_is_full_or_cooling() -> None:
    full = Candidate("full", cap=1, in_flight=1)
    cooling = Candidate("cooling", cool_until=NOW + timedelta(seconds=30))
    routing = route(rows(2), [full, cooling], NOW)
    assert (routing.going, routing.waiting, routing.stuck) == ({}, [0, 1], {})
    alone = route(rows(1), [Candidate("c", cool_until=NOW + timedelta(seconds=7))], NOW)
    assert alone.retry_in == pytest.approx(7.0)  # until it has cooled down


def test_a_batch_stops_only_when_no_account_will_take_it_and_says_each_ones_state() -> None:
    paused = Candidate("a", paused="quota: 余额不足 (top up the account's balance)")
    spent = Candidate("b", prices={"veo3.1": 500_000}, spent=10_000_000, daily_budget=10_000_000)
    other_model = Candidate("c", models={"veo2": "veo2"})
    routing = route(rows(2), [paused, spent, other_model], NOW)
    assert routing.waiting == [0, 1]
    why = routing.stuck[1]
    assert "a: paused (quota: 余额不足" in why
    assert "b: daily budget spent (10000000 of 10000000 today, UTC)" in why
    assert "c: does not serve veo3.1" in why
    lone = route(rows(1), [Candidate("default", paused="auth: 无效的令牌 (fix VEO_API_KEY)")], NOW)
    assert lone.stuck == {1: "auth: 无效的令牌 (fix VEO_API_KEY)"}  # one account: its own words
    nobody = route(rows(1, "veo9"), [Candidate("a", models={"veo3.1": "x"})], NOW)
    assert "no account serves veo9" in nobody.stuck[1]


def test_an_account_that_failed_in_a_row_is_tried_with_one_row_once_it_has_cooled() -> None:
    probing = Candidate("flaky", priority=0, strikes=BREAKER)
    steady = Candidate("steady", priority=1)
    routing = route(rows(4), [probing, steady], NOW)
    assert list(routing.going.values()) == ["flaky", "steady", "steady", "steady"]


# ------------------------------------------------------------------------ mock relays


@contextmanager
def relays(*configs: MockConfig) -> Iterator[list[MockProvider]]:
    with ExitStack() as stack:
        yield [stack.enter_context(MockProvider(config)) for config in configs]


@contextmanager
def accounts_at(
    mocks: Sequence[MockProvider], names: Sequence[str], **per_name: dict[str, Any]
) -> Iterator[list[Account]]:
    """An account per mock relay, with its key; `per_name` sets an account's fields (a
    `rate` there is turned into its limiter; a `dialect` and a `key` go to its client)."""
    with ExitStack() as stack:
        made = []
        for mock, name in zip(mocks, names, strict=True):
            fields = dict(per_name.get(name, {}))
            rate = fields.pop("rate", None)
            limiter = LocalRateLimiter.for_rate(Rate.parse(rate)) if rate else None
            dialect = fields.pop("dialect", RELAY)
            key = fields.pop("key", mock.state.config.api_key)
            client = ProviderClient(
                mock.url, Secret(key), read_timeout=2.0, account=name, dialect=dialect
            )
            stack.enter_context(client)
            fields.setdefault("download_header", dialect.download_header(key))
            made.append(account_for(client, limiter, name=name, **fields))
        yield made


def run_through(
    engine: Engine, accounts: Sequence[Account], batch_id: int, **options: Any
) -> Progress:
    options.setdefault("concurrency", 8)
    runner = EmbeddedRunner(
        engine,
        sender_for(accounts),
        batch_id,
        tick=0.02,
        poll_claim=timedelta(minutes=2),
        **options,
    )
    return runner.run()


def created(mocks: Sequence[MockProvider]) -> Counter[str]:
    total: Counter[str] = Counter()
    for mock in mocks:
        total.update(mock.state.created_by_prompt)
    return total


def test_three_relays_one_empty_one_down_one_healthy_send_every_row_once(engine: Engine) -> None:
    empty = MockConfig(api_key="key-empty", balance=40, task_seconds=0.05)
    down = MockConfig(api_key="key-down", down=502)
    healthy = MockConfig(api_key="key-healthy", task_seconds=0.05)
    prompts = [f"row {n}" for n in range(300)]
    batch = load_prompts(engine, prompts)
    with relays(empty, down, healthy) as mocks, accounts_at(mocks, ["empty", "down", "ok"]) as acc:
        progress = run_through(engine, acc, batch)
        stats = [mock.stats() for mock in mocks]
    assert progress.state == "finished", progress
    assert progress.counts == {"succeeded": 300}
    assert created(mocks) == Counter(dict.fromkeys(prompts, 1))  # none twice, on any relay
    assert stats[0]["created"] == 40
    refused = stats[0]["requests"] - stats[0]["created"] - stats[0]["polls"]
    assert refused <= 16  # the empty one, asked at most a wave past its balance
    assert all(s["recalled"] == 0 for s in stats)  # every poll went to the relay of its task
    with engine.connect() as conn:
        accounts = {r.name: r for r in store.all_states(conn)}
        by_account = Counter(conn.execute(sa.select(Job.account)).scalars())
        tried = set(conn.execute(sa.select(Attempt.account).where(Attempt.action == "submit")))
    assert by_account == Counter({"empty": 40, "ok": 260})
    assert accounts["empty"].state == "paused"
    assert accounts["empty"].reason.startswith("quota: 用户额度不足")
    assert accounts["down"].state == "active"
    assert accounts["down"].strikes >= BREAKER
    assert "server" in accounts["down"].last_error
    assert {row.account for row in tried} == {"empty", "down", "ok"}  # each attempt's account


@pytest.mark.timing  # what it counts depends on timing: run alone (see the Makefile)
def test_two_rated_relays_share_the_rows_and_neither_window_overfills(engine: Engine) -> None:
    prompts = [f"row {n}" for n in range(60)]
    batch = load_prompts(engine, prompts)
    configs = (MockConfig(api_key="key-a", limit=10, window=1.0), MockConfig(limit=10, window=1.0))
    rates = {"a": {"rate": "8/s"}, "b": {"rate": "8/s"}}
    with relays(*configs) as mocks, accounts_at(mocks, ["a", "b"], **rates) as acc:
        progress = run_through(engine, acc, batch)
        stats = [mock.stats() for mock in mocks]
    assert progress.counts == {"succeeded": 60}
    assert [s["rejected_429"] for s in stats] == [0, 0]
    assert all(s["busiest_window"] <= 10 for s in stats)
    assert all(s["created"] >= 20 for s in stats)  # both did their part
    assert created(mocks) == Counter(dict.fromkeys(prompts, 1))


@pytest.mark.timing  # what it counts depends on timing: run alone (see the Makefile)
def test_an_accounts_cap_holds(engine: Engine) -> None:
    batch = load_prompts(engine, [f"row {n}" for n in range(24)])
    configs = (MockConfig(api_key="key-a", task_seconds=0.3), MockConfig(task_seconds=0.3))
    caps = {"a": {"max_in_flight": 2}, "b": {"max_in_flight": 3}}
    with relays(*configs) as mocks, accounts_at(mocks, ["a", "b"], **caps) as acc:
        progress = run_through(engine, acc, batch)
        peaks = [mock.stats()["peak_running"] for mock in mocks]
    assert progress.counts == {"succeeded": 24}
    assert peaks[0] <= 2
    assert peaks[1] <= 3


def queued(engine: Engine, count: int, budget: int | None = None) -> list[int]:
    batch = load_prompts(engine, [f"row {n}" for n in range(count)])
    with engine.begin() as conn:
        if budget is not None:
            conn.execute(sa.update(Batch).values(budget_micros=budget))
        return transitions.release(conn, transitions.utcnow(), count, [batch])


def test_a_batch_budget_and_an_accounts_daily_budget_hold_exactly_across_accounts(
    engine: Engine,
) -> None:
    ids = queued(engine, 40, budget=10_000_000)  # ten rows at 1.00
    prices = Spending({"veo3.1": 1_000_000})
    with relays(MockConfig(api_key="key-a"), MockConfig()) as mocks:
        fields: dict[str, dict[str, Any]] = {
            "a": {"spending": prices, "daily_budget": 3_000_000},
            "b": {"spending": prices},
        }
        with accounts_at(mocks, ["a", "b"], **fields) as acc:
            sender = sender_for(acc)
            groups = [ids[n::4] for n in range(4)]
            workers = [
                threading.Thread(
                    target=submit_rows, args=(engine, sender, group), kwargs={"fanout": Fanout(4)}
                )
                for group in groups
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        counts = [mock.stats()["created"] for mock in mocks]
    assert sum(counts) == 10  # the batch's budget, to the row, across both accounts
    assert counts[0] <= 3  # a's own daily budget
    with engine.connect() as conn:
        spent = {r.name: r.spent_micros for r in store.all_states(conn)}
        batch = conn.execute(sa.select(Batch)).one()
    assert spent["a"] == counts[0] * 1_000_000
    assert spent["b"] == counts[1] * 1_000_000
    assert (batch.state, batch.committed_micros) == ("paused", 10_000_000)


def test_a_task_is_polled_only_through_its_account_and_waits_when_that_left_the_file(
    engine: Engine, tmp_path: Path
) -> None:
    ids = queued(engine, 8)
    with relays(MockConfig(api_key="key-a"), MockConfig()) as mocks:
        with accounts_at(mocks, ["a", "b"]) as both:
            outcomes = submit_rows(engine, sender_for(both), ids, fanout=Fanout(8))
            assert {o.status for o in outcomes} == {"submitted"}
            with engine.connect() as conn:
                made = {r.id: r.account for r in conn.execute(sa.select(Job.id, Job.account))}
            assert set(made.values()) == {"a", "b"}
            only_a = sender_for([both[0]])
            later = transitions.utcnow() + timedelta(minutes=1)
            with engine.begin() as conn:
                due = due_work(
                    conn,
                    later,
                    Wanted(polls=100),
                    Rules(timedelta(minutes=2), accounts=frozenset(only_a.names)),
                )
            assert sorted(due.polls) == sorted(i for i, name in made.items() if name == "a")
            polled = poll_rows(engine, only_a, ids)  # (b's rows, handed to it, are skipped)
        stats = [mock.stats() for mock in mocks]
    assert len(polled) == list(made.values()).count("a")
    only_a_file = tmp_path / "accounts.toml"
    only_a_file.write_text('[accounts.a]\nbase = "https://a.example"\nkey_env = "KEY_A"\n')
    service = BatchService(engine, Settings(accounts=str(only_a_file)))
    assert service.stranded("b") == {"b": list(made.values()).count("b")}  # its batch says why
    assert stats[1]["polls"] == 0
    assert stats[0]["recalled"] == 0


def test_a_database_of_the_previous_release_upgrades_and_its_tasks_stay_the_defaults(
    engine: Engine, mock: MockProvider
) -> None:
    config = database.alembic_config(engine.url.render_as_string(hide_password=False))
    command.downgrade(config, "0006")
    statuses = ["pending", "queued", "submitting", "submitted", "succeeded", "failed", "in_doubt"]
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO batches (id, name, source, state) VALUES (1, 'old', 'old.csv', 'active')"
        )
        for n, status in enumerate(statuses):
            sent = status not in ("pending", "queued")
            task = f"veo3:{int(NOW.timestamp())}-{n:010x}" if status in statuses[3:6] else None
            conn.execute(
                sa.text(
                    "INSERT INTO jobs (batch_id, ref, prompt, model, images, status, task_id, "
                    "attempts, next_poll_at) VALUES (1, :ref, :prompt, 'veo3.1', :images, "
                    ":status, :task, :attempts, :poll)"
                ),
                {
                    "ref": f"r{n}",
                    "prompt": f"p{n}",
                    "images": '["https://example.com/a.jpg"]',
                    "status": status,
                    "task": task,
                    "attempts": int(sent),
                    "poll": NOW - timedelta(days=1) if status == "submitted" else None,
                },
            )
        conn.exec_driver_sql(
            "INSERT INTO attempts (job_id, action, task_id) SELECT id, 'submit', task_id FROM jobs"
            " WHERE task_id IS NOT NULL"
        )
    command.upgrade(config, "head")
    with engine.connect() as conn:
        accounts = {r.status: r.account for r in conn.execute(sa.select(Job.status, Job.account))}
        history = set(conn.execute(sa.select(Attempt.account)).scalars())
    assert accounts == {
        "pending": None,
        "queued": None,
        "submitting": "default",
        "submitted": "default",
        "succeeded": "default",
        "failed": "default",
        "in_doubt": "default",
    }
    assert history == {"default"}
    with engine.begin() as conn:  # (what a stopped run leaves is made pending by the next)
        conn.execute(
            sa.update(Job).where(Job.status.in_(["queued", "submitting"])).values(status="pending")
        )
        conn.execute(sa.update(RelayAccount).values(state="active"))
    with ProviderClient(mock.url, Secret(mock.state.config.api_key)) as client:
        progress = run_through(engine, [account_for(client)], 1)
    # The old success, the old task followed to its end, three new ones made.
    assert progress.counts["succeeded"] == 5
    assert mock.stats()["recalled"] == 1


# ------------------------------------------------------------------------ seeing, steering


def cli_with(database_url: str, *args: str, **env: str) -> Result:
    return CliRunner().invoke(
        cli, list(args), env={"VEO_DATABASE_URL": database_url, **env}, catch_exceptions=False
    )


def test_accounts_are_listed_paused_and_resumed_and_a_paused_one_gets_no_row(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    batch = load_prompts(engine, [f"row {n}" for n in range(12)])
    with relays(MockConfig(api_key="key-a"), MockConfig()) as mocks:
        path = tmp_path / "accounts.toml"
        path.write_text(
            f'[accounts.a]\nbase = "{mocks[0].url}"\nkey_env = "KEY_A"\nrate = "5/s"\n'
            f'[accounts.b]\nbase = "{mocks[1].url}"\nkey_env = "KEY_B"\nmax_in_flight = 3\n'
        )
        env = {"VEO_ACCOUNTS": str(path), "KEY_A": "key-a"}  # (showing needs no key)
        paused = cli_with(database_url, "accounts", "pause", "a", "--reason", "maintenance", **env)
        assert paused.exit_code == 0, paused.output
        listed = cli_with(database_url, "accounts", "--json", **env)
        views = {view["name"]: view for view in json.loads(listed.output)}
        assert (views["a"]["state"], views["a"]["reason"]) == ("paused", "maintenance")
        assert (views["b"]["state"], views["b"]["max_in_flight"]) == ("active", 3)
        assert views["a"]["host"] == mocks[0].url.removeprefix("http://")
        with accounts_at(mocks, ["a", "b"]) as acc:
            progress = run_through(engine, acc, batch)
        assert progress.counts == {"succeeded": 12}
        assert [mock.stats()["created"] for mock in mocks] == [0, 12]
        health = cli_with(database_url, "health", **env)
        assert "accounts: a paused (maintenance)" in health.output
        resumed = cli_with(database_url, "accounts", "resume", "a", **env)
        assert resumed.exit_code == 0
        table = cli_with(database_url, "accounts", **env).output
        assert "a  " in table
        assert "paused" not in table
        unknown = cli_with(database_url, "accounts", "pause", "c", **env)
        assert unknown.exit_code == 5
        assert "no account named 'c' (accounts: a, b)" in unknown.output


def test_a_run_on_the_mock_leaves_the_accounts_file_aside(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "prompt,model,images\n"
        + "".join(f"p{n},veo3.1,https://example.com/a.jpg\n" for n in range(3))
    )
    with relays(MockConfig(api_key="key-a")) as (real,):
        path = tmp_path / "accounts.toml"
        path.write_text(f'[accounts.a]\nbase = "{real.url}"\nkey_env = "KEY_A"\n')
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        ran = cli_with(
            url, "run", str(jobs), "--mock", "--no-wait", VEO_ACCOUNTS=str(path), KEY_A="key-a"
        )
        assert ran.exit_code == 0, ran.output
        assert real.stats()["requests"] == 0  # a dry run spends nothing on a real relay


def test_a_file_that_cannot_be_used_is_refused_before_the_run_stores_anything(
    tmp_path: Path,
) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompt,model,images\np,veo3.1,https://example.com/a.jpg\n")
    path = tmp_path / "accounts.toml"
    path.write_text('[accounts.a]\nbase = "https://a.example"\nkey_env = "NOT_SET_HERE"\n')
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    ran = cli_with(url, "run", str(jobs), VEO_ACCOUNTS=str(path))
    assert ran.exit_code == 6
    assert "account 'a': key_env: the variable NOT_SET_HERE is not set" in ran.output
    assert "stored" not in ran.output


def test_a_worker_refuses_an_unusable_file_at_start(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text('[accounts.a]\nbase = "https://a.example"\nkey_env = "NOT_SET_HERE"\n')
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    started = cli_with(url, "worker", VEO_REDIS_URL=REDIS_URL, VEO_ACCOUNTS=str(path))
    assert started.exit_code == 6
    assert "account 'a': key_env: the variable NOT_SET_HERE is not set" in started.output


def test_a_row_every_account_refuses_stops_its_batch_saying_why() -> None:
    google = Candidate("google")
    routing = route([Row(1, 7, "veo3.1", frozenset({"google"}))], [google], NOW)
    assert routing.going == {}
    assert routing.stuck[7].startswith("no account's API can take some of its rows (refused by")
    relay = Candidate("relay")
    routed = route([Row(2, 7, "veo3.1", frozenset({"google"}))], [google, relay], NOW)
    assert routed.going == {2: "relay"}
