"""The store: the SQL database, the only source of truth.

- `database`: engines, and the schema brought to the newest migration;
- `tables`: the tables (batches, jobs, attempts, webhook deliveries);
- `queries`: reading batches and rows back (counts per status, pages, history);
- `export`: a batch as CSV or JSON Lines.

Row changes are the engine's (`veobatch.lifecycle.transitions`); rows are created by intake.
"""
