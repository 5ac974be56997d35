"""The host-wide lock that lets two runs on one engine make a shared base once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from orchestrator.core.files import host_lock

CHILD = """
import sys, time
from orchestrator.core.files import host_lock
print("trying", flush=True)
with host_lock(sys.argv[1]):
    print(time.time(), flush=True)
"""


def test_another_process_waits_until_the_lock_is_released(tmp_path: Path) -> None:
    key = f"test|{tmp_path}"
    with host_lock(key):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, key], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "trying"
        time.sleep(0.3)  # time enough for a lock that does not hold to be taken
        released = time.time()
    acquired = float(child.stdout.readline())
    assert child.wait(timeout=30) == 0
    assert acquired >= released


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    inside: list[int] = []
    most: list[int] = []

    def work() -> None:
        with host_lock(f"test|{tmp_path}"):
            inside.append(1)
            most.append(len(inside))
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == [1, 1, 1, 1]


def test_other_keys_do_not_wait(tmp_path: Path) -> None:
    with host_lock(f"one|{tmp_path}"):
        done = subprocess.run(
            [sys.executable, "-c", CHILD, f"other|{tmp_path}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    assert done.stdout.startswith("trying")
