"""Recently seen utterance ids per partition, with staged additions that roll back with a transaction.

An edge device that crashes after sending but before its spool records the ack sends the same
utterance again (same ``utterance_id``). The worker drops such a re-send when it has seen the id
for the same device recently. An id is held as a 16-byte digest of (device, utterance id), so the
memory is bounded whatever ids a device sends: an LRU of ``capacity`` digests per partition.

Ids seen in a batch are only *staged*; they become "seen" when the transaction that processed
them commits, so an aborted batch is deduplicated afresh on retry. The worker also writes each
newly seen digest to a compacted changelog topic in the same transaction and restores a
partition's recent digests from it when the partition is assigned (:mod:`.changelog`), so the
memory survives restarts and rebalances within the changelog's retention window.

Ids the decoder derived from a record's coordinates (``@topic-partition-offset``: plain-text
records and JSON without ``utterance_id``) are never deduped: they are unique by construction,
and no device can claim them because '@' is not allowed in an id it sends.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Iterable

from emostream.events import DERIVED_ID_PREFIX

DEFAULT_CAPACITY = 10_000

PartitionKey = tuple[str, int]


def utterance_digest(device_id: str, utterance_id: str) -> bytes:
    """The 16-byte dedupe key of one device's utterance."""
    return hashlib.blake2b(f"{device_id}\0{utterance_id}".encode("utf-8", "surrogatepass"), digest_size=16).digest()


def is_derived_id(utterance_id: str) -> bool:
    """True for ids the decoder made from the record's coordinates."""
    return utterance_id.startswith(DERIVED_ID_PREFIX)


class RecentIds:
    """Bounded per-partition LRU of utterance digests with transactional staging."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._seen: dict[PartitionKey, OrderedDict[bytes, None]] = {}
        # Staged ids, one layer per transaction: the open one (being filled) and the sealed ones
        # (committing, oldest first). A pipelined worker stages batch n+1 while batch n commits.
        self._staged: list[tuple[PartitionKey, bytes]] = []
        self._sealed: deque[list[tuple[PartitionKey, bytes]]] = deque()
        self._staged_set: set[tuple[PartitionKey, bytes]] = set()

    def check_and_stage(self, tp: PartitionKey, digest: bytes) -> bool:
        """True when the id is new (and stage it); False when it is a duplicate to drop."""
        if (tp, digest) in self._staged_set:
            return False  # staged by this batch or by one still committing
        seen = self._seen.get(tp)
        if seen is not None and digest in seen:
            seen.move_to_end(digest)
            return False
        self._staged.append((tp, digest))
        self._staged_set.add((tp, digest))
        return True

    def known(self, tp: PartitionKey, digest: bytes) -> bool:
        """True when the id is seen or staged; changes nothing (not even the LRU order). The
        pipelined worker asks this of a batch decoded before the batches ahead of it are produced:
        an id staged after the question is found by check_and_stage when this batch is produced
        (``drop_duplicates``), and an id it finds was staged by a batch read earlier."""
        if (tp, digest) in self._staged_set:
            return True
        seen = self._seen.get(tp)
        return seen is not None and digest in seen

    def touch(self, tp: PartitionKey, digest: bytes) -> None:
        """An id found to be a duplicate by ``known`` (in another thread): move it to the young end
        of the LRU, as ``check_and_stage`` does on a hit, so a device that keeps re-sending it
        keeps it remembered. Call it in the thread that stages."""
        if (tp, digest) in self._staged_set:
            return
        seen = self._seen.get(tp)
        if seen is not None and digest in seen:
            seen.move_to_end(digest)

    def seal(self) -> None:
        """The open layer's transaction starts committing: what is staged from now on is the next one's."""
        self._sealed.append(self._staged)
        self._staged = []

    def commit_sealed(self) -> None:
        """The oldest committing transaction committed: its staged ids become seen."""
        if self._sealed:
            self._accept(self._sealed.popleft())

    def commit(self) -> None:
        """Everything staged committed (sealed layers, then the open one): those ids become seen
        (oldest evicted past capacity)."""
        while self._sealed:
            self._accept(self._sealed.popleft())
        self._accept(self._staged)
        self._staged = []

    def rollback(self) -> None:
        """A transaction aborted: forget everything staged, the open layer and the sealed ones
        (a batch read after an aborted one is read again too)."""
        self._staged = []
        self._sealed.clear()
        self._staged_set.clear()

    def _accept(self, layer: list[tuple[PartitionKey, bytes]]) -> None:
        by_tp: dict[PartitionKey, list[bytes]] = {}
        for tp, digest in layer:
            by_tp.setdefault(tp, []).append(digest)
            self._staged_set.discard((tp, digest))
        for tp, digests in by_tp.items():
            self._remember(tp, digests)

    def restore(self, tp: PartitionKey, digests: Iterable[bytes]) -> None:
        """Seed a newly assigned partition with digests read back from the changelog (oldest first)."""
        self._remember(tp, digests)

    def _remember(self, tp: PartitionKey, digests: Iterable[bytes]) -> None:
        seen = self._seen.setdefault(tp, OrderedDict())
        for digest in digests:
            seen[digest] = None
            seen.move_to_end(digest)
        while len(seen) > self.capacity:
            seen.popitem(last=False)

    def drop_partition(self, tp: PartitionKey) -> None:
        """Forget a partition this instance no longer owns."""
        self._seen.pop(tp, None)

    def __len__(self) -> int:
        return sum(len(s) for s in self._seen.values())
