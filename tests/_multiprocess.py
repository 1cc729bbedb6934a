"""Starts the processes of a multi-process test and watches them.

`run` starts several commands at once, each in its own process group, and waits
for all of them under one time limit. As soon as one fails, the others are
killed (a peer left alone would wait for it in a collective) and the failure is
raised with the child's stderr, its traceback. When the time is up, all are
killed and their stderr shown. A child also dies with the test process
(Linux's parent-death signal), so nothing outlives a killed test run.

Nothing may listen beyond 127.0.0.1. Workers bind loopback where their engine
lets them, and `listening_addresses` tells a worker what it really listens on.
Some engines cannot be told: TensorFlow's gRPC server binds 0.0.0.0, and
so do torchrun's rendezvous store and JAX's coordinator by default. Those run
with `isolated=True`: in a private network namespace (`unshare --net
--map-root-user`) that holds only a loopback interface. `isolation_error()`
says why a machine cannot do that (e.g. unprivileged user namespaces are off),
and the tests that need it skip with that reason.

Run as a script (`python _multiprocess.py SPEC`), this module is the part of an
isolated launch that runs inside the namespace.
"""

import contextlib
import dataclasses
import functools
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

Command = tuple[Sequence[str], dict[str, str]]  # argv, extra environment.
STDERR_SHOWN = 8000  # Characters of a failed child's stderr in the error.
POLL_S = 0.05


class LaunchError(AssertionError):
    """A child exited with an error or ran out of time."""


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that nothing listens on now, chosen by the kernel."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run(
    commands: Sequence[Command], timeout: float, isolated: bool = False
) -> list[str]:
    """Runs the commands at once and returns their stdouts once all exit 0.

    Args:
        commands: `(argv, env)` pairs; `env` is added to this process's.
        timeout: Seconds for all of them together.
        isolated: Runs them in a private network namespace with only a
            loopback interface (see `isolation_error`).

    Returns:
        Each command's standard output.

    Raises:
        LaunchError: with the failed child's stderr, or every child's when
            they ran out of time.
    """
    if isolated:
        return _run_isolated(commands, timeout)
    with tempfile.TemporaryDirectory() as logs:
        children = [
            _Child.start(argv, env, Path(logs) / str(i))
            for i, (argv, env) in enumerate(commands)
        ]
        try:
            _wait(children, timeout)
        finally:
            for child in children:
                child.kill()
        return [child.stdout.read_text() for child in children]


@dataclasses.dataclass
class _Child:
    process: subprocess.Popen
    stdout: Path
    stderr: Path
    name: str

    @classmethod
    def start(cls, argv: Sequence[str], env: dict[str, str], logs: Path) -> "_Child":
        stdout, stderr = logs.with_suffix(".out"), logs.with_suffix(".err")
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                _dying_with_parent(argv),
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # A process group, to kill its children.
            )
        return cls(process, stdout, stderr, " ".join(argv))

    def failure(self) -> str | None:
        code = self.process.poll()
        if code in (None, 0):
            return None
        tail = self.stderr.read_text(errors="replace")[-STDERR_SHOWN:]
        return f"`{self.name}` exited with {code}. Its stderr:\n{tail}"

    def kill(self) -> None:
        # The whole group, even when its leader is done: a launcher such as
        # torchrun may leave its workers behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


# Sets Linux's parent-death signal, then becomes the command. A `preexec_fn`
# would do it without the extra exec, but forks a multithreaded interpreter
# (JAX warns) and can deadlock there.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL); "  # PR_SET_PDEATHSIG
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def _dying_with_parent(argv: Sequence[str]) -> list[str]:
    """`argv`, killed when the process that started it ends (on Linux)."""
    if sys.platform != "linux":
        return list(argv)
    return [sys.executable, "-c", _DIE_WITH_PARENT, *argv]


