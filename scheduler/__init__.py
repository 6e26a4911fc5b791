"""The dispatch loop: releases pending rows to the workers as fast as the rate limit allows.

It lands with the submission engine; the tables and indexes it queries are in
`veobatch.models` (see `ix_jobs_batch_status`).
"""
