//! The edge pair against the real tools, from generated files: edge1 and edge2 (10.0.6.10
//! and .11 on `ens18`, in 10.0.6.0/24) and their floating address 10.0.6.5.
//!
//! In namespaces the tests create: a switch (a bridge, which also holds a client on the
//! internet, 203.0.113.10, where pfSense would forward from) and one network and mount
//! namespace per edge, each loading its generated nftables ruleset (so VRRP, HTTPS and
//! the ACME challenges pass only by the site's flows), with HAProxy and keepalived
//! started from the generated `/etc/haproxy` and `/etc/keepalived`.
//!
//! Failover (the reference site's files):
//! - the address settles on edge1 (the first host) and the client gets an HTTP answer
//!   from HAProxy through it;
//! - edge1's HAProxy is frozen (SIGSTOP: the process lives, `pgrep` still finds it, but
//!   nothing answers): within [`DEADLINE`] the address is on edge2 and answers there;
//! - edge1's HAProxy recovers (SIGCONT) and its check passes again: the address stays on
//!   edge2 for [`HOLD`] (`nopreempt`: no fail-back cuts the open connections again), and
//!   edge1 is BACKUP, not FAULT;
//! - edge2's HAProxy stops: the address returns to edge1 within [`DEADLINE`].
//!
//! The edge's check runs as `nobody` (seen in the process table while HAProxy hangs),
//! and keepalived refuses no script (it logs a SECURITY VIOLATION for one it refuses).
//!
//! Shared rate limits (the reference site's files): a client's requests to a rate-limited
//! route through edge1 are counted in edge2's stick table too (HAProxy `peers` over the
//! site's flow), and after a failover edge2 goes on counting from there.
//!
//! ACME (the reference site with its `acme_directory` pointed at the test's server, the
//! only change): Pebble, the ACME test server, on the internet side, resolving
//! `media.example.org` to the floating address and validating HTTP-01 on port 80 as Let's
//! Encrypt does. The generated ACME script runs on edge2, which does not hold the
//! address: the challenge reaches edge1's HAProxy, whose `acme` backend passes it on to
//! edge2's lego; the certificate is installed and HAProxy reloaded (the test's
//! `systemctl` reloads HAProxy in the namespace), and edge2 serves Pebble's certificate,
//! not the placeholder. Then on edge1 (which holds it). A second run on edge2 renews
//! nothing and reloads nothing.
//!
//! Test-only, none in the generated files: a self-signed certificate at the path the
//! crt-list names (the bootstrap's placeholder; `delivery.rs` tests the bootstrap's); the
//! route between the edges and the client (pfSense's job); `/etc` and `/var/lib` are
//! overlays per host, `/run` a scratch bind mount; lego trusts Pebble's own TLS
//! certificate (`LEGO_CA_CERTIFICATES`).
//! Needs root, `unshare`, `nsenter`, `ip`, `nft`, `haproxy`, `keepalived`, `curl`,
//! `openssl`, `lego`, `pebble` (scripts/test.sh).

use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// How long the test allows for the address to move once HAProxy stops answering.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long a recovered edge1 must leave the address on edge2.
const HOLD: Duration = Duration::from_secs(10);

