#!/usr/bin/env bash
# bench/rcptcheck.sh: the latency from RCPT to its 250 in qmail-smtpd with RCPTCHECK off, on
# with the qmail-verify co-process (upstream's wiring: one per session), and on with the
# `qmail-verify --listen` service (control/verifysocket), in one run.
#
# A private slapd (bench/slapd.sh) holds USERS (default 1,000) qmailUser entries. For each
# mode, SESSIONS (default 20) qmail-smtpd sessions are driven one command at a time over
# pipes, each with RCPTS (default 50) recipients drawn uniformly from the users; printed are
# the median and p99 of every RCPT -> 250 round trip, and the median of the first RCPT of a
# session (which starts the co-process or connects to the service). Not part of cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-1000}
SESSIONS=${SESSIONS:-20}
RCPTS=${RCPTS:-50}
PORT=${PORT:-3898}

. bench/common.sh
bench_setup rcptcheck


. bench/slapd.sh
bench_slapd "$work" "$PORT" "$USERS" "$uid" "$gid" "$work/ml"
"$bin/qmailctl" init --home "$work/home" --domain bench.example "${owner[@]}" >/dev/null
bench_ldap_controls "$work/home" "$PORT"
chown "$uid:$gid" "$work/home/control/"ldap*
mkdir -p "$work/run" && chown "$uid:$gid" "$work/run"

measure() { # RCPTCHECK-value -> "p50 p99 first-p50" in ms
  python3 - "$work/home" "$bin/qmail-smtpd" "$USERS" "$SESSIONS" "$RCPTS" "$1" "${as[@]}" <<'PY'
import os, random, subprocess, sys, time
home, smtpd, users, sessions, rcpts, check = sys.argv[1:7]
users, sessions, rcpts, prefix = int(users), int(sessions), int(rcpts), sys.argv[7:]
env = {k: v for k, v in os.environ.items() if k not in ("RCPTCHECK", "RELAYCLIENT")}
env.update(QMAILHOME=home, TCPREMOTEIP="127.0.0.1", TCPLOCALIP="127.0.0.1")
if check:
    env["RCPTCHECK"] = "1"
every, first = [], []
for _ in range(sessions):
    p = subprocess.Popen(prefix + [smtpd], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    def say(line):
        p.stdin.write(line + b"\r\n"); p.stdin.flush()
        return p.stdout.readline()
    p.stdout.readline()
    assert say(b"MAIL FROM:<a@client.example>").startswith(b"250")
    for i in range(rcpts):
        rcpt = b"RCPT TO:<u%d@bench.example>" % random.randrange(users)
        s = time.perf_counter(); r = say(rcpt); e = time.perf_counter()
        assert r.startswith(b"250"), r
        (first if i == 0 else every).append((e - s) * 1000)
    say(b"QUIT"); p.wait()
every.sort(); first.sort()
print("%.3f %.3f %.3f" % (every[len(every) // 2], every[int(len(every) * 0.99)], first[len(first) // 2]))
PY
}

read -r off50 off99 off1 <<<"$(measure "")"
read -r co50 co99 co1 <<<"$(measure 1)"
"${as[@]}" env QMAILHOME="$work/home" "$bin/qmail-verify" --listen "unix:$work/run/verify.sock" 2>/dev/null &
svcpid=$!
pids+=("$svcpid")
for _ in $(seq 500); do [ -S "$work/run/verify.sock" ] && break; sleep 0.01; done
echo "$work/run/verify.sock" > "$work/home/control/verifysocket"
read -r sv50 sv99 sv1 <<<"$(measure 1)"

echo "RCPT -> 250 latency, $SESSIONS sessions x $RCPTS recipients among $USERS LDAP users (ms)"
printf '%-24s %10s %10s %16s\n' "" "p50" "p99" "first RCPT p50"
printf '%-24s %10s %10s %16s\n' "RCPTCHECK off" "$off50" "$off99" "$off1"
printf '%-24s %10s %10s %16s\n' "RCPTCHECK, co-process" "$co50" "$co99" "$co1"
printf '%-24s %10s %10s %16s\n' "RCPTCHECK, service" "$sv50" "$sv99" "$sv1"
