"""Processes for bulk work, forked (Linux) only while the command is still single-threaded
(before a progress bar starts its thread). cryptography holds the GIL while it generates keys
and signs, so threads do not help.

- :class:`BackgroundWriter` (issue-client, sign-csr): a process per directory writes the files (atomic,
  final mode, no fsync) in the order given while this one signs; on many filesystems creating
  and renaming two files costs as much as making the certificate. It stops at the first error
  and reports how many files it wrote, so the caller records exactly the certificates whose
  files are all on disk (issue.Issuer.finish).
- :class:`Workers` (export-pfx, bundle): a pool of processes for independent, CPU-heavy items
  (PBKDF2 of the PFX files). They inherit the loaded data by fork: only positions go to them and
  only small results come back, nothing secret is pickled. Workers ignore SIGINT and SIGTERM
  (the main process handles them); on either, the main process raises a flag the workers read
  between items (:func:`stop_requested`): each finishes the item in hand, starts no other and
  reports what it did (chunks not started return at once), and a worker still busy after
  STOP_GRACE seconds is killed. A worker also dies with the main process (Linux
  PR_SET_PDEATHSIG), so none outlives a main process killed outright. Items must therefore
  appear whole or not at all (a rename; bundle removes the temporary directories next run).

Without fork (other systems, or threads already running) everything runs in this process.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .files import atomic_write

_WORK: Callable[[Sequence[Any]], Any] | None = None
_STOP: mmap.mmap | None = None  # one byte shared with the forked workers: 1 once the command is interrupted
STOP_GRACE = 10.0  # seconds a worker has, after an interruption, to finish the item in hand (a kit takes ~15 ms)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Forking is safe only on Linux and while this process runs a single thread."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


def choose_jobs(requested: int | None, items: int, worth_from: int) -> int:
    """requested: --jobs (None or 0 = automatic). Automatic: one process per usable CPU (at most
    8) from ``worth_from`` items on, else one; never more processes than chunks would use."""
    if requested is not None and requested > 0:
        jobs = requested
    elif items >= worth_from:
        jobs = min(usable_cpus(), 8)
    else:
        jobs = 1
    return max(1, min(jobs, items))


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (they are delivered, and raise, when this ends) around what
    must not be cut in the middle: a message half-written to or half-read from a writer's pipe
    leaves both sides out of step (one waits for bytes that never come)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _ignore_sigint() -> None:
    """Workers and writers leave interruptions to the main process (SIGINT, and SIGTERM, which
    it handles the same way), which then collects and records what they finished."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stop_requested() -> bool:
    """In a worker: the command was interrupted (SIGINT/SIGTERM); finish the item in hand and
    start no other. Always False in the main process's own loop (Ctrl-C interrupts it there)."""
    return _STOP is not None and _STOP[0] == 1


def _worker_start(parent: int) -> None:
    """A pool worker's first act: leave SIGINT/SIGTERM to the main process, and die with it."""
    _ignore_sigint()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _run(chunk: Sequence[Any]) -> Any:
    assert _WORK is not None
    return _WORK(chunk)


def _noop() -> int:
    return os.getpid()


