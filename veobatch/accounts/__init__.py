"""Relay accounts: several behind one deployment, each with its own key, rate, cap, prices and
budget (VEO_ACCOUNTS), or the one VEO_API_BASE and VEO_API_KEY describe, named `default`.

- `spec`: an account as its file (or the settings) describe it, read and checked at start;
- `routing`: which account a claimed row goes through (pure: no I/O);
- `store`: what every process knows of each account (paused, cooling, spent today), in the
  database beside the rows.
"""
