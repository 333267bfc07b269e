"""Tensors on disk in the safetensors format, read and written with numpy (bfloat16 included).

The format (huggingface/safetensors, docs "Format"): an 8-byte little-endian header length N, a
UTF-8 JSON header of N bytes mapping each name to {"dtype", "shape", "data_offsets": [begin, end]}
(offsets into the byte buffer that follows the header) plus an optional "__metadata__" of strings,
then the raw little-endian, C-ordered tensor bytes. Nothing executable is stored, so reading never
unpickles. Written here (numpy + ml_dtypes) so that capture needs neither torch nor the
safetensors package; tests/test_capture.py cross-checks files against the safetensors library.

Every read checks the header against the file: a truncated file, offsets out of range, an unknown
dtype or a size that does not match the shape raises TensorFileError naming the file.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from ..dtypes import name_of, np_dtype

# opdiff dtype name <-> safetensors dtype tag
TO_TAG = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
          "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}
FROM_TAG = {v: k for k, v in TO_TAG.items()}
MAX_HEADER = 100_000_000   # the format's own bound on the header size


class TensorFileError(ValueError):
    """A tensor file that cannot be read as written: the message names the file and the problem."""


def write(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> int:
    """Write `tensors` (name -> array) to `path`; returns the bytes written."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        dtype = name_of(arr)
        if dtype not in TO_TAG:
            raise TensorFileError(f"{path}: tensor {name!r} has dtype {dtype}, which has no safetensors tag")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": TO_TAG[dtype], "shape": [int(s) for s in arr.shape],
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)   # the format pads the header so the buffer starts 8-byte aligned
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    tmp.replace(path)   # a reader never sees half a file under the final name
    return 8 + len(text) + offset


def read_header(path: Path) -> tuple[dict, int, int]:
    """(header, offset of the data buffer, its size) after checking the header's own framing."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise TensorFileError(f"{path}: truncated: {size} bytes, not even the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise TensorFileError(f"{path}: header length {n} does not fit the file's {size} bytes "
                                      "(truncated or not a safetensors file)")
            raw = f.read(n)
    except OSError as exc:
        raise TensorFileError(f"{path}: cannot read: {exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TensorFileError(f"{path}: header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise TensorFileError(f"{path}: header is {type(header).__name__}, expected an object")
    return header, 8 + n, size - 8 - n


def read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(name -> array, metadata) of a safetensors file, every entry checked against the file."""
    path = Path(path)
    header, start, buffer_size = read_header(path)
    metadata = header.pop("__metadata__", {}) or {}
    with open(path, "rb") as f:
        f.seek(start)
        buffer = f.read()
    out = {}
    for name, entry in header.items():
        where = f"{path}: tensor {name!r}"
        try:
            tag, shape, (begin, end) = entry["dtype"], [int(s) for s in entry["shape"]], entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise TensorFileError(f"{where}: malformed header entry {entry!r}") from None
        if tag not in FROM_TAG:
            raise TensorFileError(f"{where}: dtype {tag!r} is not supported; known: {', '.join(FROM_TAG)}")
        dtype = np_dtype(FROM_TAG[tag])
        if not (0 <= begin <= end <= buffer_size):
            raise TensorFileError(f"{where}: bytes [{begin}, {end}) lie outside the file's {buffer_size}-byte "
                                  "data buffer (the file is truncated)")
        want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if end - begin != want:
            raise TensorFileError(f"{where}: {end - begin} bytes for shape {shape} of {FROM_TAG[tag]} "
                                  f"({want} bytes expected)")
        arr = np.frombuffer(buffer, dtype=dtype.newbyteorder("<"), count=want // dtype.itemsize, offset=begin)
        out[name] = arr.astype(dtype, copy=True).reshape(shape)
    return out, {str(k): str(v) for k, v in metadata.items()}
