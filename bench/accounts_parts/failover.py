"""Experiment: failover over three relay accounts, and its table.

300 rows (`--failover-rows`) over three accounts in VEO_ACCOUNTS, in this order, each a fresh
mock, every priority the default and no rate:

- `empty`: `--balance 40`, creates 40 tasks, then answers 403 `insufficient_user_quota`;
- `down`: `--down 502`, answers every request 502 with an HTML page;
- `ok`: healthy.

Polls are quick (VEO_POLL_DELAY=0.2, VEO_POLL_INTERVAL=0.2-1; the mocks' tasks end at once) and
each run is followed until every row ended: embedded (`veo-batch run`, SQLite) and distributed
(two workers -c 2 and the scheduler on PostgreSQL and Redis), as runs.py makes them, each
against three fresh mocks. Reported per mode:

- rows succeeded (check: every one);
- prompts created more than once across the three relays (check: none) and prompts created
  at none of them (check: none);
- tasks created at each relay, against the rows whose task the database says each account
  holds (check: the same);
- requests the empty relay got past its balance, `requests - created - polls` (each answered
  403), and requests the down relay got (each answered 502);
- 429s (check: none; no relay has a limit) and `recalled` at each relay, polls of a task that
  relay did not create (check: 0 everywhere: each poll goes to its task's relay);
- each account's state at the end, table `accounts` (check: `empty` paused, once it was
  answered 403);
- wall time (embedded: spawn to exit; distributed: the scheduler's start to every row ended).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

from bench.accounts_parts.config import (
    DOWN_STATUS,
    EMBEDDED_CONCURRENCY,
    EMPTY_BALANCE,
    FAST_POLLS,
    WORKER_CONCURRENCY,
    WORKERS,
    Relay,
    prompts_of,
    start_relay,
    write_csv,
)
from bench.accounts_parts.runs import (
    common_problems,
    created_across,
    distributed,
    embedded,
    without_prompts,
)
from bench.harness.processes import NOT_A_PROBLEM, Children
from bench.harness.results import check_cell
from veobatch.cli.output import table_text

ACCOUNTS: Final = ("empty", "down", "ok")
# What the empty and the down relay are made to answer, as veo-batch logs it: not trouble here.
EXPECTED: Final = re.compile(
    NOT_A_PROBLEM.pattern
    + rf"|http_status={DOWN_STATUS} error_kind=server|http_status=403 error_kind=quota"
    + r"|account empty paused: quota"
)
TIMEOUT: Final = 300.0  # seconds a run may take


def failover(
    children: Children, work: Path, mode: str, rows: int, redis_url: str
) -> dict[str, Any]:
    print(
        f"failover ({mode}): {rows:,} rows over accounts empty (balance {EMPTY_BALANCE}), "
        f"down ({DOWN_STATUS}), ok ...",
        flush=True,
    )
    name = f"failover-{mode}"
    jobs = write_csv(work / f"{name}.csv", rows, name)
    relays: list[Relay] = []
    try:
        relays.append(start_relay(children, f"{name}-", "empty", "--balance", str(EMPTY_BALANCE)))
        relays.append(start_relay(children, f"{name}-", "down", "--down", str(DOWN_STATUS)))
        relays.append(start_relay(children, f"{name}-", "ok"))
        if mode == "embedded":
            result = embedded(
                children,
                work,
                name,
                jobs,
                relays,
                FAST_POLLS,
                follow=True,
                timeout=TIMEOUT,
                expected=EXPECTED,
            )
        else:
            result = distributed(
                children,
                work,
                name,
                jobs,
                relays,
                FAST_POLLS,
                redis_url,
                follow=True,
                timeout=TIMEOUT,
                expected=EXPECTED,
            )
    finally:
        children.stop(*(relay.mock.child for relay in relays))
    return figures(result, rows, name)


def figures(result: dict[str, Any], rows: int, tag: str) -> dict[str, Any]:
    """The run's figures, what is wrong with it, and its counters without the prompts."""
    relays = result["relays"]
    made = created_across(relays)
    prompts = set(prompts_of(rows, tag))
    empty = relays["empty"]
    database = result["database"]
    result.update(
        rows=rows,
        succeeded=database["statuses"].get("succeeded", 0),
        prompts_created_twice=sum(1 for n in made.values() if n > 1),
        prompts_not_created=len(prompts - set(made)),
        prompts_not_ours=len(set(made) - prompts),
        tasks_by_relay={name: counters["created"] for name, counters in relays.items()},
        empty_past_balance=empty["requests"] - empty["created"] - empty["polls"],
        down_requests=relays["down"]["requests"],
        rejected_429=sum(counters["rejected_429"] for counters in relays.values()),
        recalled={name: counters["recalled"] for name, counters in relays.items()},
        relays=without_prompts(relays),
    )
    wrong = common_problems(result)
    if result["succeeded"] != rows:
        wrong.append(f"{result['succeeded']:,} of {rows:,} rows succeeded: {database['statuses']}")
    held = {name: database["tasks_by_account"].get(name, 0) for name in ACCOUNTS}
    if held != result["tasks_by_relay"] or set(database["tasks_by_account"]) - set(ACCOUNTS):
        wrong.append(
            f"tasks per account in the database {database['tasks_by_account']} "
            f"!= per relay {result['tasks_by_relay']}"
        )
    if result["rejected_429"]:
        wrong.append(f"{result['rejected_429']:,} × 429")
    if any(result["recalled"].values()):
        wrong.append(f"polls at a relay that did not create the task: {result['recalled']}")
    empty_state = database["accounts"].get("empty", {}).get("state")
    if result["empty_past_balance"] and empty_state != "paused":  # (it was told it is empty)
        wrong.append(f"account empty is {empty_state}, not paused")
    result["wrong"] = wrong
    return result


