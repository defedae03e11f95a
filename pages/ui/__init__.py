"""Helpers shared by the dashboard pages: image composition, the batch runner, widgets, analytics."""
