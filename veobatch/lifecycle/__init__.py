"""A row's life: what happens to it from `pending` to its video, and the rules of each step.

Rules (pure: no I/O):
- `submit_rules`: the outcome of one submission (retry, fail, in doubt, pause the batch);
- `poll_rules`: the outcome of one poll, and when to ask next (`Pacing`);
- `spend_rules`: prices, budgets and estimates;
- `backoff`: the one exponential backoff rule every retry uses.

State and I/O:
- `due`: what is due now (releases, polls, downloads, leases run out, lost messages), for the
  scheduler and for `veo-batch run` alike;
- `transitions`: every row and batch change, as conditional SQL;
- `sender`: what sending needs (client, limiters, images, prices, pacing), built once;
- `submit`, `poll`, `download`: a group's POSTs, a group's polls, one video's download;
- `rate_limit`: the GCRA limiter, in this process or shared through Redis;
- `spending`: prices held and spent, in the claim's transaction;
- `unrecorded`: task ids the database could not take yet, kept on disk;
- `events`, `progress`, `fanout`, `webhooks`: log lines, counts, concurrent sends, webhook calls.
"""
