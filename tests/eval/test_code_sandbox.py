"""The code sandbox against real escapes: each program runs for real in a fresh, limited process."""

from __future__ import annotations

import dataclasses
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from onlyif.errors import ConfigError
from onlyif.eval.code import sandbox
from onlyif.eval.code.sandbox import KINDS, ExecResult, Limits, isolation_report, run_program

REPO = Path(__file__).resolve().parents[2]
DEFAULT = Limits()
QUICK = Limits(timeout_s=3.0, cpu_s=3.0)

# Prints the program's uid as the host sees it (inside a user namespace os.getuid() is the mapped 0).
HOST_UID = textwrap.dedent(
    """
    import os
    inside, outside, _ = open("/proc/self/uid_map").read().split()[:3]
    print("HOST_UID", int(outside) + os.getuid() - int(inside))
    """
)


@pytest.fixture(scope="module")
def report() -> dict[str, bool | str]:
    return isolation_report()


def run(source: str, limits: Limits = DEFAULT, slot: int = 0) -> ExecResult:
    result = run_program(textwrap.dedent(source), limits, slot=slot)
    assert result.passed == (result.kind is None)
    assert result.kind is None or result.kind in KINDS
    return result


def host_uid(result: ExecResult) -> int:
    return int(next(line.split()[1] for line in result.stdout_tail.splitlines() if line.startswith("HOST_UID")))


