"""bench/loadgen.py: what the load generators (bench/tlsload.py, bench/authload.py) share:
the session processes and their one result each, the generator's own CPU, a message of a
given size, and an SMTP client's commands and replies. Imported, not run."""

import multiprocessing
import queue
import resource
import socket
import time


class Refused(Exception):
    """A reply other than the one expected, or a broken connection."""


def error_text(e):
    """What a session's failure is reported as."""
    return str(e) if isinstance(e, Refused) else f"{type(e).__name__}: {e}"


def run(sessions, worker, *args):
    """Run `sessions` processes of `worker(*args, counter, failed, results)`, which take the
    next session number from `counter` (a shared integer) until their work is done or
    `failed` is set, and put one result each on `results`. Returns the seconds it took and
    the results, None for a process that died without one."""
    counter = multiprocessing.Value("l", 0)
    failed = multiprocessing.Event()
    results = multiprocessing.Queue()
    start = time.monotonic()
    workers = [
        multiprocessing.Process(target=worker, args=(*args, counter, failed, results))
        for _ in range(sessions)
    ]
    for w in workers:
        w.start()
    outcome = []
    while len(outcome) < len(workers):
        try:
            outcome.append(results.get(timeout=1))
        except queue.Empty:
            if any(w.exitcode not in (None, 0) for w in workers):
                break
    elapsed = time.monotonic() - start
    for w in workers:
        w.join()
    return elapsed, outcome + [None] * (len(workers) - len(outcome))


def own_cpu():
    """The generator's CPU seconds, user+system, its session processes included."""
    return sum(
        r.ru_utime + r.ru_stime
        for r in (resource.getrusage(resource.RUSAGE_SELF),
                  resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def message(sender, rcpt, subject, length):
    """Header and body, `length` bytes in all (give or take one), and the final dot; no line
    starts with a dot, so nothing needs stuffing."""
    head = f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n\r\n".encode()
    line = b"La de da de da " * 5 + b"la\r\n"
    full, rest = divmod(max(length - len(head), 0), len(line))
    return head + line * full + b"x" * max(rest - 2, 0) + b"\r\n" * (rest > 0) + b".\r\n"


def connect(addr):
    """A connection to `addr` and a reader of its replies."""
    try:
        conn = socket.create_connection(addr, timeout=60)
    except OSError as e:
        raise Refused(f"connect: {e}") from e
    return conn, conn.makefile("rb")


def smtp_command(conn, f, line, code, step):
    conn.sendall(line.encode() + b"\r\n")
    return smtp_expect(f, code, step)


def read_line(f, step, before=b""):
    """One line of a reply (at most 1002 bytes); `before`, what came of it so far, names
    where a connection closed."""
    try:
        line = f.readline(1002)
    except OSError as e:
        raise Refused(f"{step}: {e}") from e
    if not line.endswith(b"\n"):
        raise Refused(f"{step}: connection closed or line too long after {before + line!r}")
    return line


def smtp_expect(f, code, step):
    """Read one reply, all its lines; return them unless the code is not `code`."""
    reply = b""
    while True:
        line = read_line(f, step, reply)
        reply += line
        if line[3:4] != b"-":
            break
    if not reply[:3].isdigit() or int(reply[:3]) != code:
        raise Refused(f"{step}: wanted {code}, got {reply.decode(errors='replace').strip()!r}")
    return reply
