#!/usr/bin/env python3
"""bench/imapload.py: IMAP load and timings, for bench/imap.sh.

    imapload.py login [-s sessions] [-m count] [-u users] [-p prefix] [--all] [--wrong]
                      [--cpu PID]... [--slapd PID] [-o FILE] host:port
    imapload.py select|fetch -k K [-p prefix] [-r reps] [-w warm] [--verify MAILDIR]...
                      [--cpu PID]... [-o FILE]... host:port...
    imapload.py maildir DIR COUNT SIZE

login: `count` sessions of greeting, LOGIN and LOGOUT, `sessions` at a time, each as a user uK
picked at random below `users` with the password `prefix` followed by K (bench/slapd.sh's
passwords), each session a process of its own taking the next number from a shared counter
(bench/loadgen.py, as bench/authload.py). --all logs each user in once, in turn, instead;
--wrong sends a wrong password (the right one and "x") and wants NO.

select: one connection to each server, LOGIN as uK, then `warm` + `reps` times SELECT INBOX
and UID FETCH 1:* (FLAGS); the first pair, the `warm` ones and the `reps` timed ones apart.
With more than one server, each pair goes to each server in turn (the first of them
alternating), so that a machine busy with something else slows them all alike. With
--verify, the EXISTS count and the FETCH responses must match the messages in MAILDIR's cur/
and new/, and the \\Seen flags their `S`.

fetch: the same with SELECT INBOX once, then FETCH 1:* BODY.PEEK[] as the operation, counting
the bytes of message data (the literals) received. With --verify, the first FETCH must
return each message of MAILDIR exactly once, as CRLF lines.

--cpu PID: also the CPU (user+system) of that process tree over the timed part (tree_cpu in
bench/loadgen.py); --slapd PID (login) that of slapd's, apart. --cpu, -o and --verify come
once per server, in the servers' order. Prints one line per server for people and, with -o,
appends one for bench/imap.sh to FILE: "seconds operations bytes server-CPU slapd-CPU
first-seconds" (an operation: a session, a SELECT+FETCH pair, a FETCH of the whole folder;
first-seconds: select's first pair, fetch's first FETCH, else 0).

maildir: writes COUNT messages of about SIZE bytes (LF lines, Date, Subject, Message-ID, a
base64 body) into DIR/cur as Maildir++ files "<time>.M<n>P1.bench,S=<size>:2,<flags>", a third
of them seen, every seventh flagged, every eleventh answered.

Exits 0 when everything went as expected, 1 at the first NO, BAD, unexpected reply or error,
naming the user, step and reply, 2 on a usage error.
"""

import argparse
import base64
import hashlib
import os
import re
import socket
import sys
import time

from loadgen import Refused, error_text, own_cpu, run_logins, tree_cpu, user_args


def main():
    args = parse_args()
    if args.what == "maildir":
        return make_maildir(args.dir, args.count, args.size)
    if args.what == "login":
        cpu0 = tree_cpu(*args.cpu) if args.cpu else 0
        slapd0 = tree_cpu(args.slapd) if args.slapd else 0
        elapsed = run_logins("imapload", args, login_session)
        if elapsed is None:
            return 1
        cpu = tree_cpu(*args.cpu) - cpu0 if args.cpu else 0
        slapd = tree_cpu(args.slapd) - slapd0 if args.slapd else 0
        results = [(elapsed, args.count, 0, cpu, slapd, 0.0)]
    else:
        try:
            results = one_connection(args)
        except Exception as e:  # Refused, OSError: say which step
            print(f"imapload: u{args.user}: {error_text(e)}", file=sys.stderr)
            return 1
    own = own_cpu()
    for i, (elapsed, ops, nbytes, cpu, slapd, first) in enumerate(results):
        if args.what == "login":
            what = ("sessions with a wrong password, refused" if args.wrong
                    else "sessions of LOGIN + LOGOUT")
            order = "each user once" if args.all else f"{args.users} users at random"
            line = f"{args.count} {what}, {order}, {args.sessions} at a time"
        elif args.what == "select":
            line = (f"u{args.user}: {ops} x SELECT INBOX + UID FETCH 1:* (FLAGS) after "
                    f"{args.warm} warm-up, the first {first * 1000:.1f} ms")
        else:
            line = (f"u{args.user}: {ops} x FETCH 1:* BODY.PEEK[] of {nbytes / ops / 1e6:.1f} "
                    f"MB after {args.warm} warm-up, the first {first:.3f} s, "
                    f"{nbytes / elapsed / 1e6:.1f} MB/s")
        line += f": {elapsed:.2f} s, {ops / elapsed:.1f}/s"
        if args.cpu:
            line += f", server CPU {cpu * 1000 / ops:.2f} ms per operation"
        print(f"imapload {args.what} {args.servers[i]}: {line}; own CPU {own:.2f} s in all")
        if args.out:
            with open(args.out[i], "a") as f:
                print(elapsed, ops, nbytes, cpu, slapd, first, file=f)
    return 0


