"""The dispatch loop: `veo-batch scheduler`. See `scheduler.loop`."""
