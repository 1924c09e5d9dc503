#!/usr/bin/env python3
"""bench/authload.py: a concurrent POP3 login and SMTP AUTH load generator, for bench/auth.sh.

    authload.py [-s sessions] [-m count] [-u users] [-p prefix] [--all] [--stat N] [--wrong]
                [--smtp [-t to] [-l length] [--no-mail] [--no-auth]] host:port

POP3 (the default): `count` sessions, `sessions` at a time, each a login as a user uK picked
at random among u0..u(users-1), with the password `prefix` followed by K (bench/slapd.sh's
passwords), then STAT and QUIT: greeting, USER, PASS, STAT, QUIT. --stat N also wants STAT
to count N messages. --all logs every user in once, u0 to u(users-1) in turn, instead
(`count` is then `users`): a warm-up that leaves every mailbox as the server keeps it after
a first visit (Dovecot's index files).

--smtp: SMTP AUTH PLAIN and one message per session instead: greeting, EHLO (which must
offer AUTH PLAIN), AUTH PLAIN with the initial response, MAIL, RCPT to `to`, DATA with a
message of `length` bytes, QUIT. In plaintext: both servers under test offer AUTH there.
--no-mail leaves the message out (greeting, EHLO, AUTH, QUIT), and --no-auth the AUTH; the two
together (greeting, EHLO, QUIT) measure what a session costs without AUTH.

--wrong gives each user a wrong password (the right one followed by "x") and wants it
refused: -ERR to PASS, 535 to AUTH; the session ends there. It shows that the server checks.

Each session is a process of its own (Python's threads share one core; with the servers on
the same machine the generator must not be the bottleneck), taking the next session number
from a shared counter, as bench/tlsload.py does. Prints one line: what was done, the time,
the rate and the generator's own CPU (user+system). Exits 0 when every session went through,
1 at the first -ERR, refusal or error, naming the session's user, step and the server's
reply, 2 on a usage error.
"""

import argparse
import base64
import sys

from loadgen import (Refused, connect, message, own_cpu, read_line, run_logins,
                     smtp_command, smtp_expect, user_args)


def main():
    args = parse_args()
    elapsed = run_logins("authload", args, session)
    if elapsed is None:
        return 1
    cpu = own_cpu()
    if args.wrong:
        what = "sessions with a wrong password, refused at " + ("AUTH" if args.smtp else "PASS")
    elif args.smtp:
        what = " + ".join(["SMTP"] + ["AUTH PLAIN"] * (not args.no_auth)
                          + [f"one message of {args.length} bytes"] * (not args.no_mail))
    else:
        what = "POP3 logins (USER, PASS, STAT, QUIT)"
    order = "each user once" if args.all else f"{args.users} users at random"
    print(f"authload {args.server}: {args.count} {what}, {order}, {args.sessions} at a time: "
          f"{elapsed:.2f} s, {args.count / elapsed:.1f}/s; own CPU {cpu:.2f} s, "
          f"{cpu * 1000 / args.count:.2f} ms per session")
    return 0


def parse_args():
    p = argparse.ArgumentParser(prog="authload.py", description=__doc__.split("\n\n")[0])
    user_args(p)
    p.add_argument("--stat", type=int, help="the message count STAT must give")
    p.add_argument("--smtp", action="store_true", help="SMTP AUTH PLAIN and a message instead")
    p.add_argument("-t", dest="rcpt", default="bench@bench.example", help="envelope recipient")
    p.add_argument("-l", dest="length", type=int, default=4096, help="message size in bytes")
    p.add_argument("--no-mail", action="store_true", help="SMTP: no message")
    p.add_argument("--no-auth", action="store_true", help="SMTP: no AUTH")
    p.add_argument("--helo", default="authload.example", help="EHLO name")
    p.add_argument("server", help="host:port")
    args = p.parse_args()
    host, sep, port = args.server.rpartition(":")
    if (not sep or not port.isdigit() or args.sessions < 1 or args.count < 1
            or args.users < 1 or args.length < 1):
        p.error("want host:port and positive -s, -m, -u and -l")
    if args.all:
        args.count = args.users
    args.addr = (host.strip("[]"), int(port))
    return args


def session(args, user, password):
    if args.smtp:
        smtp_session(args, user, password)
    else:
        pop3_session(args, user, password)


def pop3_session(args, user, password):
    conn, f = connect(args.addr)
    try:
        pop3_expect(f, "greeting")
        pop3_command(conn, f, f"USER {user}", "USER")
        if args.wrong:
            conn.sendall(f"PASS {password}\r\n".encode())
            line = f.readline(1002)
            if not line.startswith(b"-ERR"):
                raise Refused(f"PASS with a wrong password: wanted -ERR, got {line!r}")
            return
        pop3_command(conn, f, f"PASS {password}", "PASS")
        stat = pop3_command(conn, f, "STAT", "STAT")
        fields = stat.split()
        if len(fields) < 3 or not fields[1].isdigit() or not fields[2].isdigit():
            raise Refused(f"STAT: not '+OK count size': {stat!r}")
        if args.stat is not None and int(fields[1]) != args.stat:
            raise Refused(f"STAT: wanted {args.stat} messages, got {stat!r}")
        pop3_command(conn, f, "QUIT", "QUIT")
    finally:
        f.close()
        conn.close()


def pop3_command(conn, f, line, step):
    conn.sendall(line.encode() + b"\r\n")
    return pop3_expect(f, step)


def pop3_expect(f, step):
    """Read one status line; return it unless it is not +OK."""
    line = read_line(f, step)
    text = line.decode(errors="replace").strip()
    if not line.startswith(b"+OK"):
        raise Refused(f"{step}: wanted +OK, got {text!r}")
    return text


def smtp_session(args, user, password):
    conn, f = connect(args.addr)
    try:
        smtp_expect(f, 220, "greeting")
        ehlo = smtp_command(conn, f, f"EHLO {args.helo}", 250, "EHLO")
        if not any(line[4:].upper().startswith(b"AUTH") and b"PLAIN" in line.upper()
                   for line in ehlo.split(b"\n")):
            raise Refused(f"EHLO does not offer AUTH PLAIN: {ehlo!r}")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        if args.wrong:
            smtp_command(conn, f, f"AUTH PLAIN {token}", 535, "AUTH PLAIN, a wrong password")
            return
        if not args.no_auth:
            smtp_command(conn, f, f"AUTH PLAIN {token}", 235, "AUTH PLAIN")
        if not args.no_mail:
            smtp_command(conn, f, f"MAIL FROM:<{user}@bench.example>", 250, "MAIL")
            smtp_command(conn, f, f"RCPT TO:<{args.rcpt}>", 250, "RCPT")
            smtp_command(conn, f, "DATA", 354, "DATA")
            conn.sendall(message(f"{user}@bench.example", args.rcpt, "authload", args.length))
            smtp_expect(f, 250, "end of DATA")
        smtp_command(conn, f, "QUIT", 221, "QUIT")
    finally:
        f.close()
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
