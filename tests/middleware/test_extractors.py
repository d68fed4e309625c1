"""Built-in extractors."""

from __future__ import annotations

import pytest

from middleware.extractors import default_features, default_outputs, from_dict, numpy_rows


def test_default_features_and_outputs() -> None:
    assert default_features(({"a": 1},), {}) == {"a": 1}
    assert default_features(([1, 2],), {}) is None
    assert default_features((), {"row": {"a": 1}}) is None
    assert default_outputs({"p": 0.2}) == {"p": 0.2}
    assert default_outputs(3) == {"output": 3}
    assert default_outputs("cat") == {"output": "cat"}
    assert default_outputs([0.1, 0.9]) is None


def test_from_dict_key() -> None:
    body = {"id": "r1", "features": [{"x": 1.0}, {"x": 2.0}]}
    assert from_dict("features")((body,), {}) == [{"x": 1.0}, {"x": 2.0}]
    assert from_dict()((body,), {}) is body
    assert from_dict("features")(("not a mapping",), {}) is None


def test_numpy_rows_shapes() -> None:
    np = pytest.importorskip("numpy")
    rows = numpy_rows(["a", "b"])
    assert rows(np.array([1.0, 2.0])) == {"a": 1.0, "b": 2.0}
    assert rows((np.array([[1.0, 2.0], [3.0, 4.0]]),), {}) == [
        {"a": 1.0, "b": 2.0},
        {"a": 3.0, "b": 4.0},
    ]
    assert numpy_rows(["score"])(np.array([0.1, 0.2, 0.3])) == [
        {"score": 0.1},
        {"score": 0.2},
        {"score": 0.3},
    ]
    assert default_outputs(np.float32(0.5)) == {"output": 0.5}
    with pytest.raises(ValueError):
        rows(np.zeros((2, 3)))
