"""The engine: what happens to a row from `pending` to its video.

Pure rules (no I/O):
- `submit_rules`: the outcome of one submission (retry, fail, in doubt, pause the batch);
- `poll_rules`: the outcome of one poll, and when to ask next (`Pacing`);
- `backoff`: the one exponential backoff rule every retry uses;
- `rate_limit`: the GCRA rule, in process or on Redis.

Changes and I/O:
- `transitions`: every row and batch change, as conditional SQL;
- `submit`, `poll`, `download`: one row's POST, a group's polls, one video's download;
- `webhooks`: telling a batch's webhook that it finished or paused.
"""
