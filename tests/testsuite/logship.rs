//! The logship family against Debian 12's rsyslog (8.2302).
//!
//! - Every host's `/etc/rsyslog.d/60-medianest.conf` of the reference site passes the
//!   agent's own validator (`rsyslogd -N1`, from the fixed vocabulary); a misspelt
//!   module fails it.
//! - The lifecycle policies on the logging host are JSON of the `PUT _ilm/policy` body,
//!   deleting operational logs after 90 days and security logs after a year.
//! - For real, in a private network and mount namespace: rsyslogd runs the generated
//!   file of `fixtures/monitoring-loopback`'s web1 (behind a test socket in place of the
//!   journal); a TCP listener stands in for Logstash. An `auth` message arrives marked
//!   `class="security"`, a `daemon` one `class="operational"`, both as octet-counted
//!   RFC 5424; a message sent while the receiver is down arrives once it is back.

use std::process::Command;

use medianest::artifact::Validator;
use serde_json::Value;

use crate::support::*;

#[test]
fn every_host_config_passes_rsyslogs_check_and_a_broken_one_fails() {
    let hosts = repo_root().join("generated/hosts");
    let mut checked = 0;
    for e in std::fs::read_dir(&hosts).unwrap() {
        let root = e.unwrap().path().join("root");
        if !root.join("etc/rsyslog.d/60-medianest.conf").exists() {
            continue;
        }
        let o = medianest::agent::actions::validator(Validator::Rsyslog, &root).output().unwrap();
        assert!(o.status.success(), "{}: {}", root.display(), stderr(&o));
        checked += 1;
    }
    assert_eq!(checked, 13, "every Linux host of the reference site ships its logs");
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("etc/rsyslog.d/60-medianest.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    let text = std::fs::read_to_string(hosts.join("app1/root/etc/rsyslog.d/60-medianest.conf")).unwrap();
    std::fs::write(&conf, text.replace("type=\"omfwd\"", "type=\"omfwdd\"")).unwrap();
    let o = medianest::agent::actions::validator(Validator::Rsyslog, d.path()).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("omfwdd"), "{}", stderr(&o));
}

#[test]
fn the_logging_host_keeps_operational_logs_90_days_and_security_logs_a_year() {
    let dir = repo_root().join("generated/hosts/log1/root/etc/medianest/elasticsearch/ilm");
    for (class, keep) in [("operational", "90d"), ("security", "365d")] {
        let text = std::fs::read_to_string(dir.join(format!("medianest-{class}.json"))).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let phases = v["policy"]["phases"].as_object().unwrap();
        assert_eq!(phases.keys().collect::<Vec<_>>(), ["hot", "delete"], "{class}");
        assert_eq!(v["policy"]["phases"]["delete"]["min_age"], keep, "{class}");
        assert!(v["policy"]["phases"]["delete"]["actions"]["delete"].is_object());
        assert_eq!(v["policy"]["_meta"]["managed_by"], "medianest");
        assert_eq!(v.as_object().unwrap().len(), 1, "only `policy`, as the API takes it");
    }
}

