"""bench/loadgen.py: what the load generators (bench/tlsload.py, bench/authload.py,
bench/imapload.py) share: the session processes and their one result each, logins as random
users, the generator's own CPU and a server's (tree_cpu, also bench/common.sh's), a message of
a given size, and an SMTP client's commands and replies. Imported, not run."""

import multiprocessing
import os
import queue
import random
import resource
import socket
import sys
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


def take(counter, count):
    """The next session number from the shared `counter`, None once `count` are taken."""
    with counter.get_lock():
        if counter.value >= count:
            return None
        counter.value += 1
        return counter.value - 1


def user_args(p):
    """The options of a login load (-s, -m, -u, -p, --all, --wrong) on the parser `p`."""
    p.add_argument("-s", dest="sessions", type=int, default=10, help="concurrent sessions")
    p.add_argument("-m", dest="count", type=int, default=1000, help="sessions in all")
    p.add_argument("-u", dest="users", type=int, default=1000, help="users u0..u(users-1)")
    p.add_argument("-p", dest="prefix", default="secret-",
                   help="uK's password is this followed by K")
    p.add_argument("--all", action="store_true", help="each user once, in turn (-m is ignored)")
    p.add_argument("--wrong", action="store_true", help="wrong passwords, to be refused")


def user_worker(args, session, counter, failed, results):
    """A session process of a login load (run's `worker`): until `args.count` sessions are
    done, `session(args, user, password)` as uK, K at random below `args.users` (in turn with
    `args.all`), with the password `args.prefix` followed by K (and "x" with `args.wrong`).
    Its one result: "" when all went through, else the user and the error."""
    rng = random.Random()
    user = "?"
    try:
        while not failed.is_set() and (n := take(counter, args.count)) is not None:
            k = n if args.all else rng.randrange(args.users)
            user, password = f"u{k}", f"{args.prefix}{k}" + "x" * args.wrong
            session(args, user, password)
    except Exception as e:  # Refused, OSError, or a bug: never hang main
        failed.set()
        results.put(f"{user}: {error_text(e)}")
        return
    results.put("")


def run_logins(prog, args, session):
    """`run(args.sessions, user_worker, args, session)`: the seconds it took, or None after
    naming on stderr (as `prog`) what went wrong in the sessions that failed."""
    # one result per session process: "" when all went through, or an error text
    elapsed, outcome = run(args.sessions, user_worker, args, session)
    errors = [text for text in outcome if text]
    if errors or None in outcome:
        for text in dict.fromkeys(errors or ["a session process died"]):
            print(f"{prog}: {text}", file=sys.stderr)
        return None
    return elapsed


def tree_cpu(*pids):
    """Seconds of CPU (user+system) used so far by the process trees of `pids`: the times of
    their live processes and of the dead ones, which the kernel adds to their parent's
    cutime/cstime when it reaps them (see the top of bench/smtp.sh). Waits (up to 2 s) until
    no process in them is running, being reaped or in an uninterruptible sleep."""
    def scan():
        procs = {}
        for d in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:  # gone since the listing
                continue
            # after "pid (comm) ": state ppid ... utime stime cutime cstime (fields 3, 4, 14-17)
            f = stat[stat.rindex(")") + 2:].split()
            procs[int(d)] = (int(f[1]), f[0], sum(map(int, f[11:15])))
        tree, todo = [], list(pids)
        while todo:
            p = todo.pop()
            tree.append(procs[p])
            todo += [c for c, (pp, _, _) in procs.items() if pp == p]
        return tree
    for _ in range(200):
        tree = scan()
        if not any(state in "RDZ" for _, state, _ in tree):
            break
        time.sleep(0.01)
    return sum(t for _, _, t in tree) / os.sysconf("SC_CLK_TCK")


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


def read_line(f, step, before=b"", limit=1002):
    """One line of a reply (at most `limit` bytes); `before`, what came of it so far, names
    where a connection closed."""
    try:
        line = f.readline(limit)
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
