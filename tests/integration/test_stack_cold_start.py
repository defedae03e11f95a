"""A stack started in a process that already loaded the service (with other settings) must not
inherit that configuration: its API handler gets a cold start bound to its own environment."""

from __future__ import annotations

import importlib

from pipeline.client import Client


def test_service_loaded_earlier_with_another_key_does_not_leak_into_a_new_stack(make_stack, monkeypatch):
    monkeypatch.setenv("IMAGEPIPE_API_KEY", "a-key-from-an-earlier-import")
    config = importlib.import_module("imagepipe.service.config")
    config.get_config.cache_clear()
    assert config.get_config().api_key == "a-key-from-an-earlier-import"  # cached, as a unit test leaves it

    stack = make_stack()
    health = Client(stack.api_url, stack.api_key, retries=0).health()
    assert health["status"] == "ok"