def processes(match) -> list[int]:
    """Pids of live (not zombie) processes whose (cmdline, uid) satisfies ``match``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        except (OSError, ValueError):
            continue
        if status["State"].split()[0] != "Z" and match(cmdline, int(status["Uid"].split()[0])):
            found.append(int(pid))
    return found


def test_limits_are_validated():
    with pytest.raises(ConfigError, match="timeout_s"):
        Limits(timeout_s=0)
    with pytest.raises(ConfigError, match="slot"):
        run_program("pass", slot=-1)


def test_isolation_report_says_what_holds(report):
    for key in ("fresh_process", "uid_drop", "user_namespace", "network_namespace", "pid_namespace", "cleanup"):
        assert key in report
    assert report["probe"] == "ok"
    assert report["uid_drop"] == (os.geteuid() == 0)
    assert report["pid_namespace"] == report["network_namespace"]  # one unshare makes both, or neither


def test_passing_program():
    result = run(
        """
        import sys
        def add(a, b):
            return a + b
        assert add(2, 3) == 5
        assert sys.stdin.read() == ""  # stdin is /dev/null
        print("done", __name__)
        """
    )
    assert result.passed and result.kind is None and result.exit_code == 0
    assert result.stdout_tail == "done __main__\n"


@pytest.mark.parametrize(
    ("source", "kind", "needle"),
    [
        ("def f(x):\n    return x\nassert f(1) == 2, 'wrong answer'\n", "assertion", "AssertionError: wrong answer"),
        ("def f(:\n    pass\n", "syntax", "SyntaxError"),
        ("x = 1 / 0\n", "runtime", "ZeroDivisionError"),
        ("import nonexistent_module_xyz\n", "runtime", "ModuleNotFoundError"),
        ("raise MemoryError\n", "memory", "MemoryError"),
    ],
)
def test_failure_kinds(source, kind, needle):
    result = run(source)
    assert not result.passed and result.kind == kind
    assert needle in result.stderr_tail
    assert 'File "prog.py", line' in result.stderr_tail


@pytest.mark.parametrize(
    "exit_call",
    ["import sys; sys.exit(0)", "import os; os._exit(0)", "raise SystemExit", "raise SystemExit(0)", "exit()"],
)
def test_exit_zero_before_the_asserts_does_not_pass(exit_call):
    result = run(f"{exit_call}\nassert False, 'never reached'\n")
    assert not result.passed and result.kind == "runtime"
    assert "before the end of the program" in result.stderr_tail
    assert "never reached" not in result.stderr_tail


def test_infinite_loop_times_out():
    result = run("while True:\n    pass\n", Limits(timeout_s=2.0, cpu_s=60.0))
    assert result.kind == "timeout" and result.exit_code == -signal.SIGKILL
    assert "wall-clock limit" in result.stderr_tail


def test_cpu_limit_is_a_timeout():
    result = run("while True:\n    pass\n", Limits(timeout_s=120.0, cpu_s=1.0))
    assert result.kind == "timeout" and result.attempts == 1
    assert "CPU limit" in result.stderr_tail
    assert result.cpu_s > 0.5  # the program's own CPU time (≈ 1 s, by ticks) is counted, not only the sandbox's


def test_signal_games_still_stopped_by_the_wall_timeout():
    result = run(
        """
        import signal, time
        for sig in (signal.SIGTERM, signal.SIGALRM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_IGN)
        signal.alarm(1)
        while True:
            time.sleep(0.05)
        """,
        Limits(timeout_s=2.0, cpu_s=60.0),
    )
    assert result.kind == "timeout" and result.exit_code == -signal.SIGKILL
    assert result.attempts == 2 and result.cpu_s < 1.0  # it waited rather than computed: run once more


def test_a_namespace_init_killed_for_lingering_leaves_no_note_of_unshare():
    """When the namespace's init outlives its killed program by a second (a CI run under load), ``_kill`` kills it
    too; util-linux's unshare then exits 1 with a line of its own on stderr. Here an init with no child (``sleep``)
    lingers for sure: the kill says so (the run then reports the program's SIGKILL) and that line is dropped."""
    setup = sandbox._setup()
    if not setup.namespaces:
        pytest.skip(f"no namespaces here: {setup.namespaces_error}")
    user = [] if setup.root else ["--user", "--map-root-user"]
    proc = subprocess.Popen(
        [setup.unshare, *user, *sandbox._NAMESPACES, "sleep", "60"], stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        for _ in range(1000):  # the init forked (at most 10 s)
            if sandbox._children(proc.pid):
                break
            time.sleep(0.01)
        assert sandbox._kill(proc, namespaces=True)
        stderr = proc.communicate(timeout=30)[1]
    finally:
        proc.kill()
    assert proc.returncode == 1 and b"unshare: " in stderr, (proc.returncode, stderr)  # what the fix is for
    assert sandbox._without_unshare_note(stderr) == b""
    assert sandbox._without_unshare_note(b"out\n" + stderr + b"more\n") == b"out\nmore\n"


def test_only_a_wall_clock_timeout_with_little_cpu_is_run_again():
    limits = Limits(timeout_s=10.0, cpu_s=10.0)
    timed_out = ExecResult(False, "timeout", -signal.SIGKILL, "", "", wall_s=10.02, cpu_s=0.3)
    assert sandbox.starved(timed_out, limits)
    assert not sandbox.starved(dataclasses.replace(timed_out, cpu_s=6.0), limits)  # it computed: a real timeout
    assert not sandbox.starved(dataclasses.replace(timed_out, wall_s=4.0), limits)  # the CPU limit, not the wall
    assert not sandbox.starved(dataclasses.replace(timed_out, kind="runtime"), limits)


def test_memory_bomb_is_a_memory_error():
    result = run(
        """
        hog = []
        while True:
            hog.append(bytearray(10**7))
        """,
        Limits(timeout_s=60.0, memory_mb=256),
    )
    assert result.kind == "memory"
    assert "MemoryError" in result.stderr_tail


def test_file_size_and_open_files_limits():
    big = run("open('big.bin', 'wb').write(b'x' * (3 << 20))\n", Limits(file_size_mb=1))
    assert big.kind == "runtime" and "File too large" in big.stderr_tail
    many = run("files = [open('f%d' % i, 'w') for i in range(100)]\n", Limits(open_files=32))
    assert many.kind == "runtime" and "Too many open files" in many.stderr_tail


def test_one_gigabyte_of_output_is_capped():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    limits = Limits(timeout_s=120.0, output_bytes=4096)
    result = run(
        """
        import sys
        chunk = "x" * (1 << 20)
        for _ in range(1024):
            sys.stdout.write(chunk)
        """,
        limits,
    )
    assert result.kind == "killed" and "MB of output" in result.stderr_tail
    assert result.stdout_tail == "x" * 4096
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, f"the evaluator grew by {grown_mb:.0f} MB reading the output"


def test_process_limit_holds(report):
    if not report["process_limit"]:
        pytest.skip(f"no process limit here: {report['cleanup']}")
    result = run(
        """
        import os, time
        started = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(1000)
                    os._exit(0)
                started += 1
        except OSError:
            print("started", started)
        """,
        Limits(timeout_s=60.0, processes=8),
    )
    assert result.passed, result.stderr_tail
    assert 0 < int(result.stdout_tail.split()[1]) < 8


def test_fork_bomb_is_contained_and_killed_afterwards(report):
    if not report["process_limit"]:
        pytest.skip(f"no process limit here: {report['cleanup']}")
    marker = f"sandbox-fork-bomb-{uuid.uuid4().hex}"
    result = run(
        HOST_UID
        + textwrap.dedent(
            f"""
            import os, subprocess, sys
            sys.stdout.flush()
            while True:
                try:
                    subprocess.Popen([sys.executable, "-S", "-c", "while True: pass", "{marker}"])
                    os.fork()
                except OSError:
                    pass
            """
        ),
        Limits(timeout_s=3.0, cpu_s=60.0),
    )
    assert result.kind == "timeout"
    assert processes(lambda cmdline, uid: marker in cmdline) == []
    if report["uid_drop"]:
        uid = host_uid(result)
        assert uid != 0
        assert processes(lambda cmdline, u: u == uid) == []
    assert run("print('still responsive')").passed


def test_temp_dir_is_fresh_and_removed():
    result = run(
        """
        import os
        assert os.listdir(".") == []
        open("left-behind.txt", "w").write("x")
        os.mkdir("sub")
        print(os.getcwd())
        """
    )
    assert result.passed, result.stderr_tail
    cwd = result.stdout_tail.strip()
    assert cwd.startswith(tempfile.gettempdir()) and not os.path.exists(cwd)
    assert not os.path.exists(os.path.dirname(cwd))


def test_cannot_write_or_delete_outside_the_temp_dir(report, tmp_path):
    if not report["files_protected"]:
        pytest.skip("programs run as the evaluator's own user here: files it can write are not protected")
    outside = Path(tempfile.mkdtemp(prefix="sandbox-outside-"))
    try:
        outside.chmod(0o755)  # the program can reach and read it, not change it
        victim = outside / "victim.txt"
        victim.write_text("precious")
        victim.chmod(0o644)
        own = tmp_path / "test-owned.txt"  # under pytest's root-only temp root
        own.write_text("mine")
        project_file = REPO / f"sandbox-escape-{uuid.uuid4().hex}.txt"
        home_file = Path.home() / f"sandbox-escape-{uuid.uuid4().hex}.txt"
        result = run(
            f"""
            import os, shutil
            victim = {str(victim)!r}
            assert open(victim).read() == "precious"
            attempts = {{
                "delete": lambda: os.remove(victim),
                "overwrite": lambda: open(victim, "w").write("gone"),
                "append": lambda: open(victim, "a").write("more"),
                "rename": lambda: os.rename(victim, victim + ".moved"),
                "chmod": lambda: os.chmod(victim, 0o666),
                "new file beside it": lambda: open(victim + ".new", "w").write("x"),
                "rmtree": lambda: shutil.rmtree(os.path.dirname(victim)),
                "tmp_path delete": lambda: os.remove({str(own)!r}),
                "tmp_path overwrite": lambda: open({str(own)!r}, "w").write("gone"),
                "project": lambda: open({str(project_file)!r}, "w").write("x"),
                "home": lambda: open({str(home_file)!r}, "w").write("x"),
            }}
            for name, attempt in attempts.items():
                try:
                    attempt()
                except PermissionError:
                    continue
                raise AssertionError(name + " was allowed")
            """
        )
        assert result.passed, result.stderr_tail
        assert victim.read_text() == "precious" and sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
        assert not project_file.exists() and not home_file.exists() and own.read_text() == "mine"
    finally:
        subprocess.run(["rm", "-rf", str(outside)], check=True)


def test_environment_secrets_are_not_visible(report, monkeypatch):
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    scan_proc = bool(report["uid_drop"])  # as the evaluator's own user, its /proc/PID/environ is readable
    result = run(
        f"""
        import os
        secret = {secret!r}
        assert "HF_TOKEN" not in os.environ and "AWS_SECRET_ACCESS_KEY" not in os.environ
        assert secret not in repr(os.environ)
        assert secret.encode() not in open("/proc/self/environ", "rb").read()
        assert os.environ["HOME"] == os.getcwd()
        if {scan_proc}:
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    data = open(f"/proc/{{pid}}/environ", "rb").read()
                except OSError:
                    continue
                assert secret.encode() not in data, pid
        """
    )
    assert result.passed, result.stderr_tail


def test_no_network_to_localhost(report):
    if not report["network_namespace"]:
        pytest.skip(f"no network isolation here: {report['namespaces_error']}")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = run(
            f"""
            import socket
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", {port}))
            except OSError as e:
                print("blocked", type(e).__name__)
            else:
                raise AssertionError("connected to the host's 127.0.0.1")
            """
        )
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()
    assert result.passed, result.stderr_tail
    assert result.stdout_tail.startswith("blocked")


@pytest.mark.parametrize(
    "attack",
    [
        "os.killpg(os.getpgid(0), signal.SIGKILL)",
        "os.kill(os.getppid(), signal.SIGKILL)",
        "os.kill(-1, signal.SIGKILL)",
        "os.kill(0, signal.SIGKILL)",
    ],
)
def test_killing_the_parent_does_not_reach_the_evaluator(attack):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # in our process group
    try:
        result = run(f"import os, signal, time\n{attack}\ntime.sleep(0.2)\n")
        assert bystander.poll() is None, "a process of the evaluator's group was killed"
        assert result.kind in (None, "killed", "runtime"), result  # kill(-1) finding nothing: ProcessLookupError
        assert run("print('alive')").passed
    finally:
        bystander.kill()
        bystander.wait()


PROGRAMS = [
    "print('ok')\n",
    "assert sorted({3, 1, 2}) == [1, 2, 3]\nprint({'a', 'b', 'c'})\n",
    "assert 1 == 2\n",
    "def f(:\n",
    "import sys\nsys.exit(0)\n",
    "print('partial')\n[][1]\n",
    "import os\nos._exit(3)\n",
]


def test_two_lanes_at_once_match_serial_runs():
    def key(result: ExecResult) -> tuple:
        return result.passed, result.kind, result.exit_code, result.stdout_tail, result.stderr_tail

    serial = [key(run(p)) for p in PROGRAMS]
    with ThreadPoolExecutor(2) as pool:
        parallel = list(pool.map(lambda ip: key(run(ip[1], slot=ip[0] % 2)), enumerate(PROGRAMS * 2)))
    assert parallel == serial * 2
    assert [k[1] for k in serial] == [None, None, "assertion", "syntax", "runtime", "runtime", "runtime"]


def test_lanes_run_as_distinct_unprivileged_uids(report):
    if not report["uid_drop"]:
        pytest.skip("not root: programs run as the evaluator's user")
    uids = {host_uid(run(HOST_UID, slot=slot)) for slot in (0, 1)}
    assert len(uids) == 2 and 0 not in uids


@pytest.fixture
def without_namespaces(report):
    """The fallback of machines where ``unshare`` is missing or refused (e.g. Docker without CAP_SYS_ADMIN)."""
    saved = sandbox._setup()
    sandbox._setup_value = dataclasses.replace(saved, namespaces=False, namespaces_error="disabled by the test")
    yield
    sandbox._setup_value = saved


def test_fallback_without_namespaces(without_namespaces):
    assert run("assert 1 + 1 == 2\n").passed
    assert run("import os\nos._exit(0)\n").kind == "runtime"
    assert run("while True:\n    pass\n", QUICK).kind == "timeout"
    if os.geteuid() != 0:
        return  # as a plain user nothing below holds without namespaces (see docs/sandbox.md)
    marker = f"sandbox-fallback-{uuid.uuid4().hex}"
    daemon = f"""
        import os, subprocess, sys
        if os.fork() == 0:
            os.setsid()  # escapes a process-group kill, not the kill of every process of the lane uid
            subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(1000)", "{marker}"])
            os._exit(0)
        os.wait()
        """
    assert run(HOST_UID + textwrap.dedent(daemon)).passed
    assert processes(lambda cmdline, uid: marker in cmdline) == []
    assert run("import os\nos.kill(-1, 9)\n").kind in (None, "killed", "runtime")  # only the lane's own
    assert run("open('/etc/sandbox-escape', 'w')\n").kind == "runtime"


def test_host_processes_are_hidden(report):
    if not report["private_proc"]:
        pytest.skip("no private /proc here: the program sees the host's process list")
    result = run(f"import os\nassert not os.path.exists('/proc/{os.getpid()}')\nprint(len(os.listdir('/proc')) > 0)\n")
    assert result.passed, result.stderr_tail


def test_temp_dir_removed_even_when_made_hard_to_remove():
    result = run(
        """
        import os
        top = os.getcwd()
        os.makedirs("locked/inner")
        open("locked/inner/f", "w").write("x")
        os.chmod("locked/inner", 0)
        os.chmod("locked", 0)
        for _ in range(1500):  # deeper than Python's recursion limit
            os.mkdir("d")
            os.chdir("d")
        print(top)
        """,
        Limits(timeout_s=60.0),
    )
    assert result.passed, result.stderr_tail
    assert not os.path.exists(os.path.dirname(result.stdout_tail.strip()))
