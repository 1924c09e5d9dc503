#!/usr/bin/env bash
# bench/imap.sh: IMAP, this system's imapd against Dovecot's, same run, same slapd, Maildirs
# of the same content.
#
# A private slapd (bench/slapd.sh) holds USERS (default 1,000) qmailUser entries u0.., each
# with a password of its own ({SSHA}; uK's is bench-secret-K), a Maildir holding MESSAGES
# (default 5) messages of 4 KiB, and two more users: u$USERS, whose INBOX holds SELECT_MSGS
# (10,000) messages of 2 KiB, some seen, flagged or answered, and u$((USERS+1)), whose INBOX
# holds FETCH_MSGS (200) of FETCH_SIZE (256 KiB). The Maildirs are made once, then copied
# (cp -a): each server has a set of its own, since both keep files in them (Dovecot its
# dovecot-uidlist and index files; ours its own), and neither must find the other's there.
#
#   - ours: start_ours below, tcpserver running $home/bin/imapd -p 2 (plaintext LOGIN) as the
#     users' uid and gid, one process per connection, in an installation made by qmailctl
#     init and pointed at the slapd (control/ldapserver, ldapbasedn, ldaplogin,
#     ldappassword); imapd finds the user's Maildir in the entry's mailMessageStore (and
#     homeDirectory), $work/ml/uK/Maildir/.
#   - Dovecot (Debian's dovecot-imapd and dovecot-ldap), a private instance: passdb and userdb
#     ldap on the same slapd (bound as the admin, checking userPassword itself), the entry's
#     qmailUID and qmailGID, home $work/dml/uK (the copy), mail_location maildir:~/Maildir
#     (Maildir++), no TLS, its defaults otherwise: a login process and an imap process per
#     connection, no auth cache (auth_cache_size = 0), fsync "optimized", logging to a file.
#
# Measured in ROUNDS (3) rounds with bench/imapload.py:
#   1. logins: N (2000) sessions of greeting, LOGIN and LOGOUT as random users, SESSIONS (10)
#      at a time, on ours and on Dovecot in turn (the first of them alternating from round to
#      round): logins/s, the server's CPU per login, slapd's;
#   2. SELECT INBOX + UID FETCH 1:* (FLAGS) on u$USERS's 10,000 messages, SELECTS (50) pairs
#      after 2 untimed ones, on one connection to each server, the pairs going to each in
#      turn: pairs/s (time spent waiting for that server's pairs) and its CPU per pair;
#   3. FETCH 1:* BODY.PEEK[] of u$((USERS+1))'s INBOX (50 MiB), FETCHES (10) times after one
#      untimed, the same way: MB/s of message data received and the server's CPU per MB.
#   Taking turns operation by operation, what else the machine does (a build in another
#   tree) falls on both alike; the rates still move with it, the CPU figures much less.
# Before the rounds, untimed: every user logs in once on each server, and the first SELECT
# and UID FETCH and the first FETCH of each big folder are timed apart (cold: Dovecot writes
# its uidlist and index then), with their content checked against the Maildir. Last, each
# server must refuse a wrong password (last, since Dovecot slows an address down after one).
# Prints the medians, and the ratios, every one so that higher is better for ours (rates:
# ours/Dovecot; seconds and CPU: Dovecot/ours).
#
# Without $home/bin/imapd (IMAPD=path runs another program in its place), it says so, runs
# the Dovecot half alone and exits 1 at the end. Runs as root; needs slapd, ldap-utils,
# ucspi-tcp, dovecot-imapd, dovecot-ldap and python3. Ports: free ones (free_ports in
# bench/common.sh) unless LPORT (slapd), QPORT (ours), DPORT (Dovecot) are set.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
[ $# = 0 ] || { echo "usage: [N=2000] [ROUNDS=3] ... bench/imap.sh" >&2; exit 2; }
N=${N:-2000}
ROUNDS=${ROUNDS:-3}
USERS=${USERS:-1000}
SESSIONS=${SESSIONS:-10}
MESSAGES=${MESSAGES:-5}
SELECT_MSGS=${SELECT_MSGS:-10000}
SELECTS=${SELECTS:-50}
FETCH_MSGS=${FETCH_MSGS:-200}
FETCH_SIZE=${FETCH_SIZE:-262144}
FETCHES=${FETCHES:-10}
PASSWORD=bench-secret-  # uK's password is this followed by K

. bench/common.sh
bench_need bench/imap.sh "apt-get install slapd ldap-utils ucspi-tcp dovecot-imapd dovecot-ldap" \
  slapd slapadd ldapsearch tcpserver dovecot /usr/lib/dovecot/imap \
  /usr/lib/dovecot/modules/auth/libauthdb_ldap.so python3
bench_setup imap
mapfile -t ports < <(free_ports 3)
LPORT=${LPORT:-${ports[0]}} QPORT=${QPORT:-${ports[1]}} DPORT=${DPORT:-${ports[2]}}
sel_user=$USERS fetch_user=$((USERS + 1))

# --- the directory and the mailboxes: ours in $work/ml (the entries' paths), Dovecot's in
# $work/dml ---
. bench/slapd.sh
bench_slapd "$work" "$LPORT" $((USERS + 2)) "$uid" "$gid" "$work/ml" "$PASSWORD"
slapd_pid=$(cat "$work/slapd.pid")
bench_messages "$work/ml" "$USERS" "$MESSAGES"
bench/imapload.py maildir "$work/ml/u$sel_user/Maildir" "$SELECT_MSGS" 2048
bench/imapload.py maildir "$work/ml/u$fetch_user/Maildir" "$FETCH_MSGS" "$FETCH_SIZE"
chown -R "$uid:$gid" "$work/ml"
cp -a "$work/ml" "$work/dml"

# --- this system: an installation on the slapd ---
home=$work/qmail
"$bin/qmailctl" init --home "$home" --domain bench.example "${owner[@]}" >/dev/null
bench_ldap_controls "$home" "$LPORT"
chown "$uid:$gid" "$home/control/"ldap*  # imapd reads them as the users' uid
IMAPD=${IMAPD:-$home/bin/imapd}
if [ ! -e "$IMAPD" ] && [ -x "$bin/imapd" ]; then  # built, but not installed by qmailctl init
  echo "bench/imap.sh: $IMAPD is missing, running $bin/imapd" >&2
  IMAPD=$bin/imapd
fi
# start_ours: our IMAP server on 127.0.0.1:$QPORT, one imapd per connection as the users'
# uid and gid; sets ours_pid, the root of its process tree. -HRl0: no DNS or ident look-ups
# by tcpserver (as bench/auth.sh), which Dovecot does not do either.
start_ours() {
  (cd "$home" && exec tcpserver -HRl0 -u "$uid" -g "$gid" -c 100 127.0.0.1 "$QPORT" \
    env QMAILHOME="$home" "$IMAPD" -p 2) 2>> "$work/imapd.log" &
  ours_pid=$!
  pids+=("$ours_pid")
  wait_port "$QPORT"
}
systems=()
if [ -x "$IMAPD" ]; then
  start_ours
  systems+=(ours)
else
  echo "bench/imap.sh: $IMAPD is missing: Dovecot alone, no comparison" >&2
fi

# --- Dovecot ---
dv=$work/dovecot
dovecot_instance "$dv" "$LPORT" "$work/dml/%{ldap:uid}"
cat >> "$dv/dovecot.conf" <<EOF
protocols = imap
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DPORT
  }
  inet_listener imaps {
    port = 0
  }
}
EOF
dovecot_start "$dv" "$DPORT"
systems+=(dovecot)

