"""``genrec serve``'s decoding in a process of its own: a :class:`~genrec.batcher.MicroBatcher` over
the run in a child process, fed through a socket pair, so that the HTTP event loop and the decoding
thread do not take turns with one interpreter lock.

Why: in one process, under 64 clients the server answered 582 requests/s while decoding alone ran
at 1,285 users/s, and the same app over a stand-in run at about 3,000 requests/s (docs/results.md,
"Serving"): every microsecond the event loop spent parsing a request, the decoding thread could not
launch its next operator, and the reverse. Two processes share only the cores.

The child is started with ``spawn`` (a fresh interpreter that loads the run itself): a forked child
would inherit the parent's OpenMP thread pool state, which GNU OpenMP does not support. Messages are
pickled frames (an 8-byte length, then the pickle) on a socket pair that only the two processes
hold. Requests carry an id; the answers come back in whatever order passes finish, and a thread of
the parent resolves the matching futures, which the event loop awaits.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import pickle
import signal
import socket
import struct
import threading
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from genrec.batcher import Change, MicroBatcher, NotInCatalogue
from genrec.errors import GenrecError

log = logging.getLogger(__name__)

HEADER = struct.Struct("!Q")  # a frame's length in bytes
ERRORS = {"NotInCatalogue": NotInCatalogue, "GenrecError": GenrecError}  # rebuilt as themselves: 404 / 400


class DecoderEnded(RuntimeError):
    """The decoding process is gone (killed, out of memory): no request can be answered (HTTP 503)."""


def send(sock: socket.socket, lock: threading.Lock, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    with lock:
        sock.sendall(HEADER.pack(len(data)))
        sock.sendall(data)


def receive(sock: socket.socket) -> Any | None:
    """The next message, or ``None`` once the other side has closed."""
    header = read_exactly(sock, HEADER.size)
    if header is None:
        return None
    body = read_exactly(sock, HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def read_exactly(sock: socket.socket, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        received = sock.recv_into(view[got:])
        if received == 0:
            return None
        got += received
    return buffer


def described(exc: BaseException) -> tuple[str, str]:
    """An exception as plain data: a pickled exception of any class might not unpickle in the parent."""
    for name, kind in ERRORS.items():
        if isinstance(exc, kind):
            return name, str(exc)
    return type(exc).__name__, str(exc)


def rebuilt(name: str, message: str) -> Exception:
    kind = ERRORS.get(name)
    return kind(message) if kind is not None else RuntimeError(f"{name} in the decoding process: {message}")


def decode_in_child(
    sock: socket.socket,
    directory: str,
    overrides: dict,
    max_batch: int,
    max_wait_ms: float,
    journal: str | None,
    threads: int,
) -> None:
    """The child's life: load the run on one torch thread, say so (or why not), then hand every
    message to the batcher and send each answer back as its future completes. Ends when the parent
    closes its end."""
    import torch

    from genrec.run import load_run

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent ends us in order
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    lock = threading.Lock()
    torch.set_num_threads(1)  # loading and the journal's replay: the batching thread gets its own pool below
    try:
        batcher = MicroBatcher(
            load_run(directory, **overrides), max_batch, max_wait_ms, None if journal is None else Path(journal)
        )
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it where the user sees it
        send(sock, lock, (0, False, described(exc)))
        return
    torch.set_num_threads(threads)  # from the batching thread's first pass on
    send(sock, lock, (0, True, {"label": batcher.label, "dataset": batcher.dataset}))
    while (message := receive(sock)) is not None:
        number, kind, payload = message
        if kind == "health":
            done = batcher.health()
        elif kind == "recommend":
            done = batcher.submit(payload)
        else:
            done = batcher.change(kind, payload)
        done.add_done_callback(partial(answer, sock, lock, number))
    batcher.close()


def answer(sock: socket.socket, lock: threading.Lock, number: int, done: Future) -> None:
    error = done.exception()
    send(sock, lock, (number, error is None, done.result() if error is None else described(error)))


class BatcherProcess:
    """A :class:`~genrec.batcher.Batcher` whose run lives in a child process: it loads the finished
    run folder or export ``directory`` with ``overrides`` (as :func:`genrec.load_run`), replays and
    keeps ``journal``, and decodes on ``threads`` torch threads. The constructor returns once the run
    is loaded; a run that cannot be loaded raises the child's error here."""

    def __init__(
        self,
        directory: str | Path,
        overrides: dict[str, Any] | None = None,
        max_batch: int = 64,
        max_wait_ms: float = 0.0,
        journal: Path | None = None,
        threads: int = 1,
    ):
        self.sock, theirs = socket.socketpair()
        args = (theirs, str(directory), overrides or {}, max_batch, max_wait_ms, journal and str(journal), threads)
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(target=decode_in_child, args=args, name="genrec-decoder", daemon=True)
        self.process.start()
        theirs.close()
        self.sending = threading.Lock()
        ready = receive(self.sock)
        if ready is None or not ready[1]:
            self.process.join(timeout=30)
            self.sock.close()
            if ready is None:
                raise DecoderEnded(
                    f"the decoding process ended while loading {directory} (exit {self.process.exitcode})"
                )
            raise rebuilt(*ready[2])
        self.label, self.dataset = ready[2]["label"], ready[2]["dataset"]
        self.pending: dict[int, Future] = {}  # by request number; single dict operations need no lock
        self.numbers = itertools.count(1)
        self.ended = False
        self.reader = threading.Thread(target=self.read_answers, name="genrec-answers", daemon=True)
        self.reader.start()

    def submit(self, request: Any) -> Future:
        """The lists for ``request``, decoded in the child with the requests queued beside it."""
        return self.ask("recommend", request)

    def change(self, action: Change, items: list) -> Future:
        """``action`` applied to ``items`` in the child, once the requests queued before it are decoded."""
        return self.ask(action, items)

    def health(self) -> Future:
        """The child's report, answered at once by its reading thread."""
        return self.ask("health", None)

    def ask(self, kind: str, payload: Any) -> Future:
        done: Future = Future()
        number = next(self.numbers)
        self.pending[number] = done
        try:
            if not self.ended:
                send(self.sock, self.sending, (number, kind, payload))
        except OSError:
            pass  # the child is gone: failed below, as the reader fails the rest
        if self.ended and (lost := self.pending.pop(number, None)) is not None:
            lost.set_exception(self.gone())
        return done

    def read_answers(self) -> None:
        """Resolve each answered future; when the child's end closes, fail every open one (and any
        asked later: ``ask`` checks ``ended`` after registering, this sweeps after setting it)."""
        try:
            while (message := receive(self.sock)) is not None:
                number, ok, value = message
                done = self.pending.pop(number, None)
                if done is not None:
                    done.set_result(value) if ok else done.set_exception(rebuilt(*value))
        except OSError:
            pass  # our own close() shut the socket
        self.ended = True
        self.process.join(timeout=1)  # for its exit code
        for number in list(self.pending):
            if (lost := self.pending.pop(number, None)) is not None:
                lost.set_exception(self.gone())

    def gone(self) -> DecoderEnded:
        return DecoderEnded(f"the decoding process has ended (exit {self.process.exitcode}): restart genrec serve")

    def close(self) -> None:
        """End the child (it finishes the pass it is in) and wait for it, at most 10 s before killing it."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already closed
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.reader.join(timeout=10)
        self.sock.close()
