"""Run one untrusted Python program in a fresh, limited process (what holds where: docs/sandbox.md).

Each program gets its own interpreter (``python -S -P`` with a minimal environment built here, stdin on
/dev/null, a fresh temp cwd removed afterwards) and resource limits (CPU, address space, file size, open files,
processes). Where the OS allows it the process also runs in new user, network and pid namespaces (``unshare``):
no network, and killing the namespace's first process kills everything the program started. As root it runs as
an unprivileged uid/gid of its lane, so the process limit holds and root-owned files are out of reach.

A small harness (``_HARNESS``, the child's main) compiles and runs the source in a fresh ``__main__`` and only
after the source ran to its end writes a random nonce to a private socket: a program that exits early
(``sys.exit(0)``, ``os._exit(0)``) never passes. This defends against accidental early exits, not a program
that deliberately targets the harness.

One long module on purpose: the isolation steps (namespaces, lanes and uids, limits, the harness, watching and
killing) each cover a gap left by another, so the sandbox is reviewed as one file (with docs/sandbox.md).
"""

from __future__ import annotations

import fcntl
import math
import os
import pwd
import re
import secrets
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, fields, replace
from typing import Any

from onlyif.errors import ConfigError, OnlyIfError

KINDS = ("assertion", "timeout", "syntax", "runtime", "memory", "killed")
"""Failure kinds of ``ExecResult.kind``."""

LANE_UID_BASE = 61000
"""As root, lane ``slot`` runs as uid/gid ``LANE_UID_BASE + slot`` (the next free one if another process holds it)."""
_LANE_UID_SPAN = 4096
_STDERR_TAIL = 2048
_PATH = "/usr/local/bin:/usr/bin:/bin"
_NAMESPACES = ("--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc")


