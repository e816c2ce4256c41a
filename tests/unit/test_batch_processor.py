"""One SQS batch processor per execution environment and thread (outcall.queues.sqs_batch_processor):
built once, never shared by batches worked side by side (the local stack runs a trigger's batches in
threads; a processor holds the state of the batch it works)."""

from __future__ import annotations

import threading

from outcall.queues import sqs_batch_processor


def test_a_thread_keeps_its_processor_and_another_thread_gets_its_own() -> None:
    mine = sqs_batch_processor()
    assert sqs_batch_processor() is mine
    theirs: list[object] = []
    worker = threading.Thread(target=lambda: theirs.append(sqs_batch_processor()))
    worker.start()
    worker.join()
    assert theirs and theirs[0] is not mine
