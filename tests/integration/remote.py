"""A second Docker engine on this host, reached over ssh:// on loopback.

Its own socket, data root, exec root and bridge (`--bridge none` would delete
the first engine's docker0), with NAT for its bridge added here, since it
runs with --iptables=false so as not to fight the first engine over chains.
sshd listens on 127.0.0.1 only; `Match LocalPort` + `SetEnv DOCKER_HOST`
points ssh sessions at the second engine, which is how docker-py's ssh
transport (`docker system dial-stdio`) reaches it.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

SOCKET_DIR = Path("/run/orchestrate-test")
SOCKET = SOCKET_DIR / "docker.sock"
DATA_ROOT = Path("/var/lib/orchestrate-test-docker")
BRIDGE = "orchtest0"
SUBNET = "192.168.251.1/24"
SSH_PORT = 2222
SSH_CONFIG = Path("/root/.ssh/config")
BEGIN, END = "# orchestrate-tests begin", "# orchestrate-tests end"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def wait_for(what: str, probe: list[str], seconds: float = 60) -> None:
    """Runs `probe` until it exits 0; `what` did not come up after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if run(*probe, check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not come up")


def _clear_stale_pid(path: Path, name: str) -> None:
    """Removes a pid file of an earlier boot that names no running `name`.

    /run is not always a tmpfs: dockerd refuses to start on such a file, or
    waits for a containerd that never answers.
    """
    try:
        pid = "".join(c for c in path.read_text() if c.isdigit())
        if pid and Path(f"/proc/{pid}/comm").read_text().strip() == name:
            return
    except OSError:
        pass
    path.unlink(missing_ok=True)


@contextlib.contextmanager
def second_engine(tmp: Path, data_root: Path = DATA_ROOT) -> Iterator[str]:
    """Yields the engine URL, ssh://root@127.0.0.1:2222 (its socket is SOCKET); all
    is torn down after but `data_root`, which keeps its images for the next start."""
    SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    run("ip", "link", "add", BRIDGE, "type", "bridge", check=False)
    run("ip", "addr", "replace", SUBNET, "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    nat = [
        "-t",
        "nat",
        "POSTROUTING",
        "-s",
        "192.168.251.0/24",
        "!",
        "-o",
        BRIDGE,
        "-j",
        "MASQUERADE",
    ]
    # The first engine sets FORWARD to DROP and only lets its own bridge through.
    forward = [
        ["FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "ACCEPT"],
        [
            "FORWARD",
            "-o",
            BRIDGE,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    ]
    run("iptables", nat[0], nat[1], "-A", *nat[2:])
    for rule in forward:
        run("iptables", "-I", *rule)
    _clear_stale_pid(SOCKET_DIR / "docker.pid", "dockerd")
    _clear_stale_pid(SOCKET_DIR / "exec" / "containerd" / "containerd.pid", "containerd")
    dockerd = subprocess.Popen(
        [
            "dockerd",
            "--host",
            f"unix://{SOCKET}",
            "--data-root",
            str(data_root),
            "--exec-root",
            str(SOCKET_DIR / "exec"),
            "--pidfile",
            str(SOCKET_DIR / "docker.pid"),
            "--bridge",
            BRIDGE,
            "--iptables=false",
            "--ip-masq=false",
        ],
        stdout=(tmp / "dockerd2.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    sshd: subprocess.Popen[bytes] | None = None
    try:
        wait_for("second dockerd", ["docker", "-H", f"unix://{SOCKET}", "version"])
        sshd = _start_sshd(tmp)
        wait_for(
            "ssh to the second engine",
            ["ssh", "-p", str(SSH_PORT), "root@127.0.0.1", "docker", "version"],
            30,
        )
        yield f"ssh://root@127.0.0.1:{SSH_PORT}"
    finally:
        if sshd is not None:
            sshd.terminate()
            sshd.wait(timeout=30)
        _remove_ssh_config()
        dockerd.terminate()
        dockerd.wait(timeout=60)
        run("iptables", nat[0], nat[1], "-D", *nat[2:], check=False)
        for rule in forward:
            run("iptables", "-D", *rule, check=False)
        run("ip", "link", "del", BRIDGE, check=False)


def _start_sshd(tmp: Path) -> subprocess.Popen[bytes]:
    key, host_key = tmp / "id_ed25519", tmp / "host_ed25519"
    for path in (key, host_key):
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path))
    (tmp / "authorized_keys").write_text((tmp / "id_ed25519.pub").read_text())
    (tmp / "authorized_keys").chmod(0o600)
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {SSH_PORT}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"PidFile {tmp / 'sshd.pid'}\nAuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
        "StrictModes no\n"
        f"Match LocalPort {SSH_PORT}\n    SetEnv DOCKER_HOST=unix://{SOCKET}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    _remove_ssh_config()
    SSH_CONFIG.parent.mkdir(mode=0o700, exist_ok=True)
    # docker-py passes -p itself, so the client settings match on host and port.
    block = (
        f'{BEGIN}\nMatch host 127.0.0.1 exec "[ %p = {SSH_PORT} ]"\n'
        f"  User root\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        f"{END}\n"
    )
    existing = SSH_CONFIG.read_text() if SSH_CONFIG.exists() else ""
    SSH_CONFIG.write_text(block + existing)
    return subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        stdout=(tmp / "sshd.log").open("w"),
        stderr=subprocess.STDOUT,
    )


def _remove_ssh_config() -> None:
    if not SSH_CONFIG.exists():
        return
    text = SSH_CONFIG.read_text()
    if BEGIN in text:
        head, _, rest = text.partition(BEGIN)
        SSH_CONFIG.write_text(head + rest.partition(END)[2].lstrip("\n"))