@dataclass(frozen=True)
class Limits:
    """Per-program limits; every value must be positive."""

    timeout_s: float = 10.0
    """Wall clock; the program (and all it started) is killed after it."""
    cpu_s: float = 10.0
    """CPU seconds (RLIMIT_CPU, rounded up)."""
    memory_mb: int = 1024
    """Address space (RLIMIT_AS); an allocation past it raises MemoryError (kind "memory")."""
    file_size_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE)."""
    processes: int = 16
    """Processes and threads of the program, the harness included (RLIMIT_NPROC)."""
    open_files: int = 64
    """RLIMIT_NOFILE."""
    output_bytes: int = 65536
    """The last this many bytes of stdout and of stderr are kept; earlier output is discarded."""
    output_limit_mb: int = 32
    """A program that writes more than this to stdout or to stderr is killed (kind "killed")."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not value > 0:
                raise ConfigError(f"sandbox limits: {f.name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one program: ``passed`` only when it ran to its end and exited 0."""

    passed: bool
    kind: str | None
    """None when passed; else one of ``KINDS``."""
    exit_code: int | None
    """Exit status of the sandbox's top process; negative = killed by that signal."""
    stdout_tail: str
    stderr_tail: str
    """The last ~2 KB of stderr (the traceback), with a ``[sandbox]`` line when the sandbox stepped in."""
    wall_s: float
    cpu_s: float = 0.0
    """CPU time of the program and all it started (the sandbox's own start-up included)."""
    attempts: int = 1
    """2 when the first run hit the wall-clock limit having used under half of it in CPU time (a starved or
    stalled machine, most likely) and the program was run once more; this is the second run's outcome."""


# The child's main: argv = prog, channel fd, cpu s, address space, file size, nproc ("+N": N more than this uid
# runs now), open files, extra sys.path entries. Kept small and stdlib-only: it runs in every program.
_HARNESS = r"""
import os, sys
def _limit(res, soft, hard):
    import resource
    cur = resource.getrlimit(res)[1]
    if cur != resource.RLIM_INFINITY:
        soft, hard = min(soft, cur), min(hard, cur)
    resource.setrlimit(res, (soft, hard))
def _tasks_of_this_uid():
    n = 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/status") as f:
                st = dict(line.split(":", 1) for line in f if ":" in line)
            if int(st["Uid"].split()[0]) == os.getuid():
                n += int(st["Threads"])
        except (OSError, KeyError, ValueError):
            pass
    return n
def _init(chan):
    # First process of a new pid namespace: stay as its init (reaps orphans; ignores signals from inside) and run
    # the program in a child with ordinary signal semantics; report the child's exit status, then exit (which
    # kills whatever else runs in the namespace).
    pid = os.fork()
    if pid == 0:
        os.setsid()
        return
    import _signal  # not signal: it imports enum, slow
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    while True:
        try:
            child, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        if child == pid:
            code = os.waitstatus_to_exitcode(status)
            os.write(chan, b"EXIT %d\n" % code)
            os._exit(code if code >= 0 else 128 - code)
def _main():
    import resource
    prog, chan, cpu, mem, fsize, nproc, nofile, paths = sys.argv[1:9]
    chan = int(chan)
    nonce = b""
    while len(nonce) < 32:
        part = os.read(chan, 32 - len(nonce))
        if not part:
            break
        nonce += part
    os.set_inheritable(chan, False)
    sys.path.extend(p for p in paths.split(os.pathsep) if p)
    with open(prog, "rb") as f:
        src = f.read()
    _limit(resource.RLIMIT_CORE, 0, 0)
    _limit(resource.RLIMIT_CPU, int(cpu), int(cpu) + 1)
    _limit(resource.RLIMIT_AS, int(mem), int(mem))
    _limit(resource.RLIMIT_FSIZE, int(fsize), int(fsize))
    _limit(resource.RLIMIT_NOFILE, int(nofile), int(nofile))
    if nproc.startswith("+"):
        nproc = int(nproc) + _tasks_of_this_uid()
    _limit(resource.RLIMIT_NPROC, int(nproc), int(nproc))
    if os.getpid() == 1:
        _init(chan)
    def fail(kind, exc, tb, note=""):
        os.write(chan, b"FAIL " + kind + b"\n")
        try:
            if note:
                sys.stderr.write(note + "\n")
            else:
                import linecache, traceback
                linecache.cache["prog.py"] = (len(src), None, src.decode("utf-8", "replace").splitlines(True), "prog.py")
                traceback.print_exception(type(exc), exc, tb)
            sys.stderr.flush()
            sys.stdout.flush()
        except BaseException:
            pass
        os._exit(1)
    try:
        code = compile(src, "prog.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        fail(b"syntax", e, None)
    import builtins
    builtins.exit = builtins.quit = sys.exit  # what site would add (-S skips it)
    main = type(sys)("__main__")
    main.__file__ = prog
    sys.modules["__main__"] = main
    sys.argv = [prog]
    try:
        exec(code, main.__dict__)
    except BaseException as e:
        if isinstance(e, MemoryError):
            main.__dict__.clear()
        kind = b"assertion" if isinstance(e, AssertionError) else b"memory" if isinstance(e, MemoryError) else b"runtime"
        note = f"SystemExit({e.code!r}) before the end of the program" if isinstance(e, SystemExit) else ""
        fail(kind, e, e.__traceback__.tb_next, note)
    os.write(chan, b"PASS " + nonce + b"\n")
_main()
"""


@dataclass(frozen=True)
class _Setup:
    """How programs are started on this machine (probed once per process)."""

    root: bool
    namespaces: bool
    namespaces_error: str
    interpreter: str
    paths: str
    unshare: str | None
    setpriv: str | None
    tmp_root: str


@dataclass
class _Lane:
    slot: int
    uid: int | None
    lock: threading.Lock
    lock_fd: int | None = None


_setup_lock = threading.Lock()
_setup_value: _Setup | None = None
_lanes_lock = threading.Lock()
_lanes: dict[int, _Lane] = {}
_report_lock = threading.Lock()
_report_value: dict[str, bool | str] | None = None


def _after_fork_in_child() -> None:
    """A forked evaluator (e.g. a process pool) claims lanes of its own: the parent's uids stay the parent's."""
    global _setup_lock, _lanes_lock, _report_lock
    _setup_lock, _lanes_lock, _report_lock = threading.Lock(), threading.Lock(), threading.Lock()
    for lane in _lanes.values():
        if lane.lock_fd is not None:
            os.close(lane.lock_fd)
    _lanes.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def run_program(source: str, limits: Limits = Limits(), *, slot: int = 0) -> ExecResult:
    """Run ``source`` as ``__main__`` of a fresh sandboxed process and classify the outcome.

    ``slot`` is the caller's parallel lane (0..N-1): lanes are independent (as root: one uid each); calls on the
    same slot run one after the other. Never raises for anything the program does.
    """
    if not isinstance(slot, int) or slot < 0:
        raise ConfigError(f"sandbox: slot must be a non-negative int, got {slot!r}")
    setup = _setup()
    lane = _lane(slot, setup)
    with lane.lock:
        result = _run_in_temp_dir(source, limits, setup, lane)
        if starved(result, limits):
            result = replace(_run_in_temp_dir(source, limits, setup, lane), attempts=2)
        return result


def starved(result: ExecResult, limits: Limits) -> bool:
    """Stopped by the wall-clock limit having used under half of it in CPU time: the program waited (a sleep, or
    a machine too busy or stalled to run it) rather than computed; :func:`run_program` runs such a program once
    more, so that a moment of load does not fail a correct program."""
    return result.kind == "timeout" and result.wall_s >= limits.timeout_s and result.cpu_s < limits.timeout_s / 2


def _run_in_temp_dir(source: str, limits: Limits, setup: _Setup, lane: _Lane) -> ExecResult:
    run_dir = tempfile.mkdtemp(prefix=f"run-{os.getpid()}-{lane.slot}-", dir=setup.tmp_root)
    try:
        return _run(source, limits, setup, lane, run_dir)
    finally:
        _remove_tree(run_dir)


def isolation_report() -> dict[str, bool | str]:
    """What holds on this machine, probed once (a real program tries the network and looks at its pid)."""
    global _report_value
    with _report_lock:
        if _report_value is None:
            _report_value = _probe_report()
        return dict(_report_value)


def _probe_report() -> dict[str, bool | str]:
    setup = _setup()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = (
            "import os, socket\n"
            f"s = socket.socket()\ns.settimeout(2)\ntry:\n    s.connect(('127.0.0.1', {port}))\n    net = 'open'\n"
            "except OSError:\n    net = 'blocked'\n"
            "print(net, os.getpid(), sum(p.isdigit() for p in os.listdir('/proc')))\n"
        )
        result = run_program(probe, Limits(timeout_s=30.0))
    words = result.stdout_tail.split() if result.passed else []
    uid_drop = setup.root
    limited = uid_drop or setup.namespaces  # RLIMIT_NPROC binds: not uid 0, or counted in a user namespace
    if setup.namespaces:
        cleanup = "the pid namespace dies with its first process (killed on timeout)"
    elif setup.root:
        cleanup = "kill(-1) as the lane uid after every program"
    else:
        cleanup = "kill of the program's process group (a program that calls setsid escapes it)"
    return {
        "fresh_process": True,
        "env_scrubbed": True,
        "rlimits": "cpu, address space, file size, open files, core=0" + (", processes" if limited else ""),
        "uid_drop": uid_drop,
        "lane_uids": f"{LANE_UID_BASE}+slot" if uid_drop else "",
        "process_limit": limited,
        "files_protected": uid_drop,
        "no_new_privs": setup.setpriv is not None,
        "user_namespace": setup.namespaces and not setup.root,
        "network_namespace": bool(words) and words[0] == "blocked",
        "pid_namespace": bool(words) and int(words[1]) <= 2,  # the namespace's init is 1, the program 2
        "private_proc": bool(words) and int(words[2]) <= 2,  # /proc shows only the program's own processes
        "namespaces_error": setup.namespaces_error,
        "cleanup": cleanup,
        "interpreter": setup.interpreter,
        "probe": "ok" if result.passed else f"failed ({result.kind}): {result.stderr_tail[-300:]}",
    }


def _run(source: str, limits: Limits, setup: _Setup, lane: _Lane, run_dir: str) -> ExecResult:
    prog, work = _prepare(source, lane, run_dir)
    nonce = secrets.token_hex(16)
    parent_sock, child_sock = socket.socketpair()
    with parent_sock, child_sock:
        parent_sock.sendall(nonce.encode())
        argv = [setup.interpreter, "-S", "-P", "-c", _HARNESS, *_harness_args(prog, child_sock, limits, setup)]
        cmd, kwargs = _command(setup, lane, argv)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=work,
                env=_env(work),
                pass_fds=(child_sock.fileno(),),
                start_new_session=True,
                **kwargs,
            )
        except OSError as e:
            raise OnlyIfError(f"sandbox: cannot start {cmd[0]}: {e}") from e
        child_sock.close()
        watch = _Watch(proc, limits, start)
        init_killed = False
        try:
            watch.loop()
        finally:  # also when the evaluator is interrupted: nothing is left running
            if not watch.exited:
                init_killed = _kill(proc, setup.namespaces)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - start
            if not setup.namespaces:
                _cleanup_plain(setup, lane, proc.pid)
            watch.drain()
        messages = _receive(parent_sock)
    try:  # the namespace's init reports the program's own exit status
        exit_code = int(messages["EXIT"])
    except (KeyError, ValueError):  # an init killed here reports nothing; its program died by the SIGKILL before
        exit_code = -signal.SIGKILL if init_killed else proc.returncode
    cpu = usage.ru_utime + usage.ru_stime
    passed, kind, note = _classify(messages, nonce, exit_code, watch, cpu, limits)
    stderr = watch.err.tail()[-_STDERR_TAIL:]
    if init_killed:
        stderr = _without_unshare_note(stderr)
    if note:
        stderr = stderr[-(_STDERR_TAIL - len(note) - 1) :]
        stderr += (b"\n" if stderr and not stderr.endswith(b"\n") else b"") + note.encode() + b"\n"
    return ExecResult(
        passed=passed,
        kind=kind,
        exit_code=exit_code,
        stdout_tail=watch.out.tail().decode("utf-8", "replace"),
        stderr_tail=stderr.decode("utf-8", "replace"),
        wall_s=wall,
        cpu_s=cpu,
    )