/// What both runs share (`$1` generated/, `$2` scratch, `$3` a deadline, `$4` a hold,
/// in seconds): the switch with its internet client, and `boot <edge> <address>`, which
/// starts an edge's HAProxy and keepalived from its generated files.
const PRELUDE: &str = r#"
G=$1 T=$2 DEADLINE=$3 HOLD=$4
VIP=10.0.6.5
K=$$
cleanup() {
  for p in $(cat "$T/holders" 2>/dev/null); do kill_ns "$p"; done
}
# Every process in the network namespace of holder $1, SIGKILL (SIGCONT first: a
# stopped process must be able to die).
kill_ns() {
  id=$(readlink "/proc/$1/ns/net" 2>/dev/null) || return 0
  [ "$id" = "$(readlink /proc/$$/ns/net)" ] && return 0
  n=0
  while :; do
    left=0
    for p in /proc/[0-9]*; do
      if [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$id" ]; then
        left=1
        kill -CONT "${p#/proc/}" 2>/dev/null
        kill -9 "${p#/proc/}" 2>/dev/null
      fi
    done
    [ "$left" = 0 ] && return 0
    n=$((n+1)); [ $n -lt 50 ] || return 0
    sleep 0.1
  done
}
trap cleanup EXIT INT TERM
: > "$T/holders"
now() { date +%s.%N; }
since() { echo "$1" | awk -v t0="$2" '{ printf "%.1f", $1 - t0 }'; }

# The test certificate, placed where the crt-list says (the ACME client's job).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=media.example.org \
  -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
cat "$T/cert.pem" "$T/key.pem" > "$T/site.pem"

# The switch: one bridge, and the client on it.
unshare --net sh -c "echo \$\$ > $T/sw.pid; exec sleep 300" &
i=0; until [ -s "$T/sw.pid" ]; do i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.1; done
SW=$(cat "$T/sw.pid"); echo "$SW" >> "$T/holders"
nsenter -t "$SW" -n sh -c 'ip link set lo up && ip link add br0 type bridge && ip link set br0 up && ip addr add 203.0.113.10/24 dev br0 && ip route add 10.0.6.0/24 dev br0'

boot() {
  h=$1 addr=$2 H=$T/$1
  mkdir -p "$H/up" "$H/work" "$H/vup" "$H/vwork" "$H/run"
  unshare --net --mount --propagation private sh -c "
    mount -t overlay overlay -o lowerdir=/etc,upperdir=$H/up,workdir=$H/work /etc
    mount -t overlay overlay -o lowerdir=/var/lib,upperdir=$H/vup,workdir=$H/vwork /var/lib
    mount --bind $H/run /run
    echo \$\$ > $H.pid
    exec sleep 300" &
  i=0; until [ -s "$H.pid" ]; do i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.1; done
  P=$(cat "$H.pid"); echo "$P" >> "$T/holders"
  eval "NS_$h=$P"
  ip link add "ke${K}$h" type veth peer name "ke${K}s$h"
  ip link set "ke${K}$h" netns "$P"
  ip link set "ke${K}s$h" netns "$SW"
  nsenter -t "$SW" -n sh -c "ip link set ke${K}s$h master br0 && ip link set ke${K}s$h up"
  in_h "$h" sh -ec "
    ip link set lo up
    ip link set ke${K}$h name ens18
    ip addr add $addr/24 dev ens18
    ip link set ens18 up
    ip route add 203.0.113.0/24 dev ens18
    nft -f $G/hosts/$h/root/etc/nftables.conf
    rm -rf /etc/haproxy /etc/keepalived /etc/medianest
    cp -R $G/hosts/$h/root/etc/haproxy $G/hosts/$h/root/etc/keepalived $G/hosts/$h/root/etc/medianest /etc/
    for pem in \$(awk '/^\\// { print \$1 }' /etc/haproxy/crt-list.txt); do
      install -D -m 600 $T/site.pem \$pem
    done
    mkdir -p /run/haproxy
    haproxy -D -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid
    keepalived -n -l -D -f /etc/keepalived/keepalived.conf -p /run/keepalived.pid \
      -r /run/keepalived-vrrp.pid -c /run/keepalived-checkers.pid > $H/keepalived.log 2>&1 &"
}
in_h() { h=$1; shift; eval "p=\$NS_$h"; nsenter -t "$p" -m -n -- "$@"; }
holds_vip() { in_h "$1" ip -o addr show dev ens18 | grep -q " $VIP/"; }
# An HTTP answer (any status) from HAProxy through the address, as the client sees it.
answers() { nsenter -t "$SW" -n curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "https://$VIP/" | grep -qv '^000$'; }
haproxy_pid() { cat "$T/$1/run/haproxy.pid"; }
# Waits until `$@` succeeds or the deadline passes; prints the seconds it took or `never`.
wait_s() {
  t0=$(now)
  while :; do
    if "$@"; then since "$(now)" "$t0"; return 0; fi
    [ "$(since "$(now)" "$t0" | cut -d. -f1)" -lt "$DEADLINE" ] || { echo never; return 0; }
    sleep 0.2
  done
}
only_on() { holds_vip "$1" && ! holds_vip "$2"; }

"#;

/// The failover run.
const FAILOVER: &str = r#"
boot edge1 10.0.6.10
boot edge2 10.0.6.11

echo "settled_on_edge1_s=$(wait_s only_on edge1 edge2)"
echo "answers_on_edge1=$(wait_s answers)"

# edge1's HAProxy hangs: its process lives, nothing answers. Meanwhile, who runs the
# check (each run waits its second on the hung HAProxy).
kill -STOP "$(haproxy_pid edge1)"
( i=0; while [ $i -lt 100 ]; do
    u=$(ps -eo user:16=,args= | awk '$2 == "/usr/bin/curl" && /https:\/\/127\.0\.0\.1:443\// { print $1; exit }')
    [ -n "$u" ] && { echo "$u" > "$T/check_user"; exit 0; }
    i=$((i+1)); sleep 0.1
  done ) &
POLLER=$!
echo "process_lives=$(in_h edge1 pgrep -x haproxy > /dev/null && echo yes || echo no)"
echo "moved_to_edge2_s=$(wait_s only_on edge2 edge1)"
echo "answers_on_edge2=$(wait_s answers)"
wait "$POLLER"
echo "check_user=$(cat "$T/check_user" 2>/dev/null)"

# edge1's HAProxy recovers: the address stays where it is.
kill -CONT "$(haproxy_pid edge1)"
t0=$(now); stayed=yes
while [ "$(since "$(now)" "$t0" | cut -d. -f1)" -lt "$HOLD" ]; do
  only_on edge2 edge1 || stayed=no
  sleep 0.5
done
echo "stayed_on_edge2=$stayed"
echo "edge1_state=$(grep -o 'Entering [A-Z]* STATE' "$T/edge1/keepalived.log" | tail -1)"

# edge2's HAProxy stops: the address goes back to edge1.
kill "$(haproxy_pid edge2)"
echo "back_to_edge1_s=$(wait_s only_on edge1 edge2)"

echo "violations=$(cat "$T/edge1/keepalived.log" "$T/edge2/keepalived.log" | grep -c 'SECURITY VIOLATION')"
"#;

#[test]
fn the_edge_address_moves_when_haproxy_stops_answering_and_never_fails_back() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(stdout(&uid).trim(), "0", "the edge failover test needs root (namespaces)");
    let generated = repo_root().join("generated");
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new("timeout")
        .args(["120", "sh", "-c", &format!("{PRELUDE}{FAILOVER}"), "run"])
        .arg(&generated)
        .arg(tmp.path())
        .arg(DEADLINE.as_secs().to_string())
        .arg(HOLD.as_secs().to_string())
        .output()
        .expect("sh runs");
    let out = stdout(&o);
    let logs = ["edge1", "edge2"]
        .map(|h| std::fs::read_to_string(tmp.path().join(h).join("keepalived.log")).unwrap_or_default());
    let report = format!("{out}\nstderr:\n{}\nedge1:\n{}\nedge2:\n{}", stderr(&o), logs[0], logs[1]);
    println!("{out}");
    let value = |key: &str| {
        out.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_string).unwrap_or_default()
    };
    let seconds =
        |key: &str| -> f64 { value(key).parse().unwrap_or_else(|_| panic!("{key} never happened:\n{report}")) };
    seconds("settled_on_edge1_s");
    seconds("answers_on_edge1");
    assert_eq!(value("process_lives"), "yes", "{report}");
    assert!(seconds("moved_to_edge2_s") <= DEADLINE.as_secs_f64(), "{report}");
    seconds("answers_on_edge2");
    assert_eq!(value("check_user"), "nobody", "{report}");
    assert_eq!(value("stayed_on_edge2"), "yes", "a recovered edge1 took the address back:\n{report}");
    assert_eq!(value("edge1_state"), "Entering BACKUP STATE", "{report}");
    assert!(seconds("back_to_edge1_s") <= DEADLINE.as_secs_f64(), "{report}");
    assert_eq!(value("violations"), "0", "{report}");
    assert!(o.status.success(), "{report}");
}

