"""Two writers of one link at once: two merges, or two shards on one host, each
saving a run report moves `latest.json`; neither may trip over the other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WRITER = """
import sys
from pathlib import Path
from orchestrator.report.data import save_run_report
folder, run = Path(sys.argv[1]), sys.argv[2]
for n in range(300):
    save_run_report({"run_id": f"{run}-{n}", "jobs": []}, folder)
"""


def test_two_processes_saving_reports_at_once_both_succeed(tmp_path: Path) -> None:
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), run], stderr=subprocess.PIPE, text=True
        )
        for run in ("a", "b")
    ]
    errors = [writer.communicate(timeout=120)[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], errors
    latest = tmp_path / "latest.json"
    assert latest.is_symlink()
    assert json.loads(latest.read_text())["run_id"] in {"a-299", "b-299"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert len(list(tmp_path.glob("[ab]-*.json"))) == 600
