"""Reading a reply's arrays: zero-copy decoding, and the lossless dtype rule of the contract.

Why hand-written: Flower's `Array.numpy()` copies the data twice (np.load); the guard decodes
every reply once and shares the read-only view with the update checks.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
from flwr.app import Array
from flwr.common.constant import SType
from numpy.lib import format as npy_format


def decode_array(arr: Array) -> np.ndarray:
    """`arr.numpy()` without copying the data: a read-only view of the Array's bytes.

    The same values as Flower's `np.load(..., allow_pickle=False)`, which copies the data twice
    (4 MB per 1M float32): the guard decodes every reply once and shares the result.
    """
    if arr.stype != SType.NUMPY:
        raise TypeError(f"unsupported serialization type '{arr.stype}'")
    shape = tuple(arr.shape)
    header = _npy_header(arr.dtype, shape)
    if arr.data[:len(header)] == header:  # what np.save writes: skip parsing the header
        dtype = np.dtype(arr.dtype)
        if dtype.hasobject:
            raise ValueError("object arrays need pickle, which is never loaded")
        return np.frombuffer(arr.data, dtype=dtype, count=math.prod(shape),
                             offset=len(header)).reshape(shape)
    stream = io.BytesIO(arr.data)
    version = npy_format.read_magic(stream)
    if version == (1, 0):
        shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream)
    else:  # rare header versions: Flower's own (copying) decoder
        return arr.numpy()
    if dtype.hasobject:
        raise ValueError("object arrays need pickle, which is never loaded")
    values = np.frombuffer(arr.data, dtype=dtype, count=math.prod(shape), offset=stream.tell())
    if fortran_order:
        return values.reshape(shape[::-1]).transpose()
    return values.reshape(shape)


@functools.lru_cache(maxsize=1024)
def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """The .npy header np.save writes for a C-order array of this dtype and shape (parsing
    one with ast.literal_eval costs as much as checking 50,000 floats)."""
    stream = io.BytesIO()
    npy_format.write_array_header_1_0(stream, {
        "descr": npy_format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
        "shape": shape})
    return stream.getvalue()


def lossless_cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray | None:
    """`values` as `dtype` when no value changes (a float upcast always, a downcast when every
    value is representable), else None. Only float-to-float casts are considered."""
    if values.dtype == dtype:
        return values
    if values.dtype.kind != "f" or dtype.kind != "f":
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to Inf is caught below
        cast = values.astype(dtype)
        if dtype.itemsize > values.dtype.itemsize:
            return cast
        same = np.array_equal(cast.astype(values.dtype), values)
    return cast if same else None