/// The ACME run (after [`PRELUDE`]; `$1` is the generated/ of the site pointed at Pebble).
const ACME: &str = r#"
# Pebble: its own TLS certificate, its config, and a resolver that knows the public name.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=pebble \
  -addext subjectAltName=IP:203.0.113.10 -keyout "$T/pebble-key.pem" -out "$T/pebble-cert.pem" 2>/dev/null
cat > "$T/pebble.json" <<JSON
{"pebble": {"listenAddress": "203.0.113.10:14000", "managementListenAddress": "203.0.113.10:15000",
  "certificate": "$T/pebble-cert.pem", "privateKey": "$T/pebble-key.pem",
  "httpPort": 80, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
printf '127.0.0.1 localhost\n10.0.6.5 media.example.org\n' > "$T/hosts"
nsenter -t "$SW" -n unshare --mount --propagation private sh -c \
  "mount --bind $T/hosts /etc/hosts && exec env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config $T/pebble.json" \
  > "$T/pebble.log" 2>&1 &
# systemctl, as the ACME script calls it: reload HAProxy in the edge's namespaces.
cat > "$T/systemctl" <<'SH'
#!/bin/sh
[ "$1 $2" = "reload haproxy.service" ] || exit 1
echo reload >> /run/reloads
haproxy -D -f /etc/haproxy/haproxy.cfg -p /run/haproxy.pid -sf "$(cat /run/haproxy.pid)"
SH
chmod +x "$T/systemctl"

boot edge1 10.0.6.10
boot edge2 10.0.6.11
i=0; until holds_vip edge1; do i=$((i+1)); [ $i -lt 100 ] || { echo "edge1 never took $VIP" >&2; exit 1; }; sleep 0.2; done
i=0; until nsenter -t "$SW" -n curl -sk -o /dev/null https://203.0.113.10:14000/dir; do
  i=$((i+1)); [ $i -lt 100 ] || { echo "pebble never answered" >&2; cat "$T/pebble.log" >&2; exit 1; }; sleep 0.2; done

acme() {
  in_h "$1" env LEGO_CA_CERTIFICATES="$T/pebble-cert.pem" MEDIANEST_SYSTEMCTL="$T/systemctl" \
    timeout 120 sh /etc/medianest/acme/media.sh > "$T/$1/acme.log" 2>&1
}
# The issuer of the certificate an edge serves for the public name, as a client sees it.
issuer() {
  nsenter -t "$SW" -n sh -c "openssl s_client -connect $1:443 -servername media.example.org < /dev/null 2>/dev/null | openssl x509 -noout -issuer"
}
reloads() { wc -l < "$T/$1/run/reloads" 2>/dev/null || echo 0; }

echo "edge2_before=$(issuer 10.0.6.11)"
rc=0; acme edge2 || rc=$?
echo "edge2_run=$rc"
echo "edge2_reloads=$(reloads edge2)"
sleep 1
echo "edge2_after=$(issuer 10.0.6.11)"
echo "pem_mode=$(stat -c %a "$T/edge2/up/haproxy/certs/media.example.org.pem")"
rc=0; acme edge1 || rc=$?
echo "edge1_run=$rc"
sleep 1
echo "vip_after=$(issuer 10.0.6.5)"
rc=0; acme edge2 || rc=$?
echo "edge2_again=$rc"
echo "edge2_reloads_again=$(reloads edge2)"
echo "edge2_installed_again=$(grep -c 'installed a new certificate' "$T/edge2/acme.log")"
"#;

#[test]
fn each_edge_obtains_its_certificate_by_acme_whichever_holds_the_address() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(stdout(&uid).trim(), "0", "the ACME test needs root (namespaces)");
    // The reference site, its ACME server the test's Pebble.
    let repo = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("site"), &repo.path().join("site"));
    let certs = repo.path().join("site/certificates.toml");
    let text = std::fs::read_to_string(&certs).unwrap();
    std::fs::write(
        &certs,
        text.replace("acme = true\n", "acme = true\nacme_directory = \"https://203.0.113.10:14000/dir\"\n"),
    )
    .unwrap();
    let out = medianest(repo.path(), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new("timeout")
        .args(["300", "sh", "-c", &format!("{PRELUDE}{ACME}"), "run"])
        .arg(repo.path().join("generated"))
        .arg(tmp.path())
        .args(["20", "0"])
        .output()
        .expect("sh runs");
    let out = stdout(&o);
    let log = |f: &str| std::fs::read_to_string(tmp.path().join(f)).unwrap_or_default();
    let report = format!(
        "{out}\nstderr:\n{}\nedge2 acme:\n{}\nedge1 acme:\n{}\npebble:\n{}",
        stderr(&o),
        log("edge2/acme.log"),
        log("edge1/acme.log"),
        log("pebble.log")
    );
    println!("{out}");
    let value = |key: &str| {
        out.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_string).unwrap_or_default()
    };
    assert!(
        value("edge2_before").contains("medianest placeholder") || value("edge2_before").contains("media.example.org"),
        "{report}"
    );
    assert_eq!(value("edge2_run"), "0", "{report}");
    assert_eq!(value("edge2_reloads"), "1", "{report}");
    assert!(value("edge2_after").contains("Pebble"), "edge2 does not serve the ACME certificate:\n{report}");
    assert_eq!(value("pem_mode"), "600", "{report}");
    assert_eq!(value("edge1_run"), "0", "{report}");
    assert!(value("vip_after").contains("Pebble"), "{report}");
    assert_eq!(value("edge2_again"), "0", "{report}");
    assert_eq!(value("edge2_reloads_again"), "1", "a renewal that was not due reloaded HAProxy:\n{report}");
    assert_eq!(value("edge2_installed_again"), "0", "{report}");
    assert!(o.status.success(), "{report}");
}

