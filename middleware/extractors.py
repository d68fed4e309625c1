"""Extractors turn a call's arguments and result into named signal values.

A features extractor takes ``(args, kwargs)`` of the call; an outputs
extractor takes the result. Both return one of:

- a mapping ``{name: value}``: one record;
- a sequence of mappings: a batched request, one record per row (each row is
  sampled on its own);
- ``None``: nothing to record.

Values: ``int``, ``float`` and ``bool`` (and anything with ``__float__``, such
as numpy scalars) become numeric signals; ``str`` becomes a categorical
signal; ``None`` is missing. Other values are treated as missing.

numpy is never imported here: arrays are recognised by their ``ndim`` and
``tolist()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

__all__ = [
    "FeatureExtractor",
    "OutputExtractor",
    "RequestIdExtractor",
    "Rows",
    "default_features",
    "default_outputs",
    "from_dict",
    "numpy_rows",
]

#: What an extractor returns.
Rows = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
FeatureExtractor = Callable[[tuple[Any, ...], dict[str, Any]], Rows]
OutputExtractor = Callable[[Any], Rows]
RequestIdExtractor = Callable[[tuple[Any, ...], dict[str, Any]], "str | None"]


def default_features(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Rows:
    """The first positional argument when it is a mapping, else nothing.

    >>> default_features(({"age": 41},), {})
    {'age': 41}
    """
    if args:
        first = args[0]
        if type(first) is dict or isinstance(first, Mapping):
            return first
    return None


def default_outputs(result: Any) -> Rows:
    """The result when it is a mapping; ``{"output": x}`` for a number or string.

    >>> default_outputs(0.93)
    {'output': 0.93}
    """
    kind = type(result)
    if kind is dict or isinstance(result, Mapping):
        return result  # type: ignore[no-any-return]
    if kind is float or kind is int or kind is bool or kind is str:
        return {"output": result}
    if getattr(result, "ndim", None) == 0 and hasattr(result, "item"):  # a numpy scalar
        return {"output": result.item()}
    return None


def from_dict(key: str | None = None) -> FeatureExtractor:
    """Features from the request mapping (first positional argument), or from
    ``request[key]`` when ``key`` is given (a mapping, or a list of mappings
    for a batched request).

    >>> from_dict("features")(({"id": "r1", "features": {"x": 1.5}},), {})
    {'x': 1.5}
    """

    def extract(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Rows:
        request = default_features(args, kwargs)
        if request is None or key is None:
            return request
        return request.get(key)  # type: ignore[union-attr]

    return extract


class _NumpyRows:
    """See :func:`numpy_rows`."""

    __slots__ = ("names",)

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        if not self.names:
            raise ValueError("numpy_rows needs at least one name")

    @overload
    def __call__(self, value: Any, /) -> Rows: ...
    @overload
    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any], /) -> Rows: ...

    def __call__(self, *call: Any) -> Rows:
        if len(call) == 2 and type(call[0]) is tuple and type(call[1]) is dict:
            args = call[0]
            if not args:
                return None
            array = args[0]
        else:
            (array,) = call
        return self.rows(array)

    def rows(self, array: Any) -> Rows:
        """The records of one array."""
        ndim = getattr(array, "ndim", None)
        if ndim is None:
            raise TypeError(f"numpy_rows expects an array, got {type(array).__name__}")
        names = self.names
        values = array.tolist()
        if ndim == 1:
            if len(values) == len(names):
                return dict(zip(names, values, strict=True))
            if len(names) == 1:  # one value per row of a batch
                name = names[0]
                return [{name: v} for v in values]
            raise ValueError(f"numpy_rows: {len(values)} values for {len(names)} names")
        if ndim == 2:
            if values and len(values[0]) != len(names):
                raise ValueError(
                    f"numpy_rows: rows of {len(values[0])} values for {len(names)} names"
                )
            return [dict(zip(names, row, strict=True)) for row in values]
        if ndim == 0:
            if len(names) != 1:
                raise ValueError(f"numpy_rows: a scalar for {len(names)} names")
            return {names[0]: values}
        raise ValueError(f"numpy_rows handles 0-, 1- and 2-D arrays, got {ndim}-D")


def numpy_rows(names: Sequence[str]) -> _NumpyRows:
    """Records from a numpy array with named columns, as features or outputs.

    Used as ``features=`` it reads the call's first positional argument; used
    as ``outputs=`` it reads the result. A 1-D array with one value per name is
    one record; a 2-D array is one record per row; with a single name, a 1-D
    array of any length is one record per value (the scores of a batch).

    >>> import numpy as np
    >>> numpy_rows(["a", "b"])(np.array([[1.0, 2.0], [3.0, 4.0]]))
    [{'a': 1.0, 'b': 2.0}, {'a': 3.0, 'b': 4.0}]
    """
    return _NumpyRows(names)
