"""The job queue: states, leases and claims (the SQL lives in service/store/jobs.py)."""
