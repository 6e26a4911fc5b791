"""A set of 64-bit hashes in one flat array: 16 bytes per entry instead of Python's ~70.

The loader remembers the hash of every row id it has seen, to find duplicates across a file
of millions of rows; a plain `set` of ints would be most of the loader's memory.
"""

from __future__ import annotations

from array import array

_EMPTY = 0  # marks a free slot; a hash that is 0 is stored as 1


class HashSet:
    """Open addressing with linear probing, kept at most half full."""

    __slots__ = ("_mask", "_size", "_slots")

    def __init__(self, capacity: int = 1 << 14) -> None:
        slots = 1 << max(capacity - 1, 1).bit_length()
        self._slots = array("q", bytes(8 * slots))
        self._mask = slots - 1
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, value: int) -> bool:
        """Add `value` (a 64-bit signed int, such as `hash(text)`); False if already there."""
        value = value or 1
        slots, mask = self._slots, self._mask
        index = value & mask
        while (current := slots[index]) != _EMPTY:
            if current == value:
                return False
            index = (index + 1) & mask
        slots[index] = value
        self._size += 1
        if self._size * 2 > mask:
            self._grow()
        return True

    def __contains__(self, value: int) -> bool:
        value = value or 1
        slots, mask = self._slots, self._mask
        index = value & mask
        while (current := slots[index]) != _EMPTY:
            if current == value:
                return True
            index = (index + 1) & mask
        return False

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("q", bytes(16 * len(old)))
        self._mask = 2 * len(old) - 1
        self._size = 0
        for value in old:
            if value != _EMPTY:
                self.add(value)
