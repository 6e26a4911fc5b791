"""Intake: from a job file or a list of jobs to checked rows in the store.

- `raw_job`: a row as a reader found it, and the fields veo-batch understands;
- `field_rules`: what one value may be (lengths, characters, links, names, scripts);
- `job_checker`: those rules applied to each row (`column_checks`: to blocks of rows);
- `problems`: what is wrong with a row, by line (or index) and field;
- `readers`: CSV, YAML and JSON Lines files read row by row, with line numbers;
- `loader`: check every row, then store them in one transaction (or nothing), with the fast
  multi-row inserts of `store.inserts`.
"""