def parse_args():
    p = argparse.ArgumentParser(prog="imapload.py", description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["login", "select", "fetch", "maildir"])
    if sys.argv[1:2] == ["maildir"]:
        p.add_argument("dir")
        p.add_argument("count", type=int)
        p.add_argument("size", type=int)
        return p.parse_args()
    user_args(p)
    p.add_argument("-k", dest="user", type=int, default=0, help="select, fetch: as uK")
    p.add_argument("-r", dest="reps", type=int, default=10, help="select, fetch: timed rounds")
    p.add_argument("-w", dest="warm", type=int, default=1,
                   help="select, fetch: untimed rounds after the first")
    p.add_argument("--verify", metavar="MAILDIR", action="append", default=[],
                   help="select, fetch: what INBOX holds (one per server)")
    p.add_argument("--cpu", type=int, action="append", default=[],
                   help="a server's root process, its tree's CPU counted (one per server)")
    p.add_argument("--slapd", type=int, help="login: slapd's process, its CPU counted apart")
    p.add_argument("-o", dest="out", action="append", default=[],
                   help="append the figures to this file (one per server)")
    p.add_argument("servers", nargs="+", metavar="host:port")
    args = p.parse_args()
    args.addrs = []
    for server in args.servers:
        host, sep, port = server.rpartition(":")
        if not sep or not port.isdigit():
            p.error(f"want host:port, not {server}")
        args.addrs.append((host.strip("[]"), int(port)))
    if args.sessions < 1 or args.count < 1 or args.users < 1 or args.reps < 1 or args.warm < 0:
        p.error("want positive -s, -m, -u and -r, and -w not below 0")
    if args.what == "login" and len(args.servers) > 1:
        p.error("login: one server at a time")
    for name in ("cpu", "out", "verify"):
        if getattr(args, name) and len(getattr(args, name)) != len(args.servers):
            p.error(f"as many --{name} as servers, or none")
    if args.all:
        args.count = args.users
    args.addr = args.addrs[0]
    return args


