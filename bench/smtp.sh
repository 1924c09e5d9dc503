#!/usr/bin/env bash
# bench/smtp.sh: SMTP in and local Maildir delivery, this system against Postfix, same run.
#
# Postfix's smtp-source (10 sessions, N=5000 messages of 4 KiB, one message per connection)
# is pointed at this system (qmail-tcpsrv + qmail-smtpd + the local delivery pipeline,
# release build) and at a Postfix set up here on another loopback port to deliver into a
# Maildir (virtual(8)), both running all along, in ROUNDS (3) rounds, the servers taking turns
# at going first. Prints, as the median over the rounds, accepted/s (smtp-source finished)
# and delivered/s (all in the Maildir), the CPU per message of the server's processes (see
# below) and of the whole machine (/proc/stat, the load generator and the kernel's threads
# included), and the write I/Os and KiB written per message on the disk holding the test
# directories (/proc/diskstats, synced before and after), for both, and the ratios. Needs the
# Debian packages postfix and ucspi-tcp (tests/run installs them); runs as root or as a user
# (the Postfix side needs root). QUIET=seconds (default 0) waits that long before each turn,
# so that a turn does not start on a file system full of inodes the other turn just freed
# (bench/README.md, "The process model's share").
#
# With --tls both servers get a self-signed ECDSA P-256 certificate (ours from qmailctl
# tls-selfsigned, Postfix's from openssl req, smtpd_tls_security_level = may) and the same
# load is sent by bench/tlsload.py with STARTTLS (smtp-source cannot do TLS). Then the CPU
# per TLS handshake: HANDSHAKES (default N) sessions of greeting, EHLO, STARTTLS, handshake,
# QUIT, and as many plaintext sessions of greeting, EHLO, QUIT, against each server in turn;
# the CPU its processes used per session, and the difference of the two, which is the
# handshake's share.
#
# The server's CPU is counted per process tree, since the machine may be shared and
# system-wide figures (/proc/stat, the "machine" column) count other people's builds too: user+system time of the server's root
# process (qmailctl run; Postfix's master) and of every live descendant, plus the times of
# the dead ones, which the kernel adds to their parent's cutime/cstime when it reaps them
# (qmail-tcpsrv reaps a qmail-smtpd worker after its -n sessions, as Postfix's master reaps
# an smtpd after max_use sessions; qmail-smtpd reaps a qmail-queue per message). Taken between phases, once no process of the tree is running, so a
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
ROUNDS=${ROUNDS:-3}
QUIET=${QUIET:-0}
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

# phase NAME PORT ROOT MAILDIR: one load against a server whose processes are ROOT's tree,
# delivering into MAILDIR (emptied first): appends to $work/phases its name, the times of the
# start, of the load's end and of the last delivery, its tree's CPU before and after, the
# machine's CPU at the start and at the last delivery, and the device's write I/Os and KiB
# written before and after (disk_io, which syncs first).
phase() {
  local s a d c0 c1 m0 m1 w0 k0 w1 k1
  find "$4/new" -type f -delete
  sleep "$QUIET"
  read -r w0 k0 <<<"$(disk_io "$work")"
  c0=$(tree_cpu "$3")
  m0=$(machine_cpu)
  s=$(now)
  load "$2"
  a=$(now)
  wait_count "$4/new" "$N"
  d=$(now)
  m1=$(machine_cpu)
  c1=$(tree_cpu "$3")
  read -r w1 k1 <<<"$(disk_io "$work")"
  echo "$1 $s $a $d $c0 $c1 $m0 $m1 $w0 $w1 $k0 $k1" >> "$work/phases"
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

# --- the rounds, the servers taking turns at going first ---
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then
    phase ours "$QPORT" "$runpid" "$user/Maildir"
    phase postfix "$PPORT" "$master" "$pf/mail/box"
  else
    phase postfix "$PPORT" "$master" "$pf/mail/box"
    phase ours "$QPORT" "$runpid" "$user/Maildir"
  fi
done

python3 - "$N" "$SESSIONS" "$tls" "$work/phases" <<'PY'
import statistics, sys
n, sessions, tls = map(int, sys.argv[1:4])
runs = {"ours": [], "postfix": []}
for line in open(sys.argv[4]):
    name, *f = line.split()
    s, a, d, c0, c1, m0, m1, w0, w1, k0, k1 = map(float, f)
    runs[name].append((n / (a - s), n / (d - s), (c1 - c0) * 1000 / n, (m1 - m0) * 1000 / n,
                       (w1 - w0) / n, (k1 - k0) / n))
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in runs.items()}
rounds = len(runs["ours"])
load = "tlsload" if tls else "smtp-source"
print(f"{load}: {n} messages of 4 KiB, {sessions} sessions, {'STARTTLS, ' if tls else ''}"
      f"one message per connection; median of {rounds} round{'s' if rounds > 1 else ''}")
head = ["accepted/s", "delivered/s", "CPU ms/msg", "machine ms", "writes/msg", "KiB/msg"]
print(f"{'':14}" + "".join(f"{h:>12}" for h in head))
for label, k in (("qmail-ldap-rs", "ours"), ("postfix", "postfix")):
    print(f"{label:14}" + "".join(f"{x:12.1f}" if i < 2 else f"{x:12.2f}" for i, x in enumerate(med[k])))
print(f"{'ratio':14}" + "".join(f"{q / p:12.2f}" if p else f"{'-':>12}" for q, p in zip(med["ours"], med["postfix"])))
print("delivered/s by round: " + "; ".join(
    f"{q[1]:.0f} / {p[1]:.0f}" for q, p in zip(runs["ours"], runs["postfix"])) + " (ours / postfix)")
print("(CPU: the server's processes, user+system, from the first connection to the last")
print("delivery; machine: the whole machine's CPU over that span, the load generator and the")
print("kernel's threads included, per message; writes and KiB: the device's write I/Os and KiB")
print("written over the same span and the sync after it, per message, from /proc/diskstats)")
PY
[ "$tls" = 1 ] || exit 0

# the handshake phases, each server in turn so that both see about the same background load
qt=$(sessions "$runpid" "$QPORT")
pt=$(sessions "$master" "$PPORT")
qp=$(sessions "$runpid" "$QPORT" --plain)
pp=$(sessions "$master" "$PPORT" --plain)

python3 - "$HANDSHAKES" "$SESSIONS" "$qt" "$qp" "$pt" "$pp" <<'PY'
import sys
hs, sessions = map(int, sys.argv[1:3])
qt, qp, pt, pp = map(float, sys.argv[3:])
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
