import os

from abplatform.celery import ping


def test_task_round_trip_through_real_worker(celery_worker_process):
    result = ping.delay(41).get(timeout=30)
    assert result["pong"] == 41
    assert result["pid"] != os.getpid()