def _prepare(source: str, lane: _Lane, run_dir: str) -> tuple[str, str]:
    """Write the program (readable, not writable, by the lane) and make its empty cwd (the lane's own)."""
    prog = os.path.join(run_dir, "prog.py")
    work = os.path.join(run_dir, "work")
    with open(prog, "w", encoding="utf-8", errors="surrogatepass") as f:  # lone surrogates: kind "syntax"
        f.write(source)
    os.mkdir(work, 0o700)
    if lane.uid is not None:
        os.chmod(run_dir, 0o711)
        os.chown(prog, 0, lane.uid)
        os.chmod(prog, 0o640)
        os.chown(work, lane.uid, lane.uid)
    return prog, work


def _harness_args(prog: str, chan: socket.socket, limits: Limits, setup: _Setup) -> list[str]:
    if setup.namespaces:  # the namespace's init counts too (and unshare, in a user namespace)
        nproc = str(limits.processes + (1 if setup.root else 2))
    else:  # as a plain user RLIMIT_NPROC counts all of the user's processes: allow this many more
        nproc = str(limits.processes) if setup.root else f"+{limits.processes}"
    return [
        prog,
        str(chan.fileno()),
        str(math.ceil(limits.cpu_s)),
        str(limits.memory_mb << 20),
        str(limits.file_size_mb << 20),
        nproc,
        str(limits.open_files),
        setup.paths,
    ]