/// The script (`$1`: the loopback site's generated/, `$2`: scratch). Prints `key=value`.
const E2E: &str = r#"
G=$1 T=$2
ip link set lo up
mkdir -p "$T/work" "$T/got"
# What Debian's rsyslog.conf provides around the include: a work directory, and the
# local socket journald forwards to (here a test socket).
cat > "$T/rsyslog.conf" <<EOF
global(workDirectory="$T/work")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="$T/log.sock" CreatePath="on")
include(file="$G/hosts/web1/root/etc/rsyslog.d/60-medianest.conf")
EOF
listen() {
  python3 - "$T/got/$1" <<'PY' &
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.2', 15044)); s.listen(4)
out = open(sys.argv[1], 'ab', buffering=0); lock = threading.Lock()
def serve(c):
    while True:
        b = c.recv(65536)
        if not b: return
        with lock: out.write(b)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
  LPID=$!
}
listen first
PIDS="$LPID"
trap 'kill $PIDS 2>/dev/null || true' EXIT
sleep 0.5
rsyslogd -n -f "$T/rsyslog.conf" -i "$T/rsyslog.pid" > "$T/rsyslog.out" 2>&1 &
PIDS="$PIDS $!"
i=0; until [ -S "$T/log.sock" ]; do i=$((i+1)); [ $i -lt 100 ] || { cat "$T/rsyslog.out" >&2; exit 1; }; sleep 0.1; done
logger -u "$T/log.sock" -t sshd -p auth.info "Accepted publickey for ops from 10.0.0.50"
logger -u "$T/log.sock" -t nginx -p daemon.info "GET /health 200"
logger -u "$T/log.sock" -t medianest -p daemon.notice "applied 3 files"
i=0; until [ "$(grep -c 'medianest@32473' "$T/got/first" 2>/dev/null)" -ge 1 ] && grep -q 'applied 3 files' "$T/got/first" && grep -q 'GET /health' "$T/got/first"; do
  i=$((i+1)); [ $i -lt 100 ] || { cat "$T/rsyslog.out" "$T/got/first" >&2; exit 1; }; sleep 0.1; done
tr '\n' '|' < "$T/got/first" | sed 's/^/first=/'; echo
# The receiver goes away; a message waits in the queue and arrives when it is back.
kill $LPID; wait $LPID 2>/dev/null || true
logger -u "$T/log.sock" -t nginx -p daemon.info "while the receiver was down"
sleep 2
logger -u "$T/log.sock" -t nginx -p daemon.info "nudge after the outage"
listen second
PIDS="$PIDS $LPID"
i=0; until grep -q 'while the receiver was down' "$T/got/second" 2>/dev/null; do
  i=$((i+1)); [ $i -lt 300 ] || { cat "$T/rsyslog.out" >&2; exit 1; }; sleep 0.1; done
echo "resent=yes"
"#;

#[test]
fn rsyslog_ships_classified_messages_and_keeps_them_while_the_receiver_is_down() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&suite("fixtures/monitoring-loopback/site"), &dir.path().join("site"));
    let o = medianest(dir.path(), &["build"]);
    assert!(o.status.success(), "the loopback site builds: {}", stderr(&o));
    let scratch = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let o = Command::new("timeout")
        .args(["120", "unshare", "--net", "--mount", "--propagation", "private", "sh", "-eu", "-c", E2E, "sh"])
        .arg(dir.path().join("generated"))
        .arg(scratch.path())
        .output()
        .expect("unshare runs");
    let out = stdout(&o);
    assert!(o.status.success(), "exit {:?}\n{out}\n{}", o.status.code(), stderr(&o));
    let first = out.lines().find_map(|l| l.strip_prefix("first=")).unwrap();
    let frames: Vec<&str> = first.split('|').filter(|f| !f.is_empty()).collect();
    let find =
        |needle: &str| *frames.iter().find(|f| f.contains(needle)).unwrap_or_else(|| panic!("{needle}: {first}"));
    for (needle, class) in
        [("Accepted publickey", "security"), ("GET /health", "operational"), ("applied 3 files", "security")]
    {
        let f = find(needle);
        assert!(f.contains(&format!("[medianest@32473 class=\"{class}\" host=\"web1\"]")), "{needle} is {class}: {f}");
        // Octet-counted: the frame starts with the length of what follows the space.
        let (len, rest) = f.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len() + 1, "octet count of {f:?} (its newline included)");
        assert!(rest.starts_with('<') && rest.contains(">1 "), "RFC 5424 header: {rest}");
    }
    assert!(out.contains("resent=yes"), "{out}");
    eprintln!(
        "rsyslog loopback run: {} frames classified, queued message delivered, {:.1} s",
        frames.len(),
        start.elapsed().as_secs_f64()
    );
}

