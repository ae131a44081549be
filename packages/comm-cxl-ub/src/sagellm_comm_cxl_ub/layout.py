"""Where things sit inside one group's region.

::

    0        header      magic, version, world size, slot and chunk sizes, the job token, each rank's pid
    4096     flags       per rank: its step counter (a futex word), the count of peers asleep on it (native engine),
                         the two step tags (parities 0 and 1: which call the step belongs to) and the engine the rank
                         runs, all in one line; one line on, its P2P doorbell
    ...      channels    per ordered pair (src, dst): ``sent`` (written by src) and ``acked`` (written by dst)
    ...      slots       two parities x n ranks x ``slot_bytes``: the collective data (double-buffered)
    ...      mailboxes   per ordered pair: two sub-buffers of ``chunk_bytes`` (+ a 64-byte header) for send/recv

Every word one rank writes and others poll has a 128-byte line of its own (no false sharing; 128 covers the
adjacent-line prefetcher). Parity ``p`` slots are contiguous, so ``n`` ranks' slots are one ``[n, slot_bytes]``
view and reductions across ranks are single vectorised torch calls.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ENGINE_NATIVE", "ENGINE_PYTHON", "HEADER_BYTES", "LINE", "MAGIC", "TAG_BYTES", "VERSION", "Layout"]

MAGIC = 0x5347_4C4C_4D5F_524E  # "SGLLM_RN"
VERSION = 3  # 2: step tags; 3: sleepers count and engine word (native engine)
TAG_BYTES = 32
ENGINE_PYTHON = 1
ENGINE_NATIVE = 0x100  # plus the native library's ABI version
HEADER_BYTES = 4096
LINE = 128
PAGE = 4096
MAX_RANKS = (HEADER_BYTES - 128) // 8


def _up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@dataclass(frozen=True)
class Layout:
    world_size: int
    slot_bytes: int
    chunk_bytes: int

    def __post_init__(self) -> None:
        if not 1 <= self.world_size <= MAX_RANKS:
            raise ValueError(f"world size {self.world_size} out of range 1..{MAX_RANKS}")
        if self.slot_bytes % PAGE or self.chunk_bytes % LINE or self.slot_bytes <= 0 or self.chunk_bytes <= 0:
            raise ValueError("slot_bytes must be a positive multiple of 4096 and chunk_bytes of 128")

    # header fields
    magic_off = 0
    version_off = 8
    world_off = 12
    slot_off = 16
    chunk_off = 24
    token_off = 32  # 32 bytes
    pids_off = 128  # int64 per rank

    @property
    def flags_off(self) -> int:
        return HEADER_BYTES

    def step_word(self, rank: int) -> int:
        return self.flags_off + rank * 2 * LINE

    def tag_off(self, rank: int, parity: int) -> int:
        """The tag of ``rank``'s steps of ``parity``: in its step counter's line, after the 4-byte counter."""
        return self.step_word(rank) + 8 + parity * TAG_BYTES

    def engine_word(self, rank: int) -> int:
        """Which engine ``rank`` runs (``ENGINE_PYTHON`` or ``ENGINE_NATIVE``): after its two tags."""
        return self.step_word(rank) + 8 + 2 * TAG_BYTES

    def doorbell_word(self, rank: int) -> int:
        return self.flags_off + rank * 2 * LINE + LINE

    @property
    def channels_off(self) -> int:
        return self.flags_off + self.world_size * 2 * LINE

    def sent_word(self, src: int, dst: int) -> int:
        return self.channels_off + (src * self.world_size + dst) * 2 * LINE

    def acked_word(self, src: int, dst: int) -> int:
        return self.sent_word(src, dst) + LINE

    @property
    def slots_off(self) -> int:
        return _up(self.channels_off + self.world_size * self.world_size * 2 * LINE, PAGE)

    def parity_off(self, parity: int) -> int:
        return self.slots_off + parity * self.world_size * self.slot_bytes

    @property
    def mailbox_bytes(self) -> int:
        return LINE // 2 + self.chunk_bytes

    @property
    def mailboxes_off(self) -> int:
        return self.parity_off(2)

    def mailbox(self, src: int, dst: int, which: int) -> int:
        """Offset of sub-buffer ``which`` (0/1) of channel src->dst: a 64-byte header, then the data."""
        return self.mailboxes_off + ((src * self.world_size + dst) * 2 + which) * self.mailbox_bytes

    @property
    def size(self) -> int:
        return _up(self.mailbox(self.world_size - 1, self.world_size - 1, 1) + self.mailbox_bytes, PAGE)
