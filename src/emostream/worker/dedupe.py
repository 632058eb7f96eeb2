"""Recently seen utterance ids per partition, with staged additions that roll back with a transaction.

An edge device that crashes after sending but before its spool records the ack sends the same
utterance again (same ``utterance_id``). The worker drops such a re-send when it has seen the id
recently for the same device. The memory is bounded (an LRU of ``capacity`` ids per partition) and
lives in the process: after a restart or a rebalance it starts empty, so a re-send that arrives
then is classified again. Ids seen in a batch are only *staged*; they become "seen" when the
transaction that processed them commits, so an aborted batch is deduplicated afresh on retry.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_CAPACITY = 10_000

PartitionKey = tuple[str, int]


class RecentIds:
    """Bounded per-partition LRU of (device_id, utterance_id) with transactional staging."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._seen: dict[PartitionKey, OrderedDict[tuple[str, str], None]] = {}
        self._staged: dict[PartitionKey, list[tuple[str, str]]] = {}
        self._staged_set: set[tuple[PartitionKey, str, str]] = set()

    def check_and_stage(self, tp: PartitionKey, device_id: str, utterance_id: str) -> bool:
        """True when the id is new (and stage it); False when it is a duplicate to drop."""
        key = (device_id, utterance_id)
        if (tp, device_id, utterance_id) in self._staged_set:
            return False
        seen = self._seen.get(tp)
        if seen is not None and key in seen:
            seen.move_to_end(key)
            return False
        self._staged.setdefault(tp, []).append(key)
        self._staged_set.add((tp, device_id, utterance_id))
        return True

    def commit(self) -> None:
        """The transaction committed: staged ids become seen (oldest evicted past capacity)."""
        for tp, keys in self._staged.items():
            seen = self._seen.setdefault(tp, OrderedDict())
            for key in keys:
                seen[key] = None
                seen.move_to_end(key)
            while len(seen) > self.capacity:
                seen.popitem(last=False)
        self.rollback()

    def rollback(self) -> None:
        """The transaction aborted: forget what was staged."""
        self._staged.clear()
        self._staged_set.clear()

    def drop_partition(self, tp: PartitionKey) -> None:
        """Forget a partition this instance no longer owns."""
        self._seen.pop(tp, None)

    def __len__(self) -> int:
        return sum(len(s) for s in self._seen.values())
