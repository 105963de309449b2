"""The CI verification gate: proofwell.toml checks run locally or on a server, with reports."""
