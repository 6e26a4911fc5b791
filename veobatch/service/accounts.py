"""The relay accounts, seen and steered: each one's state, pace, load and spending, and a
pause or a resume by hand. The accounts are those of VEO_ACCOUNTS (or the `default` one of
VEO_API_BASE), and any the database still has rows of (an account removed from the file)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from veobatch.accounts import store
from veobatch.accounts.spec import DEFAULT, AccountSpec, accounts_of
from veobatch.accounts.view import account_view
from veobatch.errors import NotFoundError
from veobatch.lifecycle import transitions
from veobatch.service.base import ServiceBase
from veobatch.states import JobStatus
from veobatch.store.queries import batch_id
from veobatch.store.tables import Attempt, Job


class AccountOps(ServiceBase):
    def _specs(self) -> list[AccountSpec]:
        """The accounts the settings name (their keys are not needed to show them)."""
        return accounts_of(self.settings, keys=False)

    def accounts(self) -> list[dict[str, Any]]:
        """Every account, in priority order, then those removed from the file that still have
        rows (see `accounts.view.account_view`)."""
        specs = self._specs()
        now = transitions.utcnow()
        with self.engine.connect() as conn:
            rows = {row.name: row for row in store.all_states(conn)}
            out = store.in_flight(conn)
            per_account = {
                str(name): int(count)
                for name, count in conn.execute(
                    sa.select(Job.account, sa.func.count())
                    .where(Job.account.is_not(None))
                    .group_by(Job.account)
                )
            }
            recent = {
                str(name): int(count)
                for name, count in conn.execute(
                    sa.select(Attempt.account, sa.func.count())
                    .where(
                        Attempt.action == "submit",
                        Attempt.at >= now - timedelta(minutes=1),
                        Attempt.account.is_not(None),
                    )
                    .group_by(Attempt.account)
                )
            }
        named = [spec.name for spec in specs]
        gone = sorted(name for name in {*rows, *per_account} - set(named) if name)
        views = []
        for spec, name in [(s, s.name) for s in specs] + [(None, n) for n in gone]:
            row = rows.get(name) or _Unused(name)
            views.append(
                account_view(
                    spec,
                    row,
                    now=now,
                    in_flight=out.get(name, 0),
                    rows=int(per_account.get(name, 0)),
                    sent_last_minute=int(recent.get(name, 0)),
                )
            )
        return views

    def batch_accounts(self, batch: str) -> dict[str, dict[str, int]]:
        """A batch's rows per account, counted per status (rows never sent have none)."""
        with self.engine.connect() as conn:
            found = batch_id(conn, batch)
            counts: dict[str, dict[str, int]] = {}
            for account, status, count in conn.execute(
                sa.select(Job.account, Job.status, sa.func.count())
                .where(Job.batch_id == found, Job.account.is_not(None))
                .group_by(Job.account, Job.status)
            ):
                counts.setdefault(str(account), {})[str(status)] = int(count)
        return dict(sorted(counts.items()))

    def stranded(self, batch: str) -> dict[str, int]:
        """The batch's tasks whose account is no longer in the settings, per account: they are
        polled only through their own account, so they wait until it is back."""
        names = [spec.name for spec in self._specs()]
        with self.engine.connect() as conn:
            found = batch_id(conn, batch)
            # (A row with no account was sent before there were accounts: the default's.)
            owner = sa.func.coalesce(Job.account, sa.literal_column(f"'{DEFAULT}'"))
            waiting = conn.execute(
                sa.select(owner, sa.func.count())
                .where(
                    Job.batch_id == found,
                    Job.status == JobStatus.SUBMITTED,
                    owner.not_in(names),
                )
                .group_by(owner)
            )
            return {str(name): int(count) for name, count in waiting}

    def account(self, name: str) -> dict[str, Any]:
        for view in self.accounts():
            if view["name"] == name:
                return view
        known = ", ".join(spec.name for spec in self._specs()) or "none"
        raise NotFoundError(
            f"no account named {name!r} (accounts: {known})", hint="`veo-batch accounts` lists them"
        )

    def pause_account(self, name: str, reason: str = "paused by hand") -> dict[str, Any]:
        """Send nothing more through account `name` (requests in flight finish; its tasks are
        still followed); the account afterwards."""
        self.account(name)
        with self.engine.begin() as conn:
            store.ensure(conn, [name])
            store.pause(conn, name, reason, transitions.utcnow(), error=False)
        return self.account(name)

    def resume_account(self, name: str) -> dict[str, Any]:
        """Send through account `name` again (its failures in a row forgotten)."""
        self.account(name)
        with self.engine.begin() as conn:
            store.resume(conn, [name], transitions.utcnow())
        return self.account(name)


class _Unused:
    """What the database knows of an account it has no row of: nothing yet."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "active"
        self.reason = None
        self.cool_until = None
        self.strikes = 0
        self.spend_day = None
        self.spent_micros = 0
        self.last_error = None
        self.last_error_at = None