/// HAProxy's logs on the reference site's edge1 (`$1` generated/, `$2` scratch): rsyslog
/// runs the generated files around Debian's own `49-haproxy.conf` (from the haproxy
/// package, in the order rsyslog includes them), in a private network and mount
/// namespace with scratch `/var/lib/haproxy` and `/var/log`; the receiver's address is
/// on loopback.
const HAPROXY: &str = r##"
G=$1 T=$2
ip link set lo up
ip addr add 10.0.5.11/32 dev lo
mount -t tmpfs scratch /var/lib/haproxy
mount -t tmpfs scratch /var/log
mkdir -p /var/lib/haproxy/dev "$T/work"
cat > "$T/rsyslog.conf" <<CONF
global(workDirectory="$T/work")
module(load="imuxsock" SysSock.Use="off")
include(file="$G/hosts/edge1/root/etc/rsyslog.d/48-medianest-haproxy.conf")
include(file="/etc/rsyslog.d/49-haproxy.conf")
include(file="$G/hosts/edge1/root/etc/rsyslog.d/60-medianest.conf")
CONF
python3 - "$T/got" <<'PY' &
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('10.0.5.11', 5044)); s.listen(4)
out = open(sys.argv[1], 'ab', buffering=0)
while True:
    c, _ = s.accept()
    while True:
        b = c.recv(65536)
        if not b: break
        out.write(b)
PY
L=$!
R=
trap 'kill $L $R 2>/dev/null || true' EXIT
sleep 0.5
rsyslogd -n -f "$T/rsyslog.conf" -i "$T/rsyslog.pid" > "$T/rsyslog.out" 2>&1 &
R=$!
i=0; until [ -S /var/lib/haproxy/dev/log ]; do i=$((i+1)); [ $i -lt 100 ] || { cat "$T/rsyslog.out" >&2; exit 1; }; sleep 0.1; done
logger -u /var/lib/haproxy/dev/log -t haproxy -p local0.info '203.0.113.10:40000 [29/Nov/2026:06:00:00.000] https~ be_medianest-backend/app1 0/0/1/2/3 200 512 - - ---- 1/1/0/0/0 0/0 "GET /api/health HTTP/1.1"'
i=0; until grep -q 'GET /api/health' "$T/got" 2>/dev/null && grep -q 'GET /api/health' /var/log/haproxy.log 2>/dev/null; do
  i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
echo "shipped=$(grep -c 'GET /api/health' "$T/got" 2>/dev/null)"
echo "class=$(grep -o 'class="[a-z]*"' "$T/got" | head -1)"
echo "local=$(grep -c 'GET /api/health' /var/log/haproxy.log 2>/dev/null)"
"##;

#[test]
fn haproxy_logs_land_in_their_file_and_are_shipped() {
    let scratch = tempfile::tempdir().unwrap();
    assert!(
        std::path::Path::new("/etc/rsyslog.d/49-haproxy.conf").exists(),
        "Debian's haproxy package's rsyslog file is missing (scripts/test.sh installs haproxy and rsyslog)"
    );
    let o = Command::new("timeout")
        .args(["60", "unshare", "--net", "--mount", "--propagation", "private", "sh", "-eu", "-c", HAPROXY, "sh"])
        .arg(repo_root().join("generated"))
        .arg(scratch.path())
        .output()
        .expect("unshare runs");
    let out = stdout(&o);
    let report = format!("exit {:?}\n{out}\n{}", o.status.code(), stderr(&o));
    assert!(o.status.success(), "{report}");
    assert!(out.contains("shipped=1\n"), "HAProxy's log line was not shipped (once):\n{report}");
    assert!(out.contains("class=class=\"operational\""), "{report}");
    assert!(out.contains("local=1\n"), "HAProxy's log line is not in /var/log/haproxy.log (once):\n{report}");
}
