# bench/slapd.sh: sourced by the LDAP benchmarks. `bench_slapd WORK PORT USERS UID GID
# MAILROOT [PASSWORD]` writes a slapd.conf (Debian's schemas plus schema/qmail.schema, one mdb
# database for dc=bench,dc=example, mail, mailAlternateAddress and uid indexed), loads USERS
# qmailUser entries u0..u(USERS-1) with mail uN@bench.example, a home MAILROOT/uN and a
# Maildir there, owned by UID:GID, starts slapd on 127.0.0.1:PORT and waits until it answers.
# With PASSWORD, uN also gets a userPassword: {SSHA} (salted, one salt per entry) of PASSWORD
# followed by N, so that each user has a password of its own (u7's is PASSWORD7). The caller
# kills "$WORK/slapd.pid".
bench_slapd() {
  local work=$1 port=$2 users=$3 uid=$4 gid=$5 root=$6 password=${7:-} schema pw=()
  schema=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/schema
  mkdir -p "$work/db"
  cat > "$work/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
include $schema/qmail.schema
pidfile $work/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "dc=bench,dc=example"
rootdn "cn=admin,dc=bench,dc=example"
rootpw secret
directory $work/db
maxsize 104857600
index mail,mailAlternateAddress,uid eq
index objectClass eq
CONF
  if [ -n "$password" ]; then
    mapfile -t pw < <(python3 - "$password" "$users" <<'PY'
import base64, hashlib, os, sys
password, users = sys.argv[1], int(sys.argv[2])
for i in range(users):
    salt = os.urandom(8)
    digest = hashlib.sha1(f"{password}{i}".encode() + salt).digest()
    print("{SSHA}" + base64.b64encode(digest + salt).decode())
PY
    )
    [ "${#pw[@]}" = "$users" ] || { echo "bench_slapd: unable to hash the passwords" >&2; return 1; }
  fi
  {
    printf 'dn: dc=bench,dc=example\nobjectClass: dcObject\nobjectClass: organization\ndc: bench\no: Bench\n\n'
    printf 'dn: ou=people,dc=bench,dc=example\nobjectClass: organizationalUnit\nou: people\n\n'
    for i in $(seq 0 $((users - 1))); do
      printf 'dn: uid=u%s,ou=people,dc=bench,dc=example\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\nuid: u%s\ncn: u%s\nsn: u%s\nmail: u%s@bench.example\nhomeDirectory: %s/u%s\nmailMessageStore: %s/u%s/Maildir/\nqmailUID: %s\nqmailGID: %s\n' \
        "$i" "$i" "$i" "$i" "$i" "$root" "$i" "$root" "$i" "$uid" "$gid"
      if [ -n "$password" ]; then printf 'userPassword: %s\n' "${pw[$i]}"; fi
      echo
    done
  } > "$work/users.ldif"
  slapadd -q -f "$work/slapd.conf" -l "$work/users.ldif"
  slapd -f "$work/slapd.conf" -h "ldap://127.0.0.1:$port/"
  for _ in $(seq 500); do
    ldapsearch -x -H "ldap://127.0.0.1:$port/" -b dc=bench,dc=example -s base >/dev/null 2>&1 && break
    sleep 0.02
  done
  for i in $(seq 0 $((users - 1))); do
    mkdir -p "$root/u$i/Maildir/cur" "$root/u$i/Maildir/new" "$root/u$i/Maildir/tmp"
  done
  chown -R "$uid:$gid" "$root"
}

# `bench_ldap_controls HOME PORT`: point an installation at that slapd.
bench_ldap_controls() {
  printf '127.0.0.1:%s\n' "$2" > "$1/control/ldapserver"
  echo dc=bench,dc=example > "$1/control/ldapbasedn"
  echo cn=admin,dc=bench,dc=example > "$1/control/ldaplogin"
  echo secret > "$1/control/ldappassword"
}