def _wait(children: Sequence[_Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        running = [child.process.poll() is None for child in children]
        failures = [f for f in map(_Child.failure, children) if f is not None]
        if failures:
            raise LaunchError(f"{failures[0]}\n(Its peers were killed.)")
        if not any(running):
            return
        if time.monotonic() > deadline:
            tails = "\n\n".join(
                f"`{child.name}`:\n"
                + child.stderr.read_text(errors="replace")[-STDERR_SHOWN:]
                for child in children
            )
            raise LaunchError(f"Killed after {timeout:.0f} s. Stderr:\n{tails}")
        time.sleep(POLL_S)


# ---------------------------------------------------------------------------
# Private network namespaces.

_UNSHARE = ["unshare", "--net", "--map-root-user"]


@functools.cache
def isolation_error() -> str | None:
    """Why `run(..., isolated=True)` cannot work here, or None if it can."""
    try:
        probe = subprocess.run(
            [*_UNSHARE, sys.executable, __file__, "--probe"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"no private network namespace: {error}"
    if probe.returncode != 0 or probe.stdout.strip() != "ok":
        return f"no private network namespace: {probe.stderr.strip()[-500:]}"
    return None


def _run_isolated(commands: Sequence[Command], timeout: float) -> list[str]:
    reason = isolation_error()
    if reason is not None:
        raise LaunchError(reason)
    spec = json.dumps(
        {"commands": [[list(a), e] for a, e in commands], "timeout": timeout}
    )
    try:
        done = subprocess.run(
            _dying_with_parent([*_UNSHARE, sys.executable, __file__, spec]),
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise LaunchError(f"The namespace's launcher hung: {error}") from None
    if done.returncode != 0:
        raise LaunchError(done.stderr[-STDERR_SHOWN - 500 :])
    return json.loads(done.stdout)


_IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: the name, then the flags.


def _interface_flags(name: str, set_to: int | None = None) -> int:
    """An interface's flags (SIOCGIFFLAGS), after setting them (SIOCSIFFLAGS)."""
    import fcntl
    import struct

    with socket.socket() as s:
        if set_to is not None:
            fcntl.ioctl(s, 0x8914, struct.pack(_IFREQ, name.encode(), set_to))
        reply = fcntl.ioctl(s, 0x8913, struct.pack(_IFREQ, name.encode(), 0))
    return struct.unpack(_IFREQ, reply)[1]


def _namespace_main(argument: str) -> None:
    # A new network namespace has its own devices, all down: loopback, and on
    # some kernels tunnel devices, which lead nowhere while down.
    _interface_flags("lo", set_to=_interface_flags("lo") | _IFF_UP)
    up = [n for _, n in socket.if_nameindex() if _interface_flags(n) & _IFF_UP]
    if up != ["lo"]:
        raise SystemExit(f"interfaces {up} are up in the namespace, not only lo")
    if argument == "--probe":
        print("ok")
        return
    spec = json.loads(argument)
    commands = [(argv, env) for argv, env in spec["commands"]]
    try:
        outputs = run(commands, spec["timeout"])
    except LaunchError as error:
        raise SystemExit(str(error)) from None
    print(json.dumps(outputs))


# ---------------------------------------------------------------------------
# What a process listens on.


def listening_addresses() -> list[str]:
    """The `host:port` of every TCP socket this process listens on (Linux)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # Closed meanwhile.
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN.
                host, port = local.split(":")
                found.append(f"{_address(host)}:{int(port, 16)}")
    return found


def _address(hex_host: str) -> str:
    """Decodes /proc/net/tcp's address: 32-bit words in host byte order."""
    raw = bytes.fromhex(hex_host)
    step = -1 if sys.byteorder == "little" else 1
    words = [raw[i : i + 4][::step] for i in range(0, len(raw), 4)]
    return str(ipaddress.ip_address(b"".join(words)))


def is_loopback(address: str) -> bool:
    """Whether `host:port` can only be reached from this machine."""
    host = ipaddress.ip_address(address.rsplit(":", 1)[0])
    mapped = getattr(host, "ipv4_mapped", None)
    return host.is_loopback or (mapped is not None and mapped.is_loopback)


if __name__ == "__main__":
    _namespace_main(sys.argv[1])
