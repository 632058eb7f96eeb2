"""The classifier worker: transcripts → micro-batches → ONNX model → EmotionEvents, exactly once.

``Worker`` is the loop; ``WorkerSettings`` its options; files by job: ``batching`` (policy),
``process`` (decode/classify, no I/O), ``checkpoint`` (the transaction), ``dedupe`` (recent
utterance ids), ``health`` (/metrics, /healthz), ``logs``.
"""

from emostream.worker.runner import Worker, WorkerSettings

__all__ = ["Worker", "WorkerSettings"]
