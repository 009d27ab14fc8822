"""Many ingests at once: job files, the job runner, and its executors (in-process or Ray)."""
