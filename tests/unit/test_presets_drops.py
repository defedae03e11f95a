"""Presets and drop rules (service/presets.py), bucket drops (service/drops.py through the job
runner) and the multipart parser of POST /images, on moto's in-process mock with a stand-in
engine. The same flows run end to end through the local stack in
tests/integration/test_ways_in.py."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from imagepipe.core.limits import Limits
from imagepipe.errors import BadRequest, InvalidRecipe
from imagepipe.service.drops import drop_filename, drop_image_id
from imagepipe.service.jobs import JobRunner
from imagepipe.service.messages import ObjectCreated, parse_body
from imagepipe.service.multipart import parse_form
from imagepipe.service.presets import PRESETS_FILE, build_catalog, load_catalog, merged_document
from tests.unit.service_env import FakeEngine, mocked_backend

SHIPPED = json.loads(PRESETS_FILE.read_text())
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


# --- the catalog ------------------------------------------------------------------------------


def test_the_shipped_file_loads_and_every_preset_is_a_distinct_valid_recipe():
    cat = load_catalog({})
    assert list(cat.presets) == list(SHIPPED["presets"])
    assert cat.default_preset in cat.presets
    assert len({p.recipe_hash for p in cat.presets.values()}) == len(cat.presets)
    body = cat.public()
    assert [p["name"] for p in body["items"]] == list(cat.presets)
    assert body["drop_default"] == {"prefix": None, "preset": cat.default_preset}


def test_rules_apply_in_order_first_match_wins_then_the_default():
    doc = {
        **SHIPPED,
        "drop_rules": [
            {"prefix": "uploads/a/", "skip": True},
            {"prefix": "uploads/a/b/", "preset": "AVIF 2048"},  # never reached: uploads/a/ comes first
            {"prefix": "uploads/c/", "recipe": {"format": "png"}},
        ],
    }
    cat = build_catalog(doc)
    assert cat.rule_for("uploads/a/b/x.jpg").skip and cat.rule_for("uploads/a/b/x.jpg").label == "uploads/a/"
    assert cat.recipe_of(cat.rule_for("uploads/a/x.jpg")) is None
    rule = cat.rule_for("uploads/c/x.jpg")
    assert rule.label == "uploads/c/" and cat.recipe_of(rule)[0]["format"] == "png"
    default = cat.rule_for("uploads/elsewhere.jpg")
    assert default.label == "default"
    assert cat.recipe_of(default)[1] == cat.presets[SHIPPED["default_preset"]].recipe_hash


def test_the_environment_overrides_presets_by_name_and_replaces_rules():
    env = {
        "IMAGEPIPE_PRESETS": json.dumps(
            {
                "presets": {"tiny": {"recipe": {"resize": {"width": 16, "height": 16}}}, "Archive PNG": None},
                "drop_rules": [{"prefix": "uploads/t/", "preset": "tiny"}],
                "drop_default": {"skip": True},
            }
        )
    }
    cat = load_catalog(env)
    assert "tiny" in cat.presets and "Archive PNG" not in cat.presets
    assert "Web 1600 WebP" in cat.presets  # the rest of the file stays
    assert [r.label for r in cat.drop_rules] == ["uploads/t/"]
    assert cat.rule_for("uploads/x.jpg").skip


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"drop_rules": [{"prefix": "uploads/x/", "preset": "nope"}]}, "unknown preset"),
        ({"drop_rules": [{"prefix": "elsewhere/", "skip": True}]}, "upload prefix"),
        ({"drop_rules": [{"prefix": "uploads/x/", "skip": True, "preset": "AVIF 2048"}]}, "exactly one"),
        ({"drop_rules": [{"prefix": "uploads/x/", "skip": False}]}, "skip must be true"),
        ({"presets": {"bad": {"recipe": {"format": "bmp"}}}}, "invalid recipe"),
        ({"default_preset": "nope"}, "default_preset"),
        ({"typo": 1}, "unknown key"),
        ({"presets": {"web 1600 webp": {"recipe": {}}}}, "same as 'Web 1600 WebP'"),
        ({"presets": {"!!": {"recipe": {}}}}, "must be non-empty"),
    ],
)
def test_a_bad_configuration_is_an_error_naming_it(override, words):
    with pytest.raises(ValueError, match=words):
        load_catalog({"IMAGEPIPE_PRESETS": json.dumps(override)})


def test_unknown_preset_is_invalid_recipe_on_field_preset():
    with pytest.raises(InvalidRecipe) as exc:
        load_catalog({}).get("nope")
    assert exc.value.details[0]["field"] == "preset"


def test_a_preset_is_found_by_name_or_slug_and_labelled_by_its_name():
    cat = load_catalog({})
    web = cat.get("Web 1600 WebP")
    assert web.id == "web-1600-webp" and web.public()["id"] == "web-1600-webp"
    assert cat.get("web-1600-webp") is web and cat.get("WEB-1600-WEBP") is web
    assert cat.label("web-1600-webp") == "Web 1600 WebP"  # one preset, one label in History
    assert cat.label("not-a-preset") == "not-a-preset" and cat.label(None) is None
    assert len({p.id for p in cat.presets.values()}) == len(cat.presets)


def test_merged_document_keeps_the_base_untouched():
    base = {"presets": {"a": {"recipe": {}}}}
    merged = merged_document(base, {"presets": {"b": {"recipe": {}}}})
    assert set(merged["presets"]) == {"a", "b"} and set(base["presets"]) == {"a"}


# --- multipart ----------------------------------------------------------------------------------


def _form(*parts: tuple[str, bytes, dict[str, str]], boundary: str = "XyZ") -> tuple[bytes, str]:
    out = b""
    for name, data, extra in parts:
        disp = f'form-data; name="{name}"' + "".join(f'; {k}="{v}"' for k, v in extra.items() if k != "type")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        if "type" in extra:
            out += f"Content-Type: {extra['type']}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_multipart_keeps_binary_bytes_exactly():
    data = PNG + b"\r\n\r\n--X\r\n" + bytes(range(256))
    body, ct = _form(
        ("file", data, {"filename": "a b.png", "type": "image/png"}), ("preset", b"AVIF 2048", {})
    )
    fields = parse_form(body, ct)
    assert fields["file"].data == data and fields["file"].filename == "a b.png"
    assert fields["file"].content_type == "image/png" and fields["preset"].text() == "AVIF 2048"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b.replace(b"--XyZ--", b"--XyZ"),  # no closing boundary
        lambda b: b.replace(b'name="preset"', b'name="file"'),  # a field twice
        lambda b: b.replace(b"Content-Disposition: form-data; ", b"Content-Disposition: attachment; "),
    ],
)
def test_malformed_multipart_is_bad_request(mangle):
    body, ct = _form(("file", PNG, {"filename": "a.png"}), ("preset", b"x", {}))
    with pytest.raises(BadRequest):
        parse_form(mangle(body), ct)
    with pytest.raises(BadRequest, match="boundary"):
        parse_form(body, "multipart/form-data")


# --- drops ---------------------------------------------------------------------------------------


@pytest.fixture
def backend():
    with mocked_backend() as b:
        yield b


def _drop(backend, key: str, body: bytes = PNG, content_type: str | None = None) -> ObjectCreated:
    kwargs = {"ContentType": content_type} if content_type else {}
    resp = backend.clients.s3.put_object(Bucket=backend.config.source_bucket, Key=key, Body=body, **kwargs)
    return ObjectCreated(
        backend.config.source_bucket, key, len(body), resp["ETag"].strip('"'), "ObjectCreated:Put"
    )


def test_a_drop_is_recorded_once_and_processed_once_even_when_events_repeat(backend):
    engine = FakeEngine()
    runner = JobRunner(backend, engine=engine)
    key = "uploads/thumbnails/holiday 2024/ünï+cödé %41.png"
    ev = _drop(backend, key)
    assert runner.object_created(ev) == "succeeded"
    assert runner.object_created(ev) == "skipped"  # a duplicated event
    image_id = drop_image_id(ev.bucket, key, ev.etag)
    image = backend.records.get_image(image_id)
    assert (image["arrival"], image["drop_rule"], image["filename"]) == (
        "drop",
        "uploads/thumbnails/",
        "ünï+cödé %41.png",
    )
    assert image["content_type"] == "image/png" and image["preset"] == "Thumbnail 320 JPEG"
    [job] = backend.records.jobs_for_image(image_id)
    assert (job["arrival"], job["drop_rule"], job["status"]) == ("drop", "uploads/thumbnails/", "succeeded")
    assert job["recipe_hash"] == backend.catalog.get("Thumbnail 320 JPEG").recipe_hash
    assert engine.calls == [len(PNG)]


def test_new_bytes_under_the_same_key_are_a_new_image_and_identical_bytes_are_not(backend):
    runner = JobRunner(backend, engine=FakeEngine())
    first = _drop(backend, "uploads/a.png")
    runner.object_created(first)
    same = _drop(backend, "uploads/a.png")
    assert same.etag == first.etag and runner.object_created(same) == "skipped"
    other = _drop(backend, "uploads/a.png", PNG + b"more")
    assert runner.object_created(other) == "succeeded"
    ids = {drop_image_id(e.bucket, e.key, e.etag) for e in (first, other)}
    assert len(ids) == 2 and all(backend.records.get_image(i) for i in ids)


def test_skip_rule_records_without_a_job_and_generic_types_are_sniffed(backend):
    engine = FakeEngine()
    ev = _drop(backend, "uploads/incoming/x.bin", content_type="binary/octet-stream")
    assert JobRunner(backend, engine=engine).object_created(ev) == "uploaded"
    image = backend.records.get_image(drop_image_id(ev.bucket, ev.key, ev.etag))
    assert image["drop_rule"] == "uploads/incoming/" and image["recipe"] is None
    assert image["content_type"] == "image/png"
    assert backend.records.jobs_for_image(image["image_id"]) == [] and engine.calls == []


def test_oversized_drop_fails_too_large_without_download_and_bad_bytes_fail_typed(backend):
    engine = FakeEngine()
    runner = JobRunner(backend, limits=Limits(max_bytes=len(PNG) - 1), engine=engine)
    ev = _drop(backend, "uploads/big.png")
    assert runner.object_created(ev) == "failed"
    [job] = backend.records.jobs_for_image(drop_image_id(ev.bucket, ev.key, ev.etag))
    assert job["error"]["code"] == "too_large" and engine.calls == []
    # the original stays
    assert backend.clients.s3.get_object(Bucket=ev.bucket, Key=ev.key)["Body"].read() == PNG


def test_folder_markers_and_vanished_objects_are_ignored_and_foreign_prefixes_refused(backend):
    runner = JobRunner(backend, engine=FakeEngine())
    src = backend.config.source_bucket
    assert runner.object_created(_drop(backend, "uploads/folder/", b"")) == "ignored"
    assert (
        runner.object_created(ObjectCreated(src, "uploads/gone.png", 5, "abc", "ObjectCreated:Put"))
        == "ignored"
    )
    assert (
        runner.object_created(ObjectCreated(src, "elsewhere/x.png", 5, "abc", "ObjectCreated:Put"))
        == "refused"
    )


def test_changed_rules_do_not_change_a_recorded_drop(backend):
    runner = JobRunner(backend, engine=FakeEngine())
    ev = _drop(backend, "uploads/keep.png")
    runner.object_created(ev)
    skipping = replace(backend, catalog=build_catalog({**SHIPPED, "drop_default": {"skip": True}}))
    assert JobRunner(skipping, engine=FakeEngine()).object_created(ev) == "skipped"


def test_s3_event_version_id_and_filename():
    body = json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:CompleteMultipartUpload",
                    "s3": {
                        "bucket": {"name": "b"},
                        "object": {"key": "uploads/a%2Bb+c.jpg", "size": 9, "eTag": "e-2", "versionId": "v1"},
                    },
                }
            ]
        }
    )
    [ev] = parse_body(body)
    assert (ev.key, ev.version_id, ev.etag) == ("uploads/a+b c.jpg", "v1", "e-2")
    assert drop_filename(ev.key) == "a+b c.jpg"
    assert drop_image_id("b", ev.key, "v1") != drop_image_id("b", ev.key, "v2")


def test_a_version_overwritten_before_its_event_is_failed_not_given_the_newer_bytes(backend):
    engine = FakeEngine()
    runner = JobRunner(backend, engine=engine)
    older = _drop(backend, "uploads/race.png")
    newer = _drop(backend, "uploads/race.png", PNG + b"newer")  # lands before the older event is handled
    assert runner.object_created(newer) == "succeeded"
    assert runner.object_created(older) == "failed"  # reordered: its bytes are gone
    [job] = backend.records.jobs_for_image(drop_image_id(older.bucket, older.key, older.etag))
    assert job["error"]["code"] == "not_found" and "overwritten" in job["error"]["message"]
    assert engine.calls == [len(PNG) + 5]  # only the newer bytes were processed, once


def test_the_reconciler_maps_a_dead_lettered_drop_event_to_its_job(backend):
    from imagepipe.service.reconcile import jobs_for_message

    ev = _drop(backend, "uploads/dead letter.png")
    JobRunner(backend, engine=FakeEngine()).object_created(ev)
    body = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": ev.bucket}, "object": {"key": "uploads/dead+letter.png", "size": ev.size,
                                                  "eTag": ev.etag}}}]})
    [job] = backend.records.jobs_for_image(drop_image_id(ev.bucket, ev.key, ev.etag))
    assert jobs_for_message(backend, body) == [job["job_id"]]
