"""Arrays inside a configuration: user weight matrices, per-neuron parameters, array-driven currents.

A configuration is immutable, hashable data that ``to_dict`` writes as JSON
or TOML. ``ArrayValue`` keeps an array in it on those terms: a read-only
float64 copy taken where the value is given (so mutating the caller's array
afterwards changes nothing), compared and hashed by its dtype, shape and the
SHA-256 of its bytes, and written by ``to_dict`` as

    {"array": {"dtype": "float64", "shape": [T, K], "sha256": "...", "base64": "..."}}

(negative zeros made +0.0 first, so equal values have equal bytes; the raw
little-endian bytes in base64: 1.33 bytes per byte, so a 1000 x 1000
weight matrix adds 10.7 MB to a manifest, and ``config_hash`` stays the hash
of the whole configuration). ``parse_array`` reads any of a numpy array, a
nested list, a scipy.sparse matrix (densified: the network's weights are dense
on the device) or that dict form back (its SHA-256 checked), and refuses
NaN, infinity, a wrong number of dimensions and an empty array by name.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import numpy as np

from .._errors import bad_value

#: the most elements one array of a configuration may hold (2**28 float64 = 2 GiB)
MAX_ELEMENTS = 2**28


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ArrayValue:
    """An immutable float64 array of a configuration, equal to another when its bytes are."""

    data: np.ndarray
    sha256: str

    @classmethod
    def of(cls, array: np.ndarray) -> "ArrayValue":
        data = np.array(array, dtype="<f8", order="C", copy=True) + 0.0     # -0.0 -> 0.0: one zero, one hash
        data.setflags(write=False)
        return cls(data, hashlib.sha256(data.tobytes()).hexdigest())

    @property
    def shape(self) -> tuple:
        return self.data.shape

    def __eq__(self, other) -> bool:
        return isinstance(other, ArrayValue) and self.shape == other.shape and self.sha256 == other.sha256

    def __hash__(self) -> int:
        return hash((self.shape, self.sha256))

    def __repr__(self) -> str:
        return f"ArrayValue(shape={self.shape}, sha256={self.sha256[:12]}...)"

    def to_dict(self) -> dict:
        return {"array": {"dtype": "float64", "shape": list(self.shape), "sha256": self.sha256,
                          "base64": base64.b64encode(self.data.tobytes()).decode("ascii")}}


def _describe(value) -> str:
    shape = getattr(value, "shape", None)
    return f"an array of shape {tuple(shape)}" if shape is not None else repr(value)


def _from_dict(where: str, field: str, value) -> ArrayValue:
    body = value.get("array")
    keys = {"dtype", "shape", "sha256", "base64"}
    if not hasattr(body, "items") or set(body) != keys:
        raise bad_value(where, field, value, f"an array's dict form is {{'array': {{{', '.join(sorted(keys))}}}}}")
    if body["dtype"] != "float64":
        raise bad_value(where, f"{field}.dtype", body["dtype"], "'float64' is required")
    try:
        raw = base64.b64decode(body["base64"], validate=True)
        shape = tuple(int(s) for s in body["shape"])
    except (ValueError, TypeError):
        raise bad_value(where, f"{field}.base64", "...", "valid base64 of the array's bytes is required") from None
    if int(np.prod(shape)) * 8 != len(raw) or hashlib.sha256(raw).hexdigest() != body["sha256"]:
        raise bad_value(where, f"{field}.sha256", body["sha256"],
                        "the bytes do not match the shape and the SHA-256 they were written with")
    return ArrayValue.of(np.frombuffer(raw, dtype="<f8").reshape(shape))


def parse_array(where: str, field: str, value, *, ndims: tuple, minimum=None, maximum=None) -> ArrayValue:
    """``value`` as an ArrayValue of one of ``ndims`` dimensions, every element finite (and within bounds).

    Accepts numpy arrays and anything ``np.asarray`` takes (nested lists), scipy.sparse matrices (their
    ``toarray()``), an ArrayValue, and the dict form ``ArrayValue.to_dict`` writes.
    """
    if isinstance(value, ArrayValue):
        array = value.data
    elif hasattr(value, "items"):
        array = _from_dict(where, field, value).data
    else:
        if hasattr(value, "toarray") and hasattr(value, "nnz"):      # a scipy.sparse matrix or array
            value = value.toarray()
        if isinstance(value, (str, bytes, bool)) or value is None:
            raise bad_value(where, field, value, f"an array of {' or '.join(map(str, ndims))} dimensions is required")
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):
            raise bad_value(where, field, value, "a rectangular array of real numbers is required") from None
        if array.dtype == bool or array.dtype.kind not in "iuf":
            raise bad_value(where, field, _describe(value),
                            f"an array of real numbers is required, got dtype {array.dtype}")
    if array.ndim not in ndims:
        raise bad_value(where, field, _describe(array),
                        f"an array of {' or '.join(map(str, ndims))} dimensions is required")
    if array.size == 0:
        raise bad_value(where, field, _describe(array), "an empty array is not allowed")
    if array.size > MAX_ELEMENTS:
        raise bad_value(where, field, _describe(array), f"at most {MAX_ELEMENTS} elements are allowed")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise bad_value(where, f"{field}[{', '.join(map(str, at))}]", float(array[at]),
                        "every element must be finite (no NaN or infinity)")
    for bound, op, word in ((minimum, np.less, ">="), (maximum, np.greater, "<=")):
        if bound is not None and op(array, bound).any():
            at = tuple(int(i) for i in np.argwhere(op(array, bound))[0])
            raise bad_value(where, f"{field}[{', '.join(map(str, at))}]", float(array[at]),
                            f"every element must be {word} {bound}")
    return ArrayValue.of(array)
