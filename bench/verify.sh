#!/usr/bin/env bash
# bench/verify.sh: recipient verification against 1,000 LDAP users, in one run.
#
# 1. smmapd (listening mode, one worker, its sessions keeping their LDAP connections):
#    lookups per second over one persistent socketmap connection and over 10 concurrent
#    ones, with median and p99 latency, from a Python client speaking the socketmap protocol.
# 2. The peer: Postfix itself. `postmap -q -` with N keys (one process, one connection; the
#    better of two runs each)
#    through `socketmap:inet:` to smmapd, and through Postfix's own `ldap:` table to the
#    same slapd (postfix-ldap): lookups per second of each, and the ratio.
# 3. RCPT-to-250 latency of qmail-smtpd with RCPTCHECK off, with the per-session
#    qmail-verify co-process and with the `qmail-verify --listen` service: bench/rcptcheck.sh.
#
# Needs slapd, ldap-utils, postfix, postfix-ldap (installed when missing, as
# root). Not part of cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
USERS=${USERS:-1000}
PORT=${PORT:-3885}
SPORT=${SPORT:-3887}

need=()
for p in slapd:/usr/sbin/slapd ldap-utils:/usr/bin/ldapsearch postfix:/usr/sbin/postmap \
         postfix-ldap:/usr/lib/postfix/postfix-ldap.so; do
  [ -e "${p#*:}" ] || need+=("${p%%:*}")
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "bench/verify.sh: missing packages: ${need[*]}" >&2; exit 1; }
  apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null; apt-get install -y -q "${need[@]}" >/dev/null; }
fi

. bench/common.sh
bench_setup verify

. bench/slapd.sh
bench_slapd "$work" "$PORT" "$USERS" "$uid" "$gid" "$work/ml"
home=$work/home
"$bin/qmailctl" init --home "$home" --domain bench.example "${owner[@]}" >/dev/null
bench_ldap_controls "$home" "$PORT"
chown "$uid:$gid" "$home/control/"ldap*
export QMAILHOME=$home

# --- 1. smmapd ---
"${as[@]}" "$bin/smmapd" --listen "tcp:127.0.0.1:$SPORT" 2> "$work/smmapd.log" &
pids+=($!)
for _ in $(seq 500); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $SPORT))" 2>/dev/null && break; sleep 0.02; done

python3 - "$SPORT" "$USERS" "$N" > "$work/smmap.txt" <<'PY'
import multiprocessing, random, socket, sys, time
port, users, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def client(count, seed):
    rnd = random.Random(seed)
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    lat = []
    for i in range(count + 20):
        key = b"smmap u%d@bench.example" % rnd.randrange(users)
        t = time.perf_counter()
        s.sendall(b"%d:%s," % (len(key), key))
        ln = b""
        while not ln.endswith(b":"):
            ln += f.read(1)
        reply = f.read(int(ln[:-1]) + 1)
        if i >= 20:  # the first ones open the directory connection
            lat.append(time.perf_counter() - t)
        assert reply.startswith(b"OK "), reply
    s.close()
    return lat

def report(name, lat, wall):
    lat.sort()
    print("%s %.0f %.2f %.2f" % (name, len(lat) / wall, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000))

t = time.perf_counter(); lat = client(n, 1); report("one", lat, sum(lat))
with multiprocessing.Pool(10) as pool:
    t = time.perf_counter()
    parts = pool.starmap(client, [(n // 10, 100 + k) for k in range(10)])
    wall = time.perf_counter() - t
report("ten", [x for p in parts for x in p], wall)
PY

# --- 2. Postfix: socketmap to smmapd versus its own ldap: table ---
pf=$work/pf
mkdir -p "$pf"
printf 'compatibility_level = 3.6\n' > "$pf/main.cf"
cat > "$pf/ldap.cf" <<CF
server_host = ldap://127.0.0.1:$PORT
version = 3
search_base = dc=bench,dc=example
query_filter = (|(mail=%s)(mailAlternateAddress=%s))
result_attribute = mail
CF
python3 -c "
import random
r = random.Random(7)
for _ in range($N): print('u%d@bench.example' % r.randrange($USERS))" > "$work/keys"
timed() { # what -> lookups/s
  local s e
  s=$(date +%s.%N)
  postmap -c "$pf" -q - "$1" < "$work/keys" > "$work/found" 2> "$work/postmap.err"
  e=$(date +%s.%N)
  [ "$(wc -l < "$work/found")" = "$N" ] || { echo "postmap $1 found $(wc -l < "$work/found") of $N:" >&2; head -3 "$work/postmap.err" >&2; exit 1; }
  python3 -c "print('%.0f' % ($N / ($e - $s)))"
}
best() { # map -> the better of two runs
  local a b
  a=$(timed "$1"); b=$(timed "$1")
  python3 -c "print(max($a, $b))"
}
pm_ldap=$(best "ldap:$pf/ldap.cf")
pm_smmap=$(best "socketmap:inet:127.0.0.1:$SPORT:smmap")

read -r _ one_rate one_med one_p99 <<<"$(grep '^one' "$work/smmap.txt")"
read -r _ ten_rate ten_med ten_p99 <<<"$(grep '^ten' "$work/smmap.txt")"
echo "recipient verification, $USERS LDAP users, $N lookups"
printf '%-44s %12s %16s\n' "smmapd (socketmap, Python client)" "lookups/s" "ms (p50/p99)"
printf '%-44s %12s %16s\n' "  1 persistent connection" "$one_rate" "$one_med / $one_p99"
printf '%-44s %12s %16s\n' "  10 concurrent connections" "$ten_rate" "$ten_med / $ten_p99"
printf '%-44s %12s\n' "postmap -q - (one process)" "lookups/s"
printf '%-44s %12s\n' "  socketmap: to smmapd" "$pm_smmap"
printf '%-44s %12s\n' "  Postfix's own ldap: table" "$pm_ldap"
python3 -c "print('ratio smmapd/Postfix ldap: %.2f' % ($pm_smmap / $pm_ldap))"
# --- 3. RCPT latency: bench/rcptcheck.sh, with its own slapd on another port ---
PORT=$((PORT + 10)) USERS=$USERS bench/rcptcheck.sh
