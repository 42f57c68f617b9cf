//! The dns family against the real tools.
//!
//! - `named-checkzone -k fail` accepts every generated zone (and refuses a broken one).
//! - The agent's `pdns` validator (`pdnsutil check-all-zones` on a staged tree) accepts
//!   the generated files and refuses a broken zone.
//! - PowerDNS runs from the generated files, unchanged, at their real paths: in a private
//!   mount and network namespace the generated `/etc/powerdns` is bind-mounted over the
//!   host's, a scratch directory over `/var/lib/powerdns`, and dns1's address (plus the
//!   Prometheus host's, as an API client) is put on the namespace's loopback. The
//!   drop-in's `ExecStartPre` lines run as written (twice: they must be idempotent),
//!   which creates the DNSSEC database and signs every zone. Test-only settings, all on
//!   the command line: `--guardian=no --daemon=no --disable-syslog --write-pid=no` (as
//!   Debian's unit passes them) and `--socket-dir=<tmp>`. `dig` then asks for host,
//!   interface, service and reverse names, with RRSIGs, and `curl` checks the API's key
//!   (from the secrets directory) and its allow-list (from the flows).
//! - Serials: equal across two builds, changed in exactly the zones a host address
//!   change touches.
//!
//! Needs root, `unshare`, `ip`, `named-checkzone`, `pdnsutil`, `pdns_server`, `dig`
//! and `curl` (scripts/test.sh installs them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use medianest::agent::actions;
use medianest::artifact::Validator;

use crate::support::*;

#[allow(dead_code)]
fn sh(script: &str) -> Output {
    Command::new("sh").arg("-c").arg(script).output().expect("sh runs")
}

fn dns1() -> PathBuf {
    repo_root().join("generated/hosts/dns1/root")
}

/// The generated zone files: `(zone, path)`.
fn zone_files(root: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(root.join("etc/powerdns/zones"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().trim_end_matches(".zone").to_string(), p))
        .collect();
    v.sort();
    v
}

