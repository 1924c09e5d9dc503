#!/usr/bin/env python3
"""bench/tlsload.py: a concurrent SMTP load generator with STARTTLS, for bench/smtp.sh --tls.

    tlsload.py [-s sessions] [-m count] [-l length] [-f from] [-t to] [--plain] [--no-mail]
               host:port

Sends `count` messages of `length` bytes from `from` to `to`, each on its own connection
(greeting, EHLO, STARTTLS, TLS handshake, EHLO, MAIL, RCPT, DATA, QUIT), over `sessions`
connections at a time: what `smtp-source -s 10 -m N -l 4096` does in plaintext, which cannot
do TLS. --plain leaves STARTTLS out; --no-mail leaves the transaction out (greeting, EHLO,
STARTTLS, handshake, QUIT), for measuring the cost of a handshake. The certificate is not
checked (the benchmark's servers have self-signed ones).

Each session is a process of its own (Python's threads share one core; with the servers on
the same machine the generator must not be the bottleneck), taking the next message number
from a shared counter as smtp-source's sessions do. Prints one line: what was sent, the
protocol and cipher of the last session, the time and the generator's own CPU (user+system).
Exits 0 when every message (or session) was accepted, 1 at the first refusal or error,
naming the session's step and the server's reply, 2 on a usage error.
"""

import argparse
import ssl
import sys

from loadgen import Refused, connect, error_text, message, own_cpu, run, take
from loadgen import smtp_command as command, smtp_expect as expect


def main():
    args = parse_args()
    body = message(args.sender, args.rcpt, "tlsload", args.length)
    # one result per session process: (True, the protocol and cipher it saw last) or
    # (False, an error text)
    elapsed, outcome = run(args.sessions, worker, args, body)
    errors = [text for ok, text in filter(None, outcome) if not ok]
    if errors or None in outcome:
        for text in dict.fromkeys(errors or ["a session process died"]):
            print(f"tlsload: {text}", file=sys.stderr)
        return 1
    tls = next((text for ok, text in outcome if text), "plaintext")
    cpu = own_cpu()
    what = "sessions without mail" if args.no_mail else f"messages of {args.length} bytes"
    print(f"tlsload {args.server}: {args.count} {what}, {args.sessions} at a time, {tls}: "
          f"{elapsed:.2f} s, {args.count / elapsed:.1f}/s; own CPU {cpu:.2f} s, "
          f"{cpu * 1000 / args.count:.2f} ms per session")
    return 0


def parse_args():
    p = argparse.ArgumentParser(prog="tlsload.py", description=__doc__.split("\n\n")[0])
    p.add_argument("-s", dest="sessions", type=int, default=10, help="concurrent sessions")
    p.add_argument("-m", dest="count", type=int, default=1000, help="messages (sessions)")
    p.add_argument("-l", dest="length", type=int, default=4096, help="message size in bytes")
    p.add_argument("-f", dest="sender", default="bench@sender.example", help="envelope sender")
    p.add_argument("-t", dest="rcpt", default="bench@bench.example", help="envelope recipient")
    p.add_argument("--helo", default="tlsload.example", help="EHLO name")
    p.add_argument("--plain", action="store_true", help="no STARTTLS")
    p.add_argument("--no-mail", action="store_true", help="no MAIL transaction: just the TLS "
                   "handshake (or, with --plain, the EHLO) and QUIT")
    p.add_argument("server", help="host:port")
    args = p.parse_args()
    host, sep, port = args.server.rpartition(":")
    if not sep or not port.isdigit() or args.sessions < 1 or args.count < 1 or args.length < 1:
        p.error("want host:port and positive -s, -m and -l")
    args.addr = (host.strip("[]"), int(port))
    return args


def worker(args, message, counter, failed, results):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    seen = ""
    try:
        while not failed.is_set() and take(counter, args.count) is not None:
            seen = session(args, ctx, message) or seen
    except Exception as e:  # Refused, OSError (ssl.SSLError too), or a bug: never hang main
        failed.set()
        results.put((False, error_text(e)))
        return
    results.put((True, seen))


def session(args, ctx, message):
    """One connection; returns "TLSv1.3 TLS_AES_256_GCM_SHA384" or the like, or "" in
    plaintext. Raises Refused on any unexpected reply."""
    conn, f = connect(args.addr)
    try:
        expect(f, 220, "greeting")
        ehlo = command(conn, f, f"EHLO {args.helo}", 250, "EHLO")
        tls = ""
        if not args.plain:
            if b"STARTTLS" not in ehlo.upper():
                raise Refused(f"EHLO does not offer STARTTLS: {ehlo!r}")
            command(conn, f, "STARTTLS", 220, "STARTTLS")
            f.close()  # empty: the server sends nothing before the handshake
            try:
                conn = ctx.wrap_socket(conn, server_hostname=args.addr[0])
            except OSError as e:
                raise Refused(f"TLS handshake: {e}") from e
            f = conn.makefile("rb")
            tls = f"{conn.version()} {conn.cipher()[0]}"
            if not args.no_mail:
                command(conn, f, f"EHLO {args.helo}", 250, "EHLO after STARTTLS")
        if not args.no_mail:
            command(conn, f, f"MAIL FROM:<{args.sender}>", 250, "MAIL")
            command(conn, f, f"RCPT TO:<{args.rcpt}>", 250, "RCPT")
            command(conn, f, "DATA", 354, "DATA")
            conn.sendall(message)
            expect(f, 250, "end of DATA")
        command(conn, f, "QUIT", 221, "QUIT")
        return tls
    finally:
        f.close()
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