/// The peers run (after [`PRELUDE`]).
const PEERS: &str = r##"
boot edge1 10.0.6.10
boot edge2 10.0.6.11
i=0; until holds_vip edge1; do i=$((i+1)); [ $i -lt 100 ] || { echo "edge1 never took $VIP" >&2; exit 1; }; sleep 0.2; done
# A rate-limited route, through the address, as the client on the internet.
hit() { nsenter -t "$SW" -n curl -sk -o /dev/null --max-time 3 --resolve "media.example.org:443:$VIP" https://media.example.org/api/auth/login; }
# The client's entry in any stick table of edge $1, from its stats socket.
entry() {
  in_h "$1" python3 - <<'PY'
import socket
def ask(cmd):
    s = socket.socket(socket.AF_UNIX)
    s.connect("/run/haproxy/admin.sock")
    s.sendall(cmd.encode() + b"\n")
    return s.makefile().read()
for line in ask("show table").splitlines():
    if line.startswith("# table: "):
        name = line.split()[2].rstrip(",")
        for e in ask("show table " + name).splitlines():
            if "key=203.0.113.10" in e and "http_req_rate" in e:
                print(name, e.split("http_req_rate(60000)=")[1].split()[0])
PY
}
sleep 2
for i in 1 2 3; do hit; done
i=0; until [ -n "$(entry edge2)" ]; do i=$((i+1)); [ $i -lt 50 ] || break; sleep 0.1; done
echo "edge1_counts=$(entry edge1)"
echo "edge2_counts=$(entry edge2)"
# edge1's HAProxy stops: edge2 takes the address and goes on from the shared count.
kill "$(haproxy_pid edge1)"
i=0; until only_on edge2 edge1; do i=$((i+1)); [ $i -lt 100 ] || { echo "edge2 never took $VIP" >&2; exit 1; }; sleep 0.2; done
hit
echo "edge2_after_failover=$(entry edge2)"
"##;

#[test]
fn the_edges_share_their_rate_limit_counts() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(stdout(&uid).trim(), "0", "the peers test needs root (namespaces)");
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new("timeout")
        .args(["120", "sh", "-c", &format!("{PRELUDE}{PEERS}"), "run"])
        .arg(repo_root().join("generated"))
        .arg(tmp.path())
        .args(["20", "0"])
        .output()
        .expect("sh runs");
    let out = stdout(&o);
    let report = format!("{out}\nstderr:\n{}", stderr(&o));
    println!("{out}");
    let value = |key: &str| {
        out.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_string).unwrap_or_default()
    };
    let count = |key: &str| -> u32 {
        value(key).split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{key}:\n{report}"))
    };
    assert_eq!(count("edge1_counts"), 3, "{report}");
    assert_eq!(count("edge2_counts"), 3, "edge2 did not learn edge1's counts:\n{report}");
    assert_eq!(value("edge1_counts"), value("edge2_counts"), "{report}");
    assert_eq!(count("edge2_after_failover"), 4, "{report}");
    assert!(o.status.success(), "{report}");
}
