"""The browser and live-service fixtures, shared by the Chromium tests."""

from tests.acceptance.test_dashboard_browser import browser, service  # noqa: F401
