"""The Celery worker: `veo-batch worker` (or `celery -A veobatch.worker worker`).

Messages carry row ids (a group of them) and nothing else; the database is the only source of
truth. Tasks are safe to deliver twice (a row is claimed with a conditional UPDATE), which is
what makes late acknowledgement safe: a message whose worker died is delivered again and finds
nothing to do.
"""

from veobatch.worker.app import app

__all__ = ["app"]
