#!/usr/bin/env bash
# bench/smtp.sh: SMTP in and local Maildir delivery, this system against Postfix, same run.
#
# Postfix's smtp-source (10 sessions, N=5000 messages of 4 KiB, one message per connection)
# is pointed first at this system (qmail-tcpsrv + qmail-smtpd + the local delivery pipeline,
# release build) and then (ours left running, idle) at a Postfix set up here on another
# loopback port to deliver into a Maildir (virtual(8)). Prints accepted/s (smtp-source finished) and delivered/s (all in
# the Maildir) for both and the ratios. Needs the Debian packages postfix and ucspi-tcp
# (tests/run installs them); runs as root or as a user (the Postfix side needs root).
#
# With --tls both servers get a self-signed ECDSA P-256 certificate (ours from qmailctl
# tls-selfsigned, Postfix's from openssl req, smtpd_tls_security_level = may) and the same
# load is sent by bench/tlsload.py with STARTTLS (smtp-source cannot do TLS); the table then
# also gives the server side's CPU per message. Then the CPU per TLS handshake: HANDSHAKES
# (default N) sessions of greeting, EHLO, STARTTLS, handshake, QUIT, and as many plaintext
# sessions of greeting, EHLO, QUIT, against each server in turn; the CPU its processes used
# per session, and the difference of the two, which is the handshake's share.
#
# CPU is counted per process tree, since the machine is shared and system-wide figures
# (/proc/stat) would count other people's builds: user+system time of the server's root
# process (qmailctl run; Postfix's master) and of every live descendant, plus the times of
# the dead ones, which the kernel adds to their parent's cutime/cstime when it reaps them
# (qmail-tcpsrv reaps a qmail-smtpd per connection; Postfix's master reaps an smtpd after
# max_use sessions). Taken between phases, once no process of the tree is running, so a
# session's tail is not left out. The kernel reports whole clock ticks (10 ms) per process,
# each rounded down: with a dozen live processes, well under 0.01 ms per session over 2000
# sessions. The load generator's own CPU is printed on its lines; it runs on the same cores,
# the same program against both servers.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
tls=0
case "$*" in
  --tls) tls=1 ;;
  "") ;;
  *) echo "usage: bench/smtp.sh [--tls]" >&2; exit 2 ;;
esac
N=${N:-5000}
SESSIONS=${SESSIONS:-10}
HANDSHAKES=${HANDSHAKES:-$N}
QPORT=${QPORT:-2625}
PPORT=${PPORT:-2626}

