"""The dashboard (HTML pages). For now a placeholder overview page."""