class Connection:
    """An IMAP client connection: lines, literals and whole tagged responses, read from a
    buffer of its own (not a file object: a response of 10,000 lines is taken in a few
    large reads and checked with bytes methods, so that the client's work stays small)."""

    def __init__(self, addr):
        try:
            self.sock = socket.create_connection(addr, timeout=120)
        except OSError as e:
            raise Refused(f"connect: {e}") from e
        self.buf = bytearray()
        self.tags = 0

    def close(self):
        self.sock.close()

    def fill(self, step):
        try:
            data = self.sock.recv(1 << 20)
        except OSError as e:
            raise Refused(f"{step}: {e}") from e
        if not data:
            raise Refused(f"{step}: connection closed after {bytes(self.buf[-200:])!r}")
        self.buf += data

    def line(self, step):
        start = 0
        while (end := self.buf.find(b"\n", start)) < 0:
            if len(self.buf) > 1 << 16:
                raise Refused(f"{step}: a line of more than 64 KiB")
            start = len(self.buf)
            self.fill(step)
        line = bytes(self.buf[:end + 1])
        del self.buf[:end + 1]
        return line

    def read(self, n, step):
        while len(self.buf) < n:
            self.fill(step)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def send(self, command):
        """Send `command` with the next tag; return the tag."""
        self.tags += 1
        tag = f"a{self.tags}".encode()
        self.sock.sendall(tag + b" " + command.encode() + b"\r\n")
        return tag

    def command(self, command, step):
        """Send `command` and read the whole response, which must have no literals: returns
        the untagged part (bytes) once the tagged OK came."""
        tag = self.send(command)
        start = 0
        while True:
            if self.buf.startswith(tag + b" "):
                at = 0
            else:
                at = self.buf.find(b"\n" + tag + b" ", start)
                at += at >= 0
            if at >= 0 and self.buf.endswith(b"\n"):
                break
            if at < 0:
                start = max(len(self.buf) - len(tag) - 1, 0)
            self.fill(step)
        untagged, done = bytes(self.buf[:at]), bytes(self.buf[at:])
        self.buf.clear()
        check_ok(done, tag, step)
        return untagged


def check_ok(line, tag, step):
    if not line.startswith(tag + b" OK"):
        raise Refused(f"{step}: wanted {tag.decode()} OK, got "
                      f"{line.decode(errors='replace').strip()!r}")


def greeting(c):
    line = c.line("greeting")
    if not line.startswith(b"* OK"):
        raise Refused(f"greeting: wanted * OK, got {line!r}")


def login(c, user, password):
    greeting(c)
    c.command(f'LOGIN "{user}" "{password}"', "LOGIN")


def login_session(args, user, password):
    c = Connection(args.addr)
    try:
        if args.wrong:
            greeting(c)
            tag = c.send(f'LOGIN "{user}" "{password}"')
            while (line := c.line("LOGIN with a wrong password")).startswith(b"* "):
                pass
            if not line.startswith(tag + b" NO"):
                raise Refused(f"LOGIN with a wrong password: wanted NO, got {line!r}")
            return
        login(c, user, password)
        bye = c.command("LOGOUT", "LOGOUT")
        if not bye.startswith(b"* BYE"):
            raise Refused(f"LOGOUT: no * BYE before the OK: {bye!r}")
    finally:
        c.close()


def one_connection(args):
    """select or fetch, on one connection to each server, the servers in turn for every
    operation (the first of them alternating), so that what else the machine does falls on
    all alike. Returns for each: the timed part's seconds, its operations, the bytes of
    message data, the server's CPU in it (0 without --cpu), 0 (slapd) and the first
    operation's seconds."""
    expected = [maildir_messages(m) for m in args.verify] or [None] * len(args.addrs)
    conns = []
    try:
        for addr in args.addrs:
            conns.append(Connection(addr))
            login(conns[-1], f"u{args.user}", f"{args.prefix}{args.user}")
        step = select_pair if args.what == "select" else fetch_all
        if args.what == "fetch":
            for c, e in zip(conns, expected):
                select(c, e)
        first = []
        for c, e in zip(conns, expected):
            t = time.monotonic()
            step(c, e)
            first.append(time.monotonic() - t)
        for _ in range(args.warm):
            for c in conns:
                step(c, None)
        cpu0 = [tree_cpu(pid) for pid in args.cpu]
        elapsed, nbytes = [0.0] * len(conns), [0] * len(conns)
        for rep in range(args.reps):
            turn = list(enumerate(conns))
            for i, c in turn[rep % len(turn):] + turn[:rep % len(turn)]:
                t = time.monotonic()
                nbytes[i] += step(c, None)
                elapsed[i] += time.monotonic() - t
        cpu = [tree_cpu(pid) - c0 for pid, c0 in zip(args.cpu, cpu0)] or [0] * len(conns)
        for c in conns:
            c.command("LOGOUT", "LOGOUT")
    finally:
        for c in conns:
            c.close()
    return [(elapsed[i], args.reps, nbytes[i], cpu[i], 0, first[i]) for i in range(len(conns))]