# imapload WHAT "SYSTEM..." ARG...: bench/imapload.py WHAT against those systems (their
# ports, their process trees' CPU; with verify=K, what uK's Maildir on each holds), each one's
# figures appended to $work/fig.WHAT.SYSTEM (fig.$fig.SYSTEM when fig is set), the lines
# for people to $work/imapload.out
imapload() {
  local what=$1 sys args=() servers=()
  for sys in $2; do
    if [ "$sys" = ours ]; then
      servers+=("127.0.0.1:$QPORT") args+=(--cpu "$ours_pid")
      [ -z "${verify:-}" ] || args+=(--verify "$work/ml/u$verify/Maildir")
    else
      servers+=("127.0.0.1:$DPORT") args+=(--cpu "$dovecot_pid")
      [ -z "${verify:-}" ] || args+=(--verify "$work/dml/u$verify/Maildir")
    fi
    args+=(-o "$work/fig.${fig:-$what}.$sys")
  done
  shift 2
  bench/imapload.py "$what" -p "$PASSWORD" "${args[@]}" "$@" "${servers[@]}" \
    >> "$work/imapload.out"
}

# the warm-up, untimed: every user once; then the cold SELECT and FETCHes, checked
for sys in "${systems[@]}"; do
  fig=warm imapload login "$sys" --all -s "$SESSIONS" -u "$USERS"
done
fig=coldselect verify=$sel_user imapload select "${systems[*]}" -k "$sel_user" -w 0 -r 1
fig=coldfetch verify=$fetch_user imapload fetch "${systems[*]}" -k "$fetch_user" -w 0 -r 1