def _classify(
    messages: dict[str, str], nonce: str, exit_code: int, watch: _Watch, cpu: float, limits: Limits
) -> tuple[bool, str | None, str]:
    """(passed, kind, note for stderr) from the harness's messages, the exit status and why we killed it."""
    finished = messages.get("PASS") == nonce
    if finished and exit_code == 0 and watch.exited:
        return True, None, ""
    reported = messages.get("FAIL", "")
    if reported in KINDS:
        return False, reported, ""
    if watch.timed_out:
        return False, "timeout", f"[sandbox] killed after the wall-clock limit of {limits.timeout_s:g} s"
    if watch.overflow:
        return False, "killed", f"[sandbox] killed: more than {limits.output_limit_mb} MB of output"
    if exit_code < 0:
        sig = -exit_code
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= math.ceil(limits.cpu_s)):
            return False, "timeout", f"[sandbox] killed after the CPU limit of {math.ceil(limits.cpu_s)} s"
        return False, "killed", f"[sandbox] killed by signal {signal.Signals(sig).name}"
    if finished:
        return False, "runtime", f"[sandbox] the program ran to its end but exited {exit_code}"
    return False, "runtime", f"[sandbox] exited {exit_code} before the end of the program"


class _Tail:
    """The last ``keep`` bytes of a stream, and how many bytes came in all."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.total = 0
        self.buf = bytearray()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buf += chunk
        if len(self.buf) > 2 * self.keep:
            del self.buf[: -self.keep]

    def tail(self) -> bytes:
        return bytes(self.buf[-self.keep :])


class _Watch:
    """Reads stdout/stderr of a running program until it exits, times out or writes too much."""

    def __init__(self, proc: subprocess.Popen, limits: Limits, start: float) -> None:
        self.proc = proc
        self.deadline = start + limits.timeout_s
        self.max_output = limits.output_limit_mb << 20
        self.out = _Tail(limits.output_bytes)
        self.err = _Tail(limits.output_bytes)
        self.exited = self.timed_out = self.overflow = False
        self.selector = selectors.DefaultSelector()
        self.selector.register(proc.stdout.fileno(), selectors.EVENT_READ, self.out)
        self.selector.register(proc.stderr.fileno(), selectors.EVENT_READ, self.err)
        try:
            self.pidfd: int | None = os.pidfd_open(proc.pid)
            self.selector.register(self.pidfd, selectors.EVENT_READ, None)
        except (AttributeError, OSError):
            self.pidfd = None

    def loop(self) -> None:
        try:
            while not (self.exited or self.overflow):
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    self.timed_out = True
                    return
                wait = remaining if self.pidfd is not None else min(remaining, 0.02)
                for key, _ in self.selector.select(wait):
                    if key.data is None:
                        self.exited = True
                    else:
                        self._read(key)
                if self.pidfd is None and not self.exited:
                    self.exited = _has_exited(self.proc.pid)
        finally:
            if self.pidfd is not None:
                self.selector.unregister(self.pidfd)
                os.close(self.pidfd)

    def drain(self, timeout_s: float = 2.0) -> None:
        """Read what is left (every writer is gone by now, or killed); then close the pipes."""
        end = time.monotonic() + timeout_s
        while self.selector.get_map() and time.monotonic() < end:
            for key, _ in self.selector.select(max(0.0, end - time.monotonic())):
                self._read(key)
        self.selector.close()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def _read(self, key: selectors.SelectorKey) -> None:
        chunk = os.read(key.fd, 1 << 16)
        if not chunk:
            self.selector.unregister(key.fd)
            return
        key.data.add(chunk)
        if key.data.total > self.max_output:
            self.overflow = True


def _has_exited(pid: int) -> bool:
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None


def _kill(proc: subprocess.Popen, namespaces: bool) -> bool:
    """Kill a program that is still running. In a pid namespace: the children of its init (the init then reports
    and exits, which kills everything left in the namespace), the init itself if it lingers, and last the top
    process. Called before the top process is reaped, so no pid here can have been reused. Returns whether the
    init had to be killed (it lingered over a second: seen under load)."""
    if namespaces:
        for init in _children(proc.pid):
            for child in _children(init):
                _signal(child)
        if _wait_exit(proc.pid, 1.0):
            return False
        for init in _children(proc.pid):
            _signal(init)
        if _wait_exit(proc.pid, 1.0):
            return True
    else:
        for child in _children(proc.pid):
            _signal(child)
    _signal(proc.pid)
    return namespaces


_UNSHARE_NOTE = re.compile(rb"^unshare: sigprocmask unblock failed: [^\n]*(\n|$)", re.MULTILINE)


def _without_unshare_note(stderr: bytes) -> bytes:
    """util-linux's ``unshare`` (2.38) exits 1 with this line of its own when its child, the namespace's init, dies
    by SIGKILL: not the program's output."""
    return _UNSHARE_NOTE.sub(b"", stderr)


