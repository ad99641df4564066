"""The text a stream has sent so far, kept for counting its tokens if the upstream never reports
usage (a stream cut short by the client or the upstream)."""

from __future__ import annotations


class OutputText:
    """Appended to once per chunk, read once, if at all, when the stream ends.

    An open stream holds its text until it ends, and a chunk carries a few characters: kept as one
    string each, the pieces cost about 60 bytes per chunk beside the text itself (18 KB for a stream
    of 300 chunks, more than a third of what such a stream holds). So they are joined into blocks
    as they arrive; a block is one string, whatever the number of pieces in it."""

    __slots__ = ("_blocks", "_pieces")
    BLOCK = 32  # pieces joined at a time: fewer than this many are ever kept as strings of their own

    def __init__(self) -> None:
        self._blocks: list[str] = []
        self._pieces: list[str] = []

    def append(self, piece: str) -> None:
        pieces = self._pieces
        pieces.append(piece)
        if len(pieces) >= self.BLOCK:
            self._blocks.append("".join(pieces))
            pieces.clear()

    def __str__(self) -> str:
        return "".join(self._blocks) + "".join(self._pieces)
