"""Worker processes: claim jobs, run each in a resource-limited child, store results."""