cargo build --release -q
bin=$PWD/target/release
work=$(mktemp -d "${TMPDIR:-/var/tmp}/qmail-smtp-bench.XXXXXX")
chmod 755 "$work"
cleanup() {
  [ -n "${runpid:-}" ] && kill -TERM "$runpid" 2>/dev/null && wait "$runpid" 2>/dev/null
  [ -d "$work/pf/etc" ] && postfix -c "$work/pf/etc" stop >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

count() { find "$1" -type f | wc -l; }
wait_count() { while [ "$(count "$1")" -lt "$2" ]; do sleep 0.05; done; }
now() { date +%s.%N; }
wait_port() {
  for _ in $(seq 1000); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
    sleep 0.01
  done
}

# load PORT: N messages of 4 KiB, SESSIONS connections at a time, one message per connection.
load() {
  if [ "$tls" = 1 ]; then
    bench/tlsload.py -s "$SESSIONS" -m "$N" -l 4096 -f bench@sender.example -t bench@bench.example \
      "127.0.0.1:$1" >> "$work/tlsload.out"
  else
    smtp-source -s "$SESSIONS" -m "$N" -l 4096 -f bench@sender.example -t bench@bench.example \
      "127.0.0.1:$1"
  fi
}

# tree_cpu PID: the CPU PID's process tree has used so far, the dead included
. bench/common.sh

# sessions ROOT PORT [--plain]: seconds of CPU ROOT's tree uses for HANDSHAKES sessions
# without mail (with STARTTLS and the handshake unless --plain).
sessions() {
  local before after
  before=$(tree_cpu "$1")
  bench/tlsload.py -s "$SESSIONS" -m "$HANDSHAKES" --no-mail "${@:3}" "127.0.0.1:$2" \
    >> "$work/tlsload.out"
  after=$(tree_cpu "$1")
  awk -v a="$after" -v b="$before" 'BEGIN { print a - b }'
}

# --- this system ---
home=$work/qmail
owner=()
[ "$(id -u)" = 0 ] && owner=(--owner nobody)
"$bin/qmailctl" init --home "$home" --domain bench.example "${owner[@]}" >/dev/null
user=$work/qbox
mkdir -p "$user/Maildir/cur" "$user/Maildir/new" "$user/Maildir/tmp"
if [ "$(id -u)" = 0 ]; then uid=65534 gid=65534; chown -R "$uid:$gid" "$user"
else uid=$(id -u) gid=$(id -g); fi
printf '=bench:bench:%s:%s:%s:::\n.\n' "$uid" "$gid" "$user" > "$home/users/assign"
QMAILHOME=$home "$bin/qmail-newu"
[ "$tls" = 1 ] && "$bin/qmailctl" tls-selfsigned --home "$home" >/dev/null
QMAILHOME=$home "$bin/qmailctl" run --home "$home" --listen "127.0.0.1:$QPORT" > "$work/qmail.log" 2>&1 &
runpid=$!
wait_port "$QPORT"
qc0=$(tree_cpu "$runpid")
qs=$(now)
load "$QPORT"
qa=$(now)
wait_count "$user/Maildir/new" "$N"
qd=$(now)
qc1=$(tree_cpu "$runpid")

# --- Postfix ---
pf=$work/pf
postfix_instance "$pf" "$PPORT" 65534 65534
if [ "$tls" = 1 ]; then
  # the same kind of key as qmailctl tls-selfsigned's (ECDSA P-256), so that both handshakes
  # sign alike
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=pfbench.example -addext subjectAltName=DNS:localhost \
    -keyout "$pf/etc/key.pem" -out "$pf/etc/cert.pem" 2>/dev/null
  cat >> "$pf/etc/main.cf" <<PF
smtpd_tls_cert_file = $pf/etc/cert.pem
smtpd_tls_key_file = $pf/etc/key.pem
smtpd_tls_security_level = may
PF
fi
postfix -c "$pf/etc" start >/dev/null 2>&1
wait_port "$PPORT"
master=$(tr -d ' ' < "$pf/queue/pid/master.pid")
pc0=$(tree_cpu "$master")
ps_=$(now)
load "$PPORT"
pa=$(now)
wait_count "$pf/mail/box/new" "$N"
pd=$(now)
pc1=$(tree_cpu "$master")

if [ "$tls" = 0 ]; then
  python3 - "$N" "$SESSIONS" "$qs" "$qa" "$qd" "$ps_" "$pa" "$pd" <<'PY'
import sys
n, sessions = map(int, sys.argv[1:3]); qs, qa, qd, ps, pa, pd = map(float, sys.argv[3:])
qacc, qdel, pacc, pdel = n / (qa - qs), n / (qd - qs), n / (pa - ps), n / (pd - ps)
print(f"smtp-source: {n} messages of 4 KiB, {sessions} sessions, one message per connection")
print(f"{'':14}{'accepted/s':>12}{'delivered/s':>13}")
print(f"{'qmail-ldap-rs':14}{qacc:12.1f}{qdel:13.1f}")
print(f"{'postfix':14}{pacc:12.1f}{pdel:13.1f}")
print(f"{'ratio':14}{qacc / pacc:12.2f}{qdel / pdel:13.2f}")
PY
  exit
fi

# the handshake phases, each server in turn so that both see about the same background load
qt=$(sessions "$runpid" "$QPORT")
pt=$(sessions "$master" "$PPORT")
qp=$(sessions "$runpid" "$QPORT" --plain)
pp=$(sessions "$master" "$PPORT" --plain)

python3 - "$N" "$SESSIONS" "$HANDSHAKES" "$qs" "$qa" "$qd" "$qc0" "$qc1" \
  "$ps_" "$pa" "$pd" "$pc0" "$pc1" "$qt" "$qp" "$pt" "$pp" <<'PY'
import sys
n, sessions, hs = map(int, sys.argv[1:4])
qs, qa, qd, qc0, qc1, ps, pa, pd, pc0, pc1, qt, qp, pt, pp = map(float, sys.argv[4:])
qacc, qdel, pacc, pdel = n / (qa - qs), n / (qd - qs), n / (pa - ps), n / (pd - ps)
qcpu, pcpu = (qc1 - qc0) * 1000 / n, (pc1 - pc0) * 1000 / n
print(f"tlsload: {n} messages of 4 KiB, {sessions} sessions, STARTTLS, one message per connection")
print(f"{'':14}{'accepted/s':>12}{'delivered/s':>13}{'CPU ms/msg':>12}")
print(f"{'qmail-ldap-rs':14}{qacc:12.1f}{qdel:13.1f}{qcpu:12.2f}")
print(f"{'postfix':14}{pacc:12.1f}{pdel:13.1f}{pcpu:12.2f}")
print(f"{'ratio':14}{qacc / pacc:12.2f}{qdel / pdel:13.2f}{qcpu / pcpu:12.2f}")
print("(CPU: the server's processes, user+system, from the first connection to the last delivery)")
print()
print(f"server CPU per session in ms, {hs} sessions without mail, {sessions} at a time")
q = [x * 1000 / hs for x in (qt, qp, qt - qp)]
p = [x * 1000 / hs for x in (pt, pp, pt - pp)]
print(f"{'':14}{'STARTTLS':>12}{'plaintext':>12}{'handshake':>12}")
print(f"{'qmail-ldap-rs':14}{q[0]:12.3f}{q[1]:12.3f}{q[2]:12.3f}")
print(f"{'postfix':14}{p[0]:12.3f}{p[1]:12.3f}{p[2]:12.3f}")
print(f"{'ratio':14}{q[0] / p[0]:12.2f}{q[1] / p[1]:12.2f}{q[2] / p[2]:12.2f}")
print("(STARTTLS: greeting, EHLO, STARTTLS, TLS handshake, QUIT; plaintext: greeting, EHLO,")
print("QUIT; handshake: the difference, what STARTTLS and the handshake cost)")
PY
echo
echo "load generator (bench/tlsload.py), in the order run:"
cat "$work/tlsload.out"
