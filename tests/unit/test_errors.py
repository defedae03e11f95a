"""The error hierarchy: stable codes, HTTP statuses, and round-tripping over the wire."""

import pytest

from imagepipe import errors


def test_codes_are_unique_and_snake_case():
    codes = [cls.code for cls in errors.ERRORS_BY_CODE.values()]
    assert len(codes) == len(set(codes))
    for code in codes:
        assert code == code.lower() and " " not in code


@pytest.mark.parametrize(
    ("code", "cls", "status"),
    [
        ("unsupported_format", errors.UnsupportedFormat, 415),
        ("corrupt_image", errors.CorruptImage, 422),
        ("too_many_pixels", errors.TooManyPixels, 413),
        ("too_large", errors.TooLarge, 413),
        ("too_many_frames", errors.TooManyFrames, 413),
        ("invalid_recipe", errors.InvalidRecipe, 422),
        ("unauthorized", errors.Unauthorized, 401),
        ("not_found", errors.NotFound, 404),
        ("conflict", errors.Conflict, 409),
        ("throttled", errors.Throttled, 429),
    ],
)
def test_from_code_rebuilds_the_typed_exception(code, cls, status):
    err = errors.from_code(code, "boom", details=[{"field": "x"}])
    assert type(err) is cls
    assert err.http_status == status
    assert err.to_dict() == {"code": code, "message": "boom", "details": [{"field": "x"}]}


def test_unknown_code_keeps_the_code():
    err = errors.from_code("brand_new_code", "later server")
    assert isinstance(err, errors.ImagePipeError)
    assert err.code == "brand_new_code"


def test_worker_failures_keep_their_reason():
    err = errors.from_code("worker_timeout", "took too long")
    assert isinstance(err, errors.WorkerFailure)
    assert err.code == "worker_timeout"
    assert err.permanent is False


def test_permanent_versus_transient():
    assert errors.CorruptImage().permanent is True
    assert errors.TransientError().permanent is False
    assert errors.Throttled().permanent is False


def test_default_message_is_the_docstring():
    assert errors.TooManyPixels().message.startswith("The image has more pixels")