def select(c, expected):
    """SELECT INBOX; returns the EXISTS count, which must match `expected` if given."""
    untagged = c.command("SELECT INBOX", "SELECT INBOX")
    m = re.search(rb"^\* (\d+) EXISTS\r?$", untagged, re.M)
    if not m:
        raise Refused(f"SELECT INBOX: no EXISTS in {untagged[:500]!r}")
    exists = int(m[1])
    if expected is not None and exists != len(expected):
        raise Refused(f"SELECT INBOX: {exists} EXISTS, the Maildir holds {len(expected)}")
    return exists


def select_pair(c, expected):
    """SELECT INBOX and UID FETCH 1:* (FLAGS); checks that every message has its FETCH
    response (and, given `expected`, its \\Seen flag). Returns 0 (no message data)."""
    exists = select(c, expected)
    untagged = c.command("UID FETCH 1:* (FLAGS)", "UID FETCH 1:* (FLAGS)")
    fetched = untagged.count(b" FETCH (")
    if fetched != exists:
        raise Refused(f"UID FETCH 1:* (FLAGS): {fetched} FETCH responses, {exists} EXISTS")
    if expected is not None:
        seen = untagged.count(b"\\Seen")
        want = sum("S" in flags for _, flags in expected.values())
        if seen != want:
            raise Refused(f"UID FETCH 1:* (FLAGS): {seen} \\Seen, the Maildir has {want}")
    return 0


def fetch_all(c, expected):
    """FETCH 1:* BODY.PEEK[]; returns the bytes of the literals. Given `expected`, they must
    be its messages, each once, as CRLF lines."""
    tag = c.send("FETCH 1:* BODY.PEEK[]")
    nbytes, digests = 0, []
    while True:
        line = c.line("FETCH BODY.PEEK[]")
        if not line.startswith(b"* "):
            break
        while (m := re.search(rb"\{(\d+)\}\r\n$", line)):
            data = c.read(int(m[1]), "FETCH BODY.PEEK[] literal")
            nbytes += len(data)
            if expected is not None:
                digests.append(hashlib.sha1(data).digest())
            line = c.line("FETCH BODY.PEEK[]")
    check_ok(line, tag, "FETCH 1:* BODY.PEEK[]")
    if expected is not None:
        want = sorted(digest for digest, _ in expected.values())
        if sorted(digests) != want:
            raise Refused(f"FETCH 1:* BODY.PEEK[]: {len(digests)} messages, not the "
                          f"{len(want)} of the Maildir (or not as CRLF lines)")
    return nbytes


def maildir_messages(maildir):
    """{file name: (SHA-1 of the message as CRLF lines, its flags)} for MAILDIR's cur/ and
    new/."""
    out = {}
    for sub in ("cur", "new"):
        for name in os.listdir(os.path.join(maildir, sub)):
            with open(os.path.join(maildir, sub, name), "rb") as f:
                data = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            flags = name.partition(":2,")[2] if sub == "cur" else ""
            out[name] = (hashlib.sha1(data).digest(), flags)
    return out


def make_maildir(root, count, size):
    os.makedirs(os.path.join(root, "cur"), exist_ok=True)
    for sub in ("new", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    body = base64.encodebytes(os.urandom(size * 3 // 4 + 100))  # lines of 76 and LF
    for n in range(count):
        head = (f"Date: Wed, 4 Dec 2024 08:{n // 60 % 60:02}:{n % 60:02} +0000\n"
                f"From: <bench@bench.example>\nTo: <u@bench.example>\n"
                f"Subject: imapload message {n}\n"
                f"Message-ID: <{n}.imapload@bench.example>\n\n").encode()
        data = head + body[:max(size - len(head), 0)].rpartition(b"\n")[0] + b"\n"
        flags = "F" * (n % 7 == 0) + "R" * (n % 11 == 0) + "S" * (n % 3 == 0)
        name = f"{1733300000 + n}.M{n}P1.bench,S={len(data)}:2,{flags}"
        with open(os.path.join(root, "cur", name), "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
