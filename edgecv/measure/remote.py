"""`edgecv bench --remote ssh://user@host[:port]`: copy the artefact to a device that has edgecv
installed, run the bench there, bring the JSON back. Uses the system's OpenSSH client, so keys,
agents and ~/.ssh/config work as they do for the user; every remote argument is shell-quoted."""
from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgecv.errors import EdgecvError
from edgecv.runtime import artefact_files

TIMEOUT_S = 3600  # one bench of a slow model at several thread counts can take minutes


class RemoteError(EdgecvError):
    """The device cannot be reached over SSH, or the bench failed there."""


@dataclass(frozen=True)
class SSHTarget:
    user: str | None
    host: str
    port: int | None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        return f"ssh://{self.destination}" + (f":{self.port}" if self.port else "")


def parse_target(url: str) -> SSHTarget:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "ssh" or not parts.hostname or port == -1 or parts.path not in ("", "/") or parts.password:
        raise RemoteError(f"--remote takes ssh://[user@]host[:port], got '{url}'")
    for what, name in (("user", parts.username), ("host", parts.hostname)):
        if name and name.startswith("-"):  # ssh would read it as an option (-oProxyCommand=... runs a command)
            raise RemoteError(f"--remote's {what} name '{name}' starts with '-'; give a real {what} name, "
                              "and ssh options with --ssh-option")
    return SSHTarget(parts.username, parts.hostname, port)


def check_ssh_settings(identity, options: tuple[str, ...]) -> None:
    """--ssh-identity and --ssh-option checked before any device is contacted: with several --remote, a typo
    would otherwise be one ssh failure per device, each reported as an unreachable board."""
    if identity is not None and not Path(identity).is_file():
        raise RemoteError(f"--ssh-identity {identity}: no such file; give the private key's path "
                          "(e.g. ~/.ssh/id_ed25519)")
    for option in options:
        key, _, value = option.replace(" ", "=", 1).partition("=")
        if not key.isalnum() or not value.strip():
            raise RemoteError("--ssh-option takes KEY=VALUE, an ssh -o option such as "
                              f"StrictHostKeyChecking=accept-new, got '{option}'")


class SSHSession:
    """Commands over `ssh`; files travel through its stdin/stdout (`cat`), so a device needs no
    SFTP subsystem and every path goes through the same shell quoting."""

    def __init__(self, target: SSHTarget, identity: str | None = None, options: tuple[str, ...] = ()):
        self.target = target
        self._ssh = ["ssh", "-o", "BatchMode=yes"]  # never hang on a password prompt
        if identity:
            self._ssh += ["-i", str(identity)]
        for option in options:
            self._ssh += ["-o", option]
        if target.port:
            self._ssh += ["-p", str(target.port)]

    def run(self, argv: list[str], what: str, timeout: float = 120, stdin: bytes | None = None) -> bytes:
        """Run argv on the device (quoted for its shell); stdout, or a RemoteError saying what failed."""
        try:
            done = subprocess.run([*self._ssh, "--", self.target.destination, shlex.join(argv)], input=stdin,
                                  capture_output=True, timeout=timeout)
        except FileNotFoundError:
            raise RemoteError("--remote needs the OpenSSH client; install it (apt install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{what} on {self.target} timed out after {timeout:.0f} s") from None
        if done.returncode != 0:
            lines = [l for l in done.stderr.decode(errors="replace").splitlines() if l.strip()]
            raise RemoteError(f"{what} on {self.target} failed: {(lines or [f'exit code {done.returncode}'])[-1].strip()[:300]}")
        return done.stdout

    def put(self, local: Path, remote: str) -> None:
        self.run(["sh", "-c", 'cat > "$1"', "sh", remote], f"copying {local.name} to the device",
                 timeout=600, stdin=local.read_bytes())

    def get(self, remote: str) -> bytes:
        return self.run(["cat", remote], "copying the bench result back")


