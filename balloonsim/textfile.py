"""Text files people give balloonsim (scenarios, traces, oracle scripts): read within a size limit, decoded.

A file is UTF-8, or UTF-16 or UTF-32 with a byte-order mark (the encodings
YAML allows); anything else gets one line naming the first line that is not
UTF-8 text, never a traceback.
"""

from __future__ import annotations

import codecs
from pathlib import Path

#: Byte-order marks, UTF-32 first: its little-endian mark begins with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF8, "utf-8-sig"),
)


class TextError(ValueError):
    """A file that cannot be read as text: one line, ``file[:line]: what is wrong; what to do``."""


def read_text(path: Path, limit: int) -> str:
    """The text of ``path``, at most ``limit`` bytes of it."""
    data = bytearray()
    try:
        with path.open("rb") as f:
            # in chunks: read(limit + 1) would allocate the whole limit for a small file
            while len(data) <= limit and (chunk := f.read(min(1 << 20, limit + 1 - len(data)))):
                data += chunk
    except OSError as err:
        raise TextError(f"{path}: cannot read: {err.strerror or err}") from None
    if len(data) > limit:
        raise TextError(f"{path}: larger than {limit >> 20} MiB, more than balloonsim reads")
    return decode(bytes(data), str(path))


def decode(data: bytes, name: str) -> str:
    """UTF-8, or UTF-16/32 after a byte-order mark; a NUL character is refused (UTF-16 without a mark)."""
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].decode(encoding, errors="replace").count("\n") + 1
        label = "UTF-8" if encoding.startswith("utf-8") else encoding.upper()
        raise TextError(
            f"{name}:{line}: not {label} text (byte {data[err.start]:#04x}: {err.reason}); save it as UTF-8"
        ) from None
    nul = text.find("\0")
    if nul >= 0:
        raise TextError(
            f"{name}:{text.count(chr(10), 0, nul) + 1}: not UTF-8 text (a NUL character: UTF-16 without a "
            "byte-order mark?); save it as UTF-8"
        )
    return text
