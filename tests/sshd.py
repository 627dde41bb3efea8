"""A real OpenSSH server on 127.0.0.1 for the remote-bench tests: its own host key, one client key,
key-only login as the current user. Needs Debian's openssh-server (installed by .ci/run)."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class LocalSSHD:
    url: str
    identity: Path
    options: tuple[str, ...]  # ssh -o options a client needs (known-hosts file kept in the test's folder)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(folder: Path, client_key: Path | None = None):
    """Start sshd in the foreground of a child process; returns (process, LocalSSHD). `client_key`: let
    an existing client key in (a second board for the same user), instead of making one."""
    if not Path(SSHD).is_file():
        raise RuntimeError("sshd not found: apt-get install -y openssh-server (.ci/run does)")
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("host_key",) if client_key else ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
    client_key = client_key or folder / "client_key"
    authorized = folder / "authorized_keys"
    shutil.copy(f"{client_key}.pub", authorized)
    authorized.chmod(0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}", f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "StrictModes no", "UsePAM no", f"AllowUsers {getpass.getuser()}",
        "PermitRootLogin prohibit-password", "LogLevel ERROR", "",
    ]))
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {proc.stderr.read().decode()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    options = (f"UserKnownHostsFile={folder / 'known_hosts'}", "StrictHostKeyChecking=accept-new", "LogLevel=ERROR")
    return proc, LocalSSHD(f"ssh://{getpass.getuser()}@127.0.0.1:{port}", client_key, options)