def bench_remote(path, url: str, bench_args: list[str], remote_edgecv: str = "edgecv", identity: str | None = None,
                 ssh_options: tuple[str, ...] = (), device: str | None = None) -> dict:
    """Bench `path` on the device at `url` with `edgecv bench <bench_args>` there; the returned JSON
    is tagged with the device (`device`: the profile ID given, else the host name)."""
    path = Path(path)
    target = parse_target(url)
    if not path.is_file():
        raise EdgecvError(f"artefact '{path}' not found")
    session = SSHSession(target, identity, ssh_options)
    remote_dir = session.run(["mktemp", "-d", "-t", "edgecv-bench.XXXXXX"], "creating a scratch folder").decode().strip()
    if not remote_dir.startswith("/"):
        raise RemoteError(f"could not create a scratch folder on {target} (mktemp printed '{remote_dir[:80]}')")
    try:
        for file in artefact_files(path, sidecar=True):
            session.put(file, f"{remote_dir}/{file.name}")
        remote_json = f"{remote_dir}/bench.json"
        try:
            session.run([remote_edgecv, "bench", f"{remote_dir}/{path.name}", *bench_args, "--json", remote_json],
                        "running edgecv bench", timeout=TIMEOUT_S)
        except RemoteError as e:
            if remote_edgecv in str(e) and ("not found" in str(e) or "No such file" in str(e)):
                raise RemoteError(f"'{remote_edgecv}' is not on the device's PATH at {target}; pip install edgecv there, "
                                  "or pass --remote-edgecv /path/to/edgecv") from None
            raise
        try:
            result = json.loads(session.get(remote_json))
        except ValueError:
            raise RemoteError(f"the bench on {target} wrote no readable JSON; run edgecv bench there by hand to see why") from None
    finally:
        try:
            session.run(["rm", "-rf", remote_dir], "cleaning up")
        except RemoteError:
            pass  # a leftover scratch folder in the device's /tmp is not worth failing the bench for
    result["device"] = device or target.host
    result["remote"] = {"target": str(target), "remote_edgecv": remote_edgecv}
    return result


def ssh_bench_args(settings: dict) -> list[str]:
    """`edgecv bench` options for the device's own edgecv, from {threads, warmup, runs, duration}."""
    args = ["--warmup", str(settings["warmup"])]
    args += ["--threads", ",".join(map(str, settings["threads"]))] if settings.get("threads") else []
    args += ["--runs", str(settings["runs"])] if settings.get("runs") is not None else []
    return args + (["--duration", str(settings["duration"])] if settings.get("duration") else [])


def bench_target(path, url: str, settings: dict, device=None, remote_edgecv: str = "edgecv", identity: str | None = None,
                 ssh_options: tuple[str, ...] = (), benchmark_model=None) -> dict:
    """Bench `path` on one target: ssh:// (edgecv installed there) or adb:// (an Android phone with
    LiteRT's benchmark_model). `device`: the DeviceProfile given for it, or None."""
    from edgecv.measure.android import bench_adb, is_adb_target

    if is_adb_target(url):
        return bench_adb(path, url, benchmark_model, settings, device)
    return bench_remote(path, url, ssh_bench_args(settings), remote_edgecv, identity, ssh_options,
                        device.id if device else None)


def target_tag(url: str, device=None) -> str:
    """What a target's result is tagged with: the profile id given, else the host name or adb serial."""
    from edgecv.measure.android import is_adb_target, parse_adb_target

    if device is not None:
        return device.id
    if is_adb_target(url):
        return parse_adb_target(url) or "android"
    return parse_target(url).host


def bench_fleet(path, targets: list[tuple], settings: dict, remote_edgecv: str = "edgecv", identity: str | None = None,
                ssh_options: tuple[str, ...] = (), benchmark_model=None) -> tuple[list[dict], list[dict]]:
    """Bench `path` on several devices at once, one session each: `targets` is [(url, DeviceProfile
    or None)]. Returns (results in the order given, failures as {target, device, error}); a board
    that cannot be reached or fails is reported and does not stop the others."""
    from concurrent.futures import ThreadPoolExecutor

    tags = [target_tag(url, device) for url, device in targets]  # a malformed URL fails first
    twice = next((t for t in tags if tags.count(t) > 1), None)
    if twice:
        raise RemoteError(f"two --remote would both be tagged '{twice}'; give each its own --device, in the same order")
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = [pool.submit(bench_target, path, url, settings, device, remote_edgecv, identity, ssh_options,
                               benchmark_model) for url, device in targets]
        results, failures = [], []
        for (url, device), future in zip(targets, futures):
            try:
                results.append(future.result())
            except EdgecvError as e:
                failures.append({"target": url, "device": device.id if device else None, "error": str(e)})
    return results, failures
