"""Thin Lambda handlers: parse the event, call a named service function, shape the reply."""
