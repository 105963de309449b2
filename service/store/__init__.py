"""Persistence: SQLAlchemy 2 models, engines, migrations and the jobs store."""