def _wait_exit(pid: int, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while not _has_exited(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _signal(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _cleanup_plain(setup: _Setup, lane: _Lane, pgid: int) -> None:
    """Without a pid namespace: kill whatever the program left running (as root: all processes of the lane uid)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if lane.uid is not None:
        _kill_lane_uid(setup, lane)


def _kill_lane_uid(setup: _Setup, lane: _Lane) -> None:
    """kill(-1, SIGKILL) from a process of the lane uid: every other process of that uid dies."""
    code = "import os\nfor _ in range(3):\n    try:\n        os.kill(-1, 9)\n    except OSError:\n        break\n"
    cmd, kwargs = _command(setup, lane, [setup.interpreter, "-S", "-c", code], namespaces=False)
    subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, cwd="/", env=_env("/"), check=False, **kwargs)


def _receive(sock: socket.socket) -> dict[str, str]:
    """The harness's messages ("PASS nonce", "FAIL kind", "EXIT code"), the first of each."""
    sock.setblocking(False)
    data = b""
    while len(data) < 4096:
        try:
            chunk = sock.recv(4096)
        except (BlockingIOError, ConnectionError):
            break
        if not chunk:
            break
        data += chunk
    messages: dict[str, str] = {}
    for line in data.decode("ascii", "replace").splitlines():
        head, _, value = line.partition(" ")
        messages.setdefault(head, value)
    return messages


def _command(
    setup: _Setup, lane: _Lane, argv: list[str], *, namespaces: bool | None = None
) -> tuple[list[str], dict[str, Any]]:
    """The full command line (namespaces, privilege drop, then ``argv``) and extra Popen arguments.

    Root: ``unshare`` makes the network and pid namespaces and switches to the lane uid in its child. A plain
    user: a user namespace first (``--map-root-user``). ``setpriv`` (when present) sets no_new_privs and kills
    the process when its parent dies, so nothing outlives a killed evaluator.
    """
    guard = [setup.setpriv, "--pdeathsig=KILL"] if setup.setpriv else []
    uid = lane.uid
    if setup.namespaces if namespaces is None else namespaces:
        assert setup.unshare is not None
        if uid is None:
            return [*guard, "--no-new-privs", setup.unshare, "--user", "--map-root-user", *_NAMESPACES, *argv], {}
        drop = [f"--setgid={uid}", f"--setuid={uid}"]  # unshare's --setuid clears the parent-death signal:
        inner = [*guard, "--no-new-privs"] if guard else []  # set it again inside
        return [*guard, setup.unshare, *_NAMESPACES, *drop, *inner, *argv], {}
    if uid is None:
        return [*guard, "--no-new-privs", *argv] if guard else argv, {}
    if guard:
        return [*guard, "--no-new-privs", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv], {}
    return argv, {"user": uid, "group": uid, "extra_groups": []}


def _env(cwd: str) -> dict[str, str]:
    """A minimal environment: nothing is inherited from the evaluator (no tokens, no HOME)."""
    return {
        "PATH": _PATH,
        "HOME": cwd,
        "TMPDIR": cwd,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _remove_tree(path: str) -> None:
    try:
        shutil.rmtree(path)
    except (OSError, RecursionError):  # directories left without permissions, or nested deeper than Python recurses
        subprocess.run(["chmod", "-R", "u+rwx", path], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", path], capture_output=True, check=False)


def _lane(slot: int, setup: _Setup) -> _Lane:
    with _lanes_lock:
        lane = _lanes.get(slot)
        if lane is None:
            uid, fd = _claim_uid(slot, setup.tmp_root) if setup.root else (None, None)
            lane = _lanes[slot] = _Lane(slot, uid, threading.Lock(), fd)
            if uid is not None:  # leftovers of an evaluator that died without cleaning up
                _kill_lane_uid(setup, lane)
        return lane


def _claim_uid(slot: int, tmp_root: str) -> tuple[int, int]:
    """A lane uid no other process on this machine uses: an flock held for this process's life, and no passwd
    entry (its processes are killed wholesale)."""
    for k in range(_LANE_UID_SPAN):
        uid = LANE_UID_BASE + (slot + k) % _LANE_UID_SPAN
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            fd = os.open(os.path.join(tmp_root, f"lane-{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return uid, fd
    raise OnlyIfError(f"sandbox: no free lane uid in {LANE_UID_BASE}..{LANE_UID_BASE + _LANE_UID_SPAN - 1}")


def _setup() -> _Setup:
    global _setup_value
    with _setup_lock:
        if _setup_value is None:
            _setup_value = _probe_setup()
        return _setup_value


def _probe_setup() -> _Setup:
    root = os.geteuid() == 0
    tmp_root = _private_dir(os.path.join(tempfile.gettempdir(), f"onlyif-sandbox-{os.geteuid()}"), 0o711)
    _remove_stale_runs(tmp_root)
    interpreter, paths = _interpreter(root)
    unshare = shutil.which("unshare", path=_PATH)
    setup = _Setup(
        root=root,
        namespaces=False,
        namespaces_error="",
        interpreter=interpreter,
        paths=paths,
        unshare=unshare,
        setpriv=shutil.which("setpriv", path=_PATH),
        tmp_root=tmp_root,
    )
    if unshare is None:
        return replace(setup, namespaces_error="no unshare on PATH")
    lane = _lane(0, setup)
    check = f"import os, sys\nsys.exit(0 if os.getpid() == 1 and os.getuid() == {lane.uid or 0} else 3)"
    cmd, kwargs = _command(setup, lane, [interpreter, "-S", "-c", check], namespaces=True)
    try:
        done = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, cwd=tmp_root, env=_env(tmp_root), timeout=60, **kwargs
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return replace(setup, namespaces_error=str(e))
    if done.returncode != 0:
        error = done.stderr.decode("utf-8", "replace").strip()[-300:] or f"exit status {done.returncode}"
        return replace(setup, namespaces_error=error)
    return replace(setup, namespaces=True)


def _remove_stale_runs(tmp_root: str) -> None:
    """Temp dirs of evaluators that died before removing them (``run-PID-SLOT-*`` whose PID is gone)."""
    for name in os.listdir(tmp_root):
        parts = name.split("-")
        if len(parts) == 4 and parts[0] == "run" and parts[1].isdigit():
            try:
                os.kill(int(parts[1]), 0)
            except ProcessLookupError:
                _remove_tree(os.path.join(tmp_root, name))
            except PermissionError:
                pass


def _private_dir(path: str, mode: int) -> str:
    """A directory owned by us that nobody else can write (created if missing)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise OnlyIfError(f"sandbox: {path} must be a directory owned by uid {os.geteuid()}, writable only by it")
    os.chmod(path, mode)
    return path


def _interpreter(root: bool) -> tuple[str, str]:
    """The Python the programs run with, and the site-packages they see (joined by os.pathsep).

    Our own interpreter and packages when the program's uid can use them; as root (programs run as a lane uid)
    a system Python of the same version when ours lives in a place only root can read (e.g. pyenv under /root).
    """
    paths = [p for p in dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")) if os.path.isdir(p)]
    if not root:
        return sys.executable, os.pathsep.join(paths)
    paths = [p for p in paths if _world_readable(p)]
    stdlib = sysconfig.get_paths()["stdlib"]
    if _world_readable(sys.executable) and _world_readable(stdlib):
        return sys.executable, os.pathsep.join(paths)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}", shutil.which(version, path=_PATH)):
        if candidate and os.path.exists(candidate) and _world_readable(candidate):
            return candidate, os.pathsep.join(paths)
    return sys.executable, os.pathsep.join(paths)


def _world_readable(path: str) -> bool:
    """Whether any user can reach and read ``path`` (every directory above it searchable by others)."""
    path = os.path.realpath(path)
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        parent = os.path.dirname(path)
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            if parent == os.path.dirname(parent):
                return True
            parent = os.path.dirname(parent)
    except OSError:
        return False