class Workers:
    """``with Workers(work, jobs) as workers: workers.run(chunks, on_result)``.

    Enter it before starting any thread (a progress bar): the workers are forked there. With
    jobs == 1, or when forking is not safe, the chunks run here, one after the other."""

    def __init__(self, work: Callable[[Sequence[Any]], Any], jobs: int):
        self.work = work
        self.jobs = jobs
        self.executor: Any = None

    def __enter__(self) -> "Workers":
        global _WORK, _STOP
        if self.jobs > 1 and can_fork():
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            _WORK = self.work
            _STOP = mmap.mmap(-1, 1)  # anonymous and shared: the workers see the main process's writes
            self.executor = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("fork"), initializer=_worker_start,
                                                initargs=(os.getpid(),))
            self.executor.submit(_noop).result()  # forks every worker now, while single-threaded
        return self

    @property
    def parallel(self) -> int:
        return self.jobs if self.executor is not None else 1

    def run(self, chunks: Sequence[Any], on_result: Callable[[Any], None]) -> None:
        if self.executor is None:
            for chunk in chunks:
                on_result(self.work(chunk))
            return
        pending: deque[Any] = deque()
        stop: BaseException | None = None
        deadline: float | None = None  # set by an interruption: the workers' time to stop
        position = 0
        while pending or (stop is None and position < len(chunks)):
            try:
                while stop is None and position < len(chunks) and len(pending) < 2 * self.jobs:
                    pending.append(self.executor.submit(_run, chunks[position]))
                    position += 1
                future = pending[0]
                try:
                    value = future.result(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
                except TimeoutError:  # a worker did not stop in time: killed; its chunk fails (BrokenProcessPool)
                    self._kill_workers()
                    deadline = None
                    continue
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # the chunk failed: stop submitting, collect the others
                    pending.popleft()
                    stop = stop or exc
                    continue
                pending.popleft()
                with signals_deferred():  # a result is counted whole
                    on_result(value)
            except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM (cli.Terminated): stop the workers, collect what they did
                stop = stop or exc
                if deadline is None:
                    deadline = self._interrupt()
        if stop is not None:
            raise stop

    def _interrupt(self) -> float:
        """Raise the stop flag; the deadline by which the workers must have returned. Chunks not
        started are not cancelled: a worker returns one at once (0 items), and a cancelled future
        would end in InvalidStateError in the executor's thread if a worker is killed (3.11)."""
        if _STOP is not None:
            _STOP[0] = 1
        return time.monotonic() + STOP_GRACE

    def _kill_workers(self) -> None:
        for process in list((getattr(self.executor, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError):
                process.kill()

    def __exit__(self, kind: Any, *exc: Any) -> None:
        global _WORK, _STOP
        if self.executor is not None:
            if kind is not None and issubclass(kind, KeyboardInterrupt) and _STOP is not None:
                _STOP[0] = 1  # interrupted outside run(): the workers stop at their next item
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        if _STOP is not None:
            _STOP.close()
        _WORK, _STOP = None, None


def spans(total: int, size: int) -> list[range]:
    """range(0, size), range(size, 2 * size), ...: chunks by position (cheap to send to a worker)."""
    return [range(i, min(i + size, total)) for i in range(0, total, size)]


class WriterFailed(Exception):
    """Raised in the signing process when the background writer reported an error."""


def write_unsynced(path: Path, data: bytes, mode: int) -> None:
    """The default file writer of :class:`BackgroundWriter`: files.atomic_write without fsync."""
    atomic_write(path, data, mode, durable=False)


class BackgroundWriter:
    """Writes files with ``write`` (by default files.atomic_write without fsync; store.Batch
    passes its own) in a forked process, in the order given, so that file creation (a large
    part of issuing on many filesystems) overlaps the signing here. Batches travel over a
    pipe; the writer stops at the first error, reports how many files it wrote, and ignores
    SIGINT (Ctrl-C stops the signing process, which then drains the writer and records what
    is on disk)."""

    BATCH_FILES = 64

    def __init__(self, write: Callable[[Path, bytes, int], None] = write_unsynced) -> None:
        self.write_file = write
        self.conn: Any = None
        self.process: Any = None
        self.buffer: list[tuple[str, bytes, int]] = []
        self.failed = False

    def start(self) -> bool:
        if not can_fork():
            return False
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        here, there = ctx.Pipe()
        self.process = ctx.Process(target=_writer_loop, args=(there, here, self.write_file), daemon=True)
        self.process.start()
        there.close()
        self.conn = here
        return True

    def write(self, path: str, data: bytes, mode: int) -> None:
        self.buffer.append((path, data, mode))
        if len(self.buffer) >= self.BATCH_FILES:
            self._flush()

    def _flush(self) -> None:
        if self.conn.poll():  # the writer stopped early: stop signing too
            self.failed = True
            raise WriterFailed("the background writer stopped (see the error below)")
        if self.buffer:
            batch, self.buffer = self.buffer, []
            with signals_deferred():  # a whole message or none
                self.conn.send(batch)

    def close(self) -> tuple[int, BaseException | None]:
        """(files written, in order; the writer's error or None). Not interruptible: the writer
        ignores Ctrl-C/SIGTERM and finishes the files it holds, and its count is what gets
        recorded; an interruption arriving meanwhile is raised afterwards."""
        with signals_deferred():
            return self._close()

    def _close(self) -> tuple[int, BaseException | None]:
        try:
            if self.buffer and not self.failed:
                with _suppress_broken():
                    self.conn.send(self.buffer)
            self.buffer = []
            with _suppress_broken():
                self.conn.send(None)
            while True:
                try:
                    message = self.conn.recv()
                except EOFError:
                    return 0, OSError("the background writer died before reporting")
                except KeyboardInterrupt:
                    continue  # the writer ignores Ctrl-C and is finishing; wait for its count
                if message[0] == "ok":
                    return message[1], None
                return message[1], message[2]
        finally:
            self.conn.close()
            self.process.join()


class _suppress_broken:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, (BrokenPipeError, EOFError))


def _writer_loop(conn: Any, parent_end: Any, write: Callable[[Path, bytes, int], None]) -> None:
    _ignore_sigint()
    parent_end.close()
    done = 0
    error: BaseException | None = None
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):  # the signing process is gone (killed, maybe mid-message)
            return
        if batch is None:
            break
        if error is not None:
            continue  # already reported; discard the rest
        for path, data, mode in batch:
            try:
                write(Path(path), data, mode)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                error = exc
                _report(conn, ("error", done, exc), ("error", done, OSError(f"{path}: {exc}")))
                break
            done += 1
    if error is None:
        _report(conn, ("ok", done))
    conn.close()


def _report(conn: Any, message: tuple[Any, ...], fallback: tuple[Any, ...] | None = None) -> None:
    """Send the writer's result; the fallback when the message does not pickle. Nothing when the
    signing process is gone (killed): no one is left to tell, and no traceback either."""
    try:
        try:
            conn.send(message)
        except (BrokenPipeError, ConnectionError):
            raise
        except Exception:  # noqa: BLE001 - unpicklable
            if fallback is None:
                raise
            conn.send(fallback)
    except OSError:
        pass
