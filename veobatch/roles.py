"""The roles a process of a deployment plays, as `veo-batch health --role` names them
(`veobatch.health` checks what each needs); names only, so the command line knows them
without importing the checks."""

from typing import Final

ROLES: Final = ("all", "api", "scheduler", "worker")