def _accounts(states: dict[str, dict[str, Any]]) -> str:
    return ", ".join(
        f"{name} {state['state']}" + (f" ({state['strikes']} strikes)" if state["strikes"] else "")
        for name, state in states.items()
    )


def failover_table(results: list[dict[str, Any]]) -> str:
    headers = [
        "MODE",
        "SUCCEEDED",
        "CREATED TWICE",
        "TASKS empty/down/ok",
        "EMPTY PAST BALANCE",
        "DOWN REQUESTS",
        "429s",
        "RECALLED e/d/o",
        "ACCOUNTS AT END",
        "LOG LINES",
        "WALL s",
        "CHECK",
    ]
    rows = []
    for r in results:
        how = (
            f"run -c {EMBEDDED_CONCURRENCY}, SQLite"
            if r["mode"] == "embedded"
            else f"{WORKERS} workers -c {WORKER_CONCURRENCY}, PostgreSQL"
        )
        rows.append(
            [
                f"{r['mode']} ({how})",
                f"{r['succeeded']:,}/{r['rows']:,}",
                r["prompts_created_twice"],
                "/".join(str(r["tasks_by_relay"][name]) for name in ACCOUNTS),
                r["empty_past_balance"],
                r["down_requests"],
                r["rejected_429"],
                "/".join(str(r["recalled"][name]) for name in ACCOUNTS),
                _accounts(r["database"]["accounts"]),
                sum(found["lines"] for found in r["problems"].values()),
                f"{r['wall_seconds']:.1f}",
                check_cell(r["wrong"]),
            ]
        )
    return (
        f"{table_text(headers, rows)}\n\nfailover: accounts empty (mock --balance "
        f"{EMPTY_BALANCE}: 403 quota after {EMPTY_BALANCE} tasks), down (--down {DOWN_STATUS}) "
        "and ok, no rate, polls quick. EMPTY PAST BALANCE: requests - created - polls at the "
        "empty relay; RECALLED: polls of a task that relay did not create; LOG LINES: lines of "
        "veo-batch's logs that look like trouble, but for the 403s and 502s the relays are "
        "made to answer (printed below).\nchecks: every row succeeded, no prompt created twice "
        "or nowhere, tasks per account in the database = per relay, no 429, no recall, account "
        "empty paused once answered 403."
    )
