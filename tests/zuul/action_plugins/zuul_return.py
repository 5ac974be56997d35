"""Stand-in for Zuul's zuul_return: the data it is given, one JSON line a call."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):  # type: ignore[misc]
    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        with Path(os.environ["ZUUL_RETURN_RECORD"]).open("a", encoding="utf-8") as record:
            record.write(json.dumps(self._task.args.get("data", {})) + "\n")
        result["changed"] = False
        return result