# the rounds: logins on each in turn, SELECTs and FETCHes on both at once, in turn per
# operation (bench/imapload.py)
for round in $(seq "$ROUNDS"); do
  order=("${systems[@]}")
  [ $((round % 2)) = 0 ] && [ "${#systems[@]}" = 2 ] && order=(dovecot ours)
  for sys in "${order[@]}"; do
    imapload login "$sys" -m "$N" -s "$SESSIONS" -u "$USERS" --slapd "$slapd_pid"
  done
  imapload select "${order[*]}" -k "$sel_user" -w 2 -r "$SELECTS"
  imapload fetch "${order[*]}" -k "$fetch_user" -w 1 -r "$FETCHES"
done

# a wrong password, refused by each: last, since Dovecot slows an address down after one
for sys in "${systems[@]}"; do
  fig=wrong imapload login "$sys" --wrong -s 1 -m 1 -u "$USERS"
done

python3 - "$work" "$N" "$USERS" "$SESSIONS" "$SELECT_MSGS" "$SELECTS" "$FETCH_MSGS" \
  "$FETCH_SIZE" "$FETCHES" "${systems[@]}" <<'PY'
import statistics, sys
work = sys.argv[1]
n, users, sessions, smsgs, selects, fmsgs, fsize, fetches = map(int, sys.argv[2:10])
systems = sys.argv[10:]
names = {"ours": "qmail-ldap-rs", "dovecot": "dovecot"}
def figures(what, system):
    # one line per run: seconds operations bytes server-CPU slapd-CPU first-seconds
    with open(f"{work}/fig.{what}.{system}") as f:
        return [list(map(float, line.split())) for line in f]
def row(name, *cols):
    print(f"{name:16}" + "".join(f"{c:>16}" for c in cols))
def table(what, heads, columns):
    """columns: (function of a run's figures, format, True if higher is better); the median
    over the rounds of each"""
    rows = {}
    for s in systems:
        runs = figures(what, s)
        rows[s] = [statistics.median(f(*r) for r in runs) for f, _, _ in columns]
    row("", *heads)
    for s in systems:
        row(names[s], *(fmt.format(v) for v, (_, fmt, _) in zip(rows[s], columns)))
    if len(systems) == 2:
        ours, dv = rows["ours"], rows["dovecot"]
        row("ratio", *(f"{(o / d if up else d / o):.2f}" if o > 0 and d > 0 else "-"
                       for o, d, (_, _, up) in zip(ours, dv, columns)))
rounds = len(figures("login", systems[0]))
print(f"IMAP, median of {rounds} rounds" + (
    "; ratio: higher is better for ours (rates ours/Dovecot, seconds and CPU Dovecot/ours)"
    if len(systems) == 2 else ""))
print()
print(f"1. logins: {n} sessions of LOGIN + LOGOUT as {users} LDAP users at random, "
      f"{sessions} at a time")
table("login", ["logins/s", "CPU ms/login", "slapd ms/login"],
      [(lambda t, o, b, c, s, f: o / t, "{:.1f}", True),
       (lambda t, o, b, c, s, f: c * 1000 / o, "{:.2f}", False),
       (lambda t, o, b, c, s, f: s * 1000 / o, "{:.2f}", False)])
print()
print(f"2. SELECT INBOX + UID FETCH 1:* (FLAGS), {smsgs} messages, {selects} pairs on a "
      f"connection to each server in turn, after 2 untimed;")
print("   cold: the first pair on the fresh Maildir (before the rounds)")
cold = {s: figures("coldselect", s)[0][5] for s in systems}
table("select", ["pairs/s", "ms/pair", "CPU ms/pair"],
      [(lambda t, o, b, c, s, f: o / t, "{:.2f}", True),
       (lambda t, o, b, c, s, f: t * 1000 / o, "{:.1f}", False),
       (lambda t, o, b, c, s, f: c * 1000 / o, "{:.1f}", False)])
for s in systems:
    print(f"   cold {names[s]}: {cold[s] * 1000:.1f} ms")
print()
size = fmsgs * fsize / 2**20
print(f"3. FETCH 1:* BODY.PEEK[] of {fmsgs} messages of {fsize // 1024} KiB ({size:.0f} MiB), "
      f"{fetches} times on a connection to each in turn, after 1 untimed")
table("fetch", ["MB/s", "CPU ms/MB"],
      [(lambda t, o, b, c, s, f: b / t / 1e6, "{:.1f}", True),
       (lambda t, o, b, c, s, f: c * 1000 / (b / 1e6), "{:.2f}", False)])
for s in systems:
    print(f"   cold {names[s]}: the first FETCH {figures('coldfetch', s)[0][5]:.3f} s")
print()
print("(CPU: user+system of the server's process tree: ours tcpserver and its imapd;")
print("Dovecot its master and every child, auth and login processes included; slapd apart)")
PY
echo
echo "load generator (bench/imapload.py), in the order run:"
cat "$work/imapload.out"
if [ "${systems[0]}" != ours ]; then
  echo "bench/imap.sh: $IMAPD is missing: Dovecot alone, no comparison" >&2
  exit 1
fi
