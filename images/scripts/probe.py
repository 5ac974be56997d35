#!/usr/bin/env python3
"""Print this image's real interpreter tags and glibc version as JSON.

Run by the image build itself (saved to /etc/orchestrate/probe.json) and
read back by orchestrate, so plans use the tags pip in this image accepts.
Usage: orchestrate-probe PYTHON_VERSION...
"""

import json
import os
import platform
import subprocess
import sys

SNIPPET = "import json;from packaging.tags import sys_tags;print(json.dumps([str(t) for t in sys_tags()]))"


def main() -> None:
    tags = {}
    for version in sys.argv[1:]:
        python = f"/opt/orchestrate/py{version}/bin/python"
        out = subprocess.run([python, "-c", SNIPPET], check=True, capture_output=True, text=True)
        tags[version] = json.loads(out.stdout)
    libc, glibc = platform.libc_ver()
    print(json.dumps({"machine": os.uname().machine, "libc": libc, "glibc": glibc,
                      "tags": tags}, indent=1))


if __name__ == "__main__":
    main()
