#!/usr/bin/env bash
# bench/ldap.sh: local deliveries per second to 1,000 LDAP users against the same with
# users/cdb only, in one run, and the latency of one recipient lookup.
#
# A private slapd (Debian's slapd, loaded with slapadd) holds 1,000 qmailUser entries; a
# second installation has the same 1,000 users in users/assign. Each gets N (default 5000)
# messages of 4 KiB to uniformly random recipients from 10 qmail-inject streams; delivered/s
# is measured until every message is in a Maildir. The lookup latency is that of one request
# to `qmail-getpw -s` (the long-lived unprivileged lookup process qmail-lspawn keeps, with its
# LDAP connection open), median and p99 over 500 requests. Per message also: the CPU the
# system used (the qmailctl run tree and the qmail-inject streams), slapd's, the whole
# machine's, and the disk's write I/Os and KiB written (as bench/smtp.sh). Not part of cargo
# test.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
USERS=${USERS:-1000}
STREAMS=10
PORT=${PORT:-3899}

. bench/common.sh
bench_setup ldap

[ "$uid" -ge 100 ] || { echo "bench/ldap.sh: ids must be >= 100" >&2; exit 1; }

# --- the directory ---
. bench/slapd.sh
bench_slapd "$work" "$PORT" "$USERS" "$uid" "$gid" "$work/ml"

# --- two installations: LDAP and users/cdb, each with its own 1,000 Maildirs ---
setup() { # name
  "$bin/qmailctl" init --home "$work/$1" --domain bench.example "${owner[@]}" >/dev/null
}
setup ldap
bench_ldap_controls "$work/ldap" "$PORT"
chown "$uid:$gid" "$work/ldap/control/"ldap*
setup cdb
for i in $(seq 0 $((USERS - 1))); do mkdir -p "$work/mc/u$i/Maildir/cur" "$work/mc/u$i/Maildir/new" "$work/mc/u$i/Maildir/tmp"; done
chown -R "$uid:$gid" "$work/mc"
{ for i in $(seq 0 $((USERS - 1))); do printf '=u%s:u%s:%s:%s:%s/mc/u%s:::\n' "$i" "$i" "$uid" "$gid" "$work" "$i"; done; echo .; } > "$work/cdb/users/assign"
QMAILHOME=$work/cdb "$bin/qmail-newu"

msg=$work/msg
{ printf 'Subject: bench\n\n'; head -c 3000 /dev/urandom | base64 -w 76; } > "$msg"
truncate -s 4096 "$msg"

# run NAME MAILDIR-ROOT -> "delivered/s CPU-ms machine-ms slapd-ms writes KiB", per message
run() {
  local home=$work/$1 per=$((N / STREAMS)) s e c0 c1 i0 i1 m0 m1 l0 l1 w0 k0 w1 k1
  QMAILHOME=$home "$bin/qmailctl" run --home "$home" --listen off > "$work/$1.log" 2>&1 &
  runpid=$!
  pids+=("$runpid")
  for _ in $(seq 500); do grep -q '^status: local' "$work/$1.log" 2>/dev/null && break; sleep 0.01; done
  read -r w0 k0 <<<"$(disk_io "$work")"
  c0=$(tree_cpu "$runpid")
  l0=$(tree_cpu "$(cat "$work/slapd.pid")")
  children_cpu
  i0=$children
  m0=$(machine_cpu)
  s=$(date +%s.%N)
  for st in $(seq "$STREAMS"); do
    ( for _ in $(seq "$per"); do
        QMAILHOME=$home "${as[@]}" "$bin/qmail-inject" "u$((RANDOM % USERS))@bench.example" < "$msg"
      done ) &
  done
  wait $(jobs -p | grep -v "^$runpid\$") 2>/dev/null || true
  while [ "$(find "$work/$2" -path '*/new/*' -type f | wc -l)" -lt $((per * STREAMS)) ]; do sleep 0.1; done
  e=$(date +%s.%N)
  m1=$(machine_cpu)
  c1=$(tree_cpu "$runpid")
  l1=$(tree_cpu "$(cat "$work/slapd.pid")")
  children_cpu
  i1=$children
  read -r w1 k1 <<<"$(disk_io "$work")"
  kill -TERM "$runpid"; wait "$runpid" 2>/dev/null || true; runpid=
  python3 -c "
n = $((per * STREAMS))
print('%.1f %.2f %.2f %.2f %.2f %.1f' % (n / ($e - $s), ($c1 - $c0 + $i1 - $i0) * 1000 / n,
      ($m1 - $m0) * 1000 / n, ($l1 - $l0) * 1000 / n, ($w1 - $w0) / n, ($k1 - $k0) / n))"
}
read -r ldap_rate ldap_cpu ldap_machine ldap_slapd ldap_writes ldap_kib <<<"$(run ldap ml)"
read -r cdb_rate cdb_cpu cdb_machine cdb_slapd cdb_writes cdb_kib <<<"$(run cdb mc)"

latency() { # name -> "median p99" in ms of one lookup on the long-lived lookup process
  python3 - "$work/$1" "$bin/qmail-getpw" "$USERS" "${as[@]}" <<'PY'
import os, random, subprocess, sys, time
home, getpw, users, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
env = dict(os.environ, QMAILHOME=home)
p = subprocess.Popen(prefix + [getpw, "-s"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
def ask(u):
    p.stdin.write(b"\x00".join([u.encode(), b"bench.example", b"4096", b""])); p.stdin.flush()
    n = b""
    while not n.endswith(b":"):
        n += p.stdout.read(1)
    data = p.stdout.read(int(n[:-1]) + 1)
    assert data[:3] == b"000", data
t = []
for i in range(600):
    u = "u%d" % random.randrange(users)
    s = time.perf_counter(); ask(u); e = time.perf_counter()
    if i >= 100:  # the first ones open the connection
        t.append((e - s) * 1000)
p.stdin.close(); p.wait()
t.sort()
print("%.2f %.2f" % (t[len(t) // 2], t[int(len(t) * 0.99)]))
PY
}
read -r lmed lp99 <<<"$(latency ldap)"
read -r cmed cp99 <<<"$(latency cdb)"

echo "deliveries: $N x 4 KiB to $USERS users (uniform random), 10 qmail-inject streams"
printf '%-12s %12s %20s %11s %11s %11s %11s %9s\n' "" "delivered/s" "lookup ms (p50/p99)" \
  "CPU ms/msg" "machine ms" "slapd ms" "writes/msg" "KiB/msg"
printf '%-12s %12s %20s %11s %11s %11s %11s %9s\n' "LDAP" "$ldap_rate" "$lmed / $lp99" \
  "$ldap_cpu" "$ldap_machine" "$ldap_slapd" "$ldap_writes" "$ldap_kib"
printf '%-12s %12s %20s %11s %11s %11s %11s %9s\n' "users/cdb" "$cdb_rate" "$cmed / $cp99" \
  "$cdb_cpu" "$cdb_machine" "$cdb_slapd" "$cdb_writes" "$cdb_kib"
python3 -c "print('ratio LDAP/cdb: %.2f' % ($ldap_rate / $cdb_rate))"