/// `(records, serial)` of a zone file.
fn serial_of(text: &str) -> u32 {
    let soa = text.lines().find(|l| l.contains(" SOA ")).expect("a SOA line");
    soa.split("( ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn every_zone_passes_named_checkzone_and_a_broken_one_fails() {
    let zones = zone_files(&dns1());
    // The forward zone and one reverse zone per zone network of the reference site.
    assert_eq!(zones.len(), 7, "{zones:?}");
    let mut records = 0;
    for (zone, file) in &zones {
        let o = Command::new("named-checkzone").args(["-k", "fail", zone]).arg(file).output().unwrap();
        assert!(o.status.success(), "named-checkzone {zone}: {}{}", stdout(&o), stderr(&o));
        records += std::fs::read_to_string(file).unwrap().lines().filter(|l| l.contains(" IN ")).count();
    }
    // The checks can fail: a bad address, and a name that is no host name.
    let dir = tempfile::tempdir().unwrap();
    let forward = std::fs::read_to_string(&zones.iter().find(|z| z.0 == "medianest.lan").unwrap().1).unwrap();
    for (what, text) in [
        ("a bad address", forward.replacen("IN A 10.0.1.10", "IN A 10.0.1.300", 1)),
        ("an underscore", forward.replacen("\ndns1 IN A", "\ndns_1 IN A", 1)),
    ] {
        assert_ne!(text, forward);
        let f = dir.path().join("broken.zone");
        std::fs::write(&f, text).unwrap();
        let o = Command::new("named-checkzone").args(["-k", "fail", "medianest.lan"]).arg(&f).output().unwrap();
        assert!(!o.status.success(), "named-checkzone accepted {what}");
    }
    println!("named-checkzone -k fail: {} zones ({records} records) accepted, 2 broken ones refused", zones.len());
}

#[test]
fn the_agent_validator_runs_pdnsutil_on_the_staged_tree() {
    let staged = tempfile::tempdir().unwrap();
    copy_tree(&dns1(), staged.path());
    let o = actions::validator(Validator::Pdns, staged.path()).output().unwrap();
    assert!(o.status.success(), "pdns validator: {}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("Checked 7 zones, 0 had errors"), "{}", stdout(&o));
    // A CNAME beside other data at one name is refused by PowerDNS's own check.
    let z = staged.path().join("etc/powerdns/zones/medianest.lan.zone");
    let text = std::fs::read_to_string(&z).unwrap() + "dns1 IN CNAME mon1.medianest.lan.\n";
    std::fs::write(&z, text).unwrap();
    let o = actions::validator(Validator::Pdns, staged.path()).output().unwrap();
    assert!(!o.status.success(), "the validator accepted a CNAME beside an A record: {}", stdout(&o));
    // The host's /etc/powerdns was never touched: the mount was private.
    assert!(!Path::new("/etc/powerdns/zones/medianest.lan.zone").exists());
    println!("pdns validator: 7 staged zones accepted, a broken one refused");
}

#[test]
fn powerdns_serves_the_generated_zones_with_dnssec() {
    let root = dns1();
    let t = tempfile::tempdir().unwrap();
    let etc = t.path().join("etc");
    copy_tree(&root.join("etc/powerdns"), &etc);
    std::fs::create_dir_all(t.path().join("var")).unwrap();
    let dropin = root.join("etc/systemd/system/pdns.service.d/medianest.conf");
    let render = root.join("etc/medianest/powerdns/render-secrets.sh");
    let script = format!(
        r#"set -e
T='{t}'
mount --bind "$T/etc" /etc/powerdns
mount --bind "$T/var" /var/lib/powerdns
ip link set lo up
ip addr add 10.0.1.10/32 dev lo
ip addr add 10.0.5.10/32 dev lo
# A private /run: the API key as the agent delivers it (with the newline an editor
# adds), which the drop-in's first line renders for the include-dir.
mount -t tmpfs medianest-test /run
mkdir -p /run/medianest/secrets/powerdns
printf 'test-key-123\n' > /run/medianest/secrets/powerdns/powerdns_api_key
for round in 1 2; do
  sed -n 's/^ExecStartPre=+//p' '{dropin}' | sed 's|/etc/medianest/powerdns/render-secrets.sh|{render}|' \
    | while read -r line; do sh -c "$line" >> "$T/prestart.$round.log" 2>&1; done
done
echo "== rendered"; stat -c '%a %U:%G' /run/medianest/powerdns/api-key.conf; cat /run/medianest/powerdns/api-key.conf
pdns_server --guardian=no --daemon=no --disable-syslog --write-pid=no --socket-dir="$T" > "$T/pdns.log" 2>&1 &
pid=$!
for i in $(seq 50); do dig +short +time=1 +tries=1 @10.0.1.10 dns1.medianest.lan A > /dev/null 2>&1 && break; sleep 0.1; done
q() {{ echo "== $*"; dig +norec +time=2 +tries=1 @10.0.1.10 "$@"; }}
q dns1.medianest.lan A +short
q fw1-dmz.medianest.lan A +short
q powerdns.medianest.lan A +short
q haproxy.medianest.lan A +short
q -x 10.0.1.10 +short
q -x 10.0.6.1 +short
q dns1.medianest.lan A +dnssec +noall +answer
q -x 10.0.1.10 +dnssec +noall +answer
q medianest.lan DNSKEY +short
q medianest.lan SOA +short
api() {{ curl -s -o /dev/null -w '%{{http_code}}\n' "$@" http://10.0.1.10:8081/api/v1/servers/localhost/zones || true; }}
echo "== api from prometheus with key"; api --interface 10.0.5.10 -H 'X-API-Key: test-key-123'
echo "== api from prometheus without key"; api --interface 10.0.5.10
echo "== api from elsewhere with key"; api --interface 10.0.1.10 -H 'X-API-Key: test-key-123'
kill $pid
wait $pid || true
"#,
        t = t.path().display(),
        dropin = dropin.display(),
        render = render.display()
    );
    let o = Command::new("unshare").args(["--mount", "--net", "sh", "-c", &script]).output().unwrap();
    let out = stdout(&o);
    let log = std::fs::read_to_string(t.path().join("pdns.log")).unwrap_or_default();
    let pre = std::fs::read_to_string(t.path().join("prestart.1.log")).unwrap_or_default();
    assert!(o.status.success(), "run ({:?}): {out}{}\n{pre}\n{log}", o.status, stderr(&o));
    let mut answers: BTreeMap<String, String> = BTreeMap::new();
    for part in out.split("== ").skip(1) {
        let (q, a) = part.split_once('\n').unwrap();
        answers.insert(q.trim().to_string(), a.trim().to_string());
    }
    let a = |q: &str| answers.get(q).cloned().unwrap_or_else(|| panic!("no answer to {q}: {out}\n{log}"));
    // The key from the delivered secret, one line, readable by PowerDNS only.
    assert_eq!(a("rendered"), "640 root:pdns\napi-key=test-key-123");
    assert_eq!(a("dns1.medianest.lan A +short"), "10.0.1.10");
    assert_eq!(a("fw1-dmz.medianest.lan A +short"), "10.0.6.1");
    assert_eq!(a("powerdns.medianest.lan A +short"), "dns1.medianest.lan.\n10.0.1.10");
    assert_eq!(a("haproxy.medianest.lan A +short").lines().count(), 2);
    assert_eq!(a("-x 10.0.1.10 +short"), "dns1.medianest.lan.");
    assert_eq!(a("-x 10.0.6.1 +short"), "fw1-dmz.medianest.lan.");
    let signed = |q: &str, rtype: &str| {
        let x = a(q);
        assert!(x.lines().any(|l| l.contains("\tRRSIG\t") && l.contains(&format!("RRSIG\t{rtype} 13 "))), "{q}: {x}");
    };
    signed("dns1.medianest.lan A +dnssec +noall +answer", "A");
    signed("-x 10.0.1.10 +dnssec +noall +answer", "PTR");
    assert!(a("medianest.lan DNSKEY +short").starts_with("257 3 13 "), "{}", a("medianest.lan DNSKEY +short"));
    let forward = std::fs::read_to_string(root.join("etc/powerdns/zones/medianest.lan.zone")).unwrap();
    let soa = a("medianest.lan SOA +short");
    assert!(soa.contains(&format!(" {} ", serial_of(&forward))), "{soa}");
    // Secure-zone ran twice: the second round added nothing.
    let again = std::fs::read_to_string(t.path().join("prestart.2.log")).unwrap_or_default();
    assert!(!again.contains("Adding"), "{again}");
    assert_eq!(a("api from prometheus with key"), "200");
    assert_eq!(a("api from prometheus without key"), "401");
    // PowerDNS closes the connection of a source outside webserver-allow-from (000).
    assert_eq!(a("api from elsewhere with key"), "000");
    println!(
        "pdns_server: 6 lookups answered, RRSIGs on A and PTR, API 200 with the key from the flow's source, \
         {} without the key, {} (closed) from a source no flow allows",
        a("api from prometheus without key"),
        a("api from elsewhere with key")
    );
}

#[test]
fn serials_follow_the_zone_content() {
    let build = |edit: Option<(&str, &str)>| -> BTreeMap<String, u32> {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&repo_root().join("site"), &dir.path().join("site"));
        if let Some((from, to)) = edit {
            let f = dir.path().join("site/hosts/infrastructure.toml");
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(text.contains(from));
            std::fs::write(&f, text.replace(from, to)).unwrap();
        }
        let o = medianest(dir.path(), &["build"]);
        assert!(o.status.success(), "{}", stderr(&o));
        zone_files(&dir.path().join("generated/hosts/dns1/root"))
            .into_iter()
            .map(|(z, f)| (z, serial_of(&std::fs::read_to_string(f).unwrap())))
            .collect()
    };
    let a = build(None);
    let b = build(None);
    assert_eq!(a, b, "two builds of one site give the same serials");
    // pve2 moves from 10.0.1.3 to 10.0.1.4: its A record and its PTR change.
    let c = build(Some(("address = \"10.0.1.3\"", "address = \"10.0.1.4\"")));
    let changed: Vec<&String> = a.keys().filter(|z| a[*z] != c[*z]).collect();
    assert_eq!(changed, ["1.0.10.in-addr.arpa", "medianest.lan"]);
    println!("serials: {} zones equal across two builds; an address change changed exactly {changed:?}", a.len());
}
