"""Intake: from a job file or a list of jobs to checked rows in the store.

- `job_spec`: one job's fields and the checks on them;
- `problems`: what is wrong with a row, by line (or index) and field;
- `readers`: CSV, YAML and JSON Lines files read row by row, with line numbers;
- `loader`: check every row, then store them in one transaction (or nothing), with the fast
  multi-row inserts of `store.inserts`.
"""
