"""tests/_multiprocess.py: peers die with a failed process, which is reported
with its traceback; time limits; the private network namespace; and reading
what a process listens on."""

import os
import socket
import sys
from pathlib import Path

import _multiprocess
import pytest

pytestmark = pytest.mark.backend_free


def _python(code: str) -> _multiprocess.Command:
    return [sys.executable, "-c", code], {}


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _sleeper(pid_file: Path) -> _multiprocess.Command:
    """A process that writes its id, then waits far past any test's time."""
    return _python(
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        "time.sleep(600)"
    )


def test_a_failure_kills_the_peers_and_shows_the_traceback(tmp_path):
    pid_file = tmp_path / "pid"
    failing = _python(
        f"import os, time\nwhile not os.path.exists({str(pid_file)!r}): "
        "time.sleep(0.01)\nraise ValueError('the peer broke')"
    )
    with pytest.raises(_multiprocess.LaunchError) as caught:
        _multiprocess.run([_sleeper(pid_file), failing], timeout=120)
    message = str(caught.value)
    assert "Traceback" in message and "ValueError: the peer broke" in message
    assert _dead(int(pid_file.read_text()))


def test_a_process_past_the_time_limit_is_killed(tmp_path):
    pid_file = tmp_path / "pid"
    with pytest.raises(_multiprocess.LaunchError, match="Killed after 2 s"):
        _multiprocess.run([_sleeper(pid_file)], timeout=2)
    assert _dead(int(pid_file.read_text()))


def test_stdout_of_each_process_comes_back():
    outputs = _multiprocess.run([_python("print(1)"), _python("print(2)")], 60)
    assert outputs == ["1\n", "2\n"]


def test_isolated_processes_have_only_loopback_up():
    reason = _multiprocess.isolation_error()
    if reason is not None:
        pytest.skip(reason)
    code = (
        "import socket, _multiprocess as m; print([n for _, n in "
        "socket.if_nameindex() if m._interface_flags(n) & m._IFF_UP])"
    )
    argv, _ = _python(code)
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    assert _multiprocess.run([(argv, env)], 60, isolated=True) == ["['lo']\n"]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_listening_addresses_tell_loopback_from_every_interface():
    with socket.socket() as local, socket.socket() as everywhere:
        local.bind(("127.0.0.1", 0))
        everywhere.bind(("0.0.0.0", 0))
        for s in (local, everywhere):
            s.listen()
        found = _multiprocess.listening_addresses()
        expected = [f"127.0.0.1:{local.getsockname()[1]}"]
        expected.append(f"0.0.0.0:{everywhere.getsockname()[1]}")
        assert sorted(a for a in found if a in expected) == sorted(expected)
        assert [_multiprocess.is_loopback(a) for a in expected] == [True, False]
    assert _multiprocess.is_loopback("::ffff:127.0.0.1:80")
    assert _multiprocess.is_loopback("::1:80")
    assert not _multiprocess.is_loopback(":::80")
