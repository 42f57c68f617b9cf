//! pfSense `config.xml`: no pfSense or pf runs on Linux, so the generated file is
//! checked by structure and by meaning.
//!
//! - **Structure**: `xmllint --relaxng` against `pfsense/pfsense.rng` (grown from the
//!   reference subset grammar to every section the family writes); broken copies (a VLAN
//!   tag out of range, a rule without tracker, an alias name pfSense refuses) must fail it.
//! - **Meaning**: the file is parsed back (roxmltree) and evaluated the way pfSense's
//!   `filter.inc` generates pf rules: per source interface, `quick` rules in config order
//!   (first match wins), pfSense's anti-lockout rule first on the LAN, aliases expanded,
//!   WAN port forwards translated before filtering, default deny. For every (source host,
//!   destination host, port) of the reference site whose hosts share no zone (or whose
//!   destination is the firewall), and from the internet to every host, a packet passes
//!   iff the flow compiler allows it, and no guard-rail pair ever passes.
//! - The operator's `apply-config.sh` passes shellcheck.
//!
//! Needs `xmllint` (libxml2-utils) and `shellcheck` (scripts/test.sh installs them).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use ipnet::IpNet;
use medianest::families::keepalived;
use medianest::model::values::{PortSpec, Proto};
use medianest::model::{HostId, HostKind, Site};
use medianest::ops::{Paths, compile};

use crate::support::*;

const SCHEMA: &str = "pfsense/pfsense.rng";

/// The reference site, compiled, with its firewall configs (path → text).
fn reference() -> (Site, BTreeMap<String, String>) {
    let c = compile(&Paths::under(&repo_root()));
    assert!(!c.failed(), "{}", c.diags.render_plain(&c.sources));
    let configs = c
        .artifacts
        .iter()
        .filter(|(p, _)| p.starts_with("firewall/") && p.ends_with("/config.xml"))
        .map(|(p, a)| (p.clone(), String::from_utf8(a.bytes.clone()).unwrap()))
        .collect();
    (c.site, configs)
}

fn xmllint(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.xml");
    std::fs::write(&f, text).unwrap();
    let o = Command::new("xmllint")
        .arg("--noout")
        .arg("--relaxng")
        .arg(suite(SCHEMA))
        .arg(&f)
        .output()
        .expect("xmllint is installed by scripts/test.sh (libxml2-utils)");
    (o.status.code(), format!("{}{}", stdout(&o), stderr(&o)))
}

#[test]
fn config_xml_is_valid_against_the_schema_and_a_broken_one_is_not() {
    let (_, configs) = reference();
    assert_eq!(configs.keys().collect::<Vec<_>>(), ["firewall/fw1/config.xml"]);
    let xml = &configs["firewall/fw1/config.xml"];
    let (code, out) = xmllint(xml);
    assert_eq!(code, Some(0), "{out}");
    // The committed copy is the one checked.
    let committed = std::fs::read_to_string(repo_root().join("generated/firewall/fw1/config.xml")).unwrap();
    assert_eq!(&committed, xml, "generated/ is stale: run `cargo run -- build`");
    let broken = [
        ("a VLAN tag out of range", xml.replacen("<tag>20</tag>", "<tag>5000</tag>", 1)),
        ("a rule without tracker", {
            let start = xml.find("<tracker>").unwrap();
            let end = xml[start..].find('\n').unwrap() + start;
            format!("{}{}", &xml[..start], &xml[end..])
        }),
        (
            "an alias name pfSense refuses",
            xml.replacen("<name>net_management</name>", "<name>net-management</name>", 1),
        ),
        (
            "an alias name of 32 characters",
            xml.replacen("<name>net_management</name>", &format!("<name>{}</name>", "a".repeat(32)), 1),
        ),
        ("an unknown rule type", xml.replacen("<type>pass</type>", "<type>allow</type>", 1)),
        ("a rule on no interface key", xml.replacen("<interface>lan</interface>", "<interface>igb1</interface>", 1)),
        ("a port out of range", xml.replacen("<port>9000</port>", "<port>90000</port>", 1)),
        ("a missing filter", {
            let a = xml.find("<filter>").unwrap();
            let b = xml.find("</filter>").unwrap() + "</filter>".len();
            format!("{}{}", &xml[..a], &xml[b..])
        }),
    ];
    for (what, text) in &broken {
        assert_ne!(text, xml, "{what}: the edit did not apply");
        let (code, out) = xmllint(text);
        assert_eq!(code, Some(3), "{what} passed the schema:\n{out}");
    }
    println!("pfSense schema: config.xml valid; {} broken copies rejected", broken.len());
}

#[test]
fn apply_script_passes_shellcheck() {
    let script = repo_root().join("generated/firewall/fw1/apply-config.sh");
    let o = Command::new("shellcheck")
        .args(["--shell=sh", "--enable=check-set-e-suppressed"])
        .arg(&script)
        .output()
        .expect("shellcheck is installed by scripts/test.sh");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o111, 0o111);
    let text = std::fs::read_to_string(&script).unwrap();
    for needle in ["/conf/config.xml", "rm -f /tmp/config.cache", "/etc/rc.reload_all", "NOT TESTED ON PFSENSE"] {
        assert!(text.contains(needle), "{needle} missing from apply-config.sh");
    }
}

// ---------------------------------------------------------------------------------
// pfSense's filter semantics, on the parsed config.

/// A rule's source or destination.
#[derive(Debug, Clone, Default)]
struct End {
    any: bool,
    network: Option<String>,
    address: Option<String>,
    port: Option<String>,
    not: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    pass: bool,
    interface: String,
    /// `inet`, `inet6` or `inet46`: the address families the rule matches.
    ipprotocol: String,
    protocol: Option<String>,
    source: End,
    destination: End,
    tracker: u64,
}

#[derive(Debug)]
struct Nat {
    protocol: String,
    port: u16,
    target: IpAddr,
    local_port: u16,
}

/// The WAN address pfSense would have (DHCP here): TEST-NET-3.
const WAN_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));
/// An internet client: TEST-NET-2.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

struct Pf {
    /// Interface key → (address, its network).
    ifaces: BTreeMap<String, (IpAddr, IpNet)>,
    aliases: BTreeMap<String, (String, Vec<String>)>,
    rules: Vec<Rule>,
    nat: Vec<Nat>,
    antilockout: Option<u16>,
}

fn text_of(n: roxmltree::Node, tag: &str) -> Option<String> {
    n.children().find(|c| c.has_tag_name(tag)).map(|c| c.text().unwrap_or("").to_string())
}

fn end_of(n: roxmltree::Node) -> End {
    End {
        any: n.children().any(|c| c.has_tag_name("any")),
        network: text_of(n, "network"),
        address: text_of(n, "address"),
        port: text_of(n, "port"),
        not: n.children().any(|c| c.has_tag_name("not")),
    }
}

impl Pf {
    fn parse(xml: &str) -> Pf {
        let doc = roxmltree::Document::parse(xml).expect("config.xml is well-formed");
        let root = doc.root_element();
        let section = |name: &str| root.children().find(|c| c.has_tag_name(name)).unwrap();
        let mut ifaces = BTreeMap::new();
        for i in section("interfaces").children().filter(|c| c.is_element()) {
            let key = i.tag_name().name().to_string();
            // An IPv6 zone's interface has `ipaddrv6` and `subnetv6` instead.
            let addr = text_of(i, "ipaddr").or_else(|| text_of(i, "ipaddrv6")).unwrap();
            if key == "wan" {
                assert_eq!(addr, "dhcp", "the reference WAN takes its address by DHCP");
                ifaces.insert(key, (WAN_ADDRESS, IpNet::new(WAN_ADDRESS, 24).unwrap().trunc()));
                continue;
            }
            let a: IpAddr = addr.parse().unwrap();
            let p: u8 = text_of(i, "subnet").or_else(|| text_of(i, "subnetv6")).unwrap().parse().unwrap();
            ifaces.insert(key, (a, IpNet::new(a, p).unwrap().trunc()));
        }
        let mut aliases = BTreeMap::new();
        for a in section("aliases").children().filter(|c| c.has_tag_name("alias")) {
            let entries = text_of(a, "address").unwrap().split(' ').map(str::to_string).collect();
            aliases.insert(text_of(a, "name").unwrap(), (text_of(a, "type").unwrap(), entries));
        }
        let rules = section("filter")
            .children()
            .filter(|c| c.has_tag_name("rule"))
            .map(|r| Rule {
                pass: match text_of(r, "type").unwrap().as_str() {
                    "block" | "reject" => false,
                    "pass" => true,
                    other => panic!("rule type {other}"),
                },
                interface: text_of(r, "interface").unwrap(),
                ipprotocol: text_of(r, "ipprotocol").unwrap(),
                protocol: text_of(r, "protocol"),
                source: end_of(r.children().find(|c| c.has_tag_name("source")).unwrap()),
                destination: end_of(r.children().find(|c| c.has_tag_name("destination")).unwrap()),
                tracker: text_of(r, "tracker").unwrap().parse().unwrap(),
            })
            .collect();
        let nat = section("nat")
            .children()
            .filter(|c| c.has_tag_name("rule"))
            .map(|r| {
                let d = r.children().find(|c| c.has_tag_name("destination")).unwrap();
                assert_eq!(text_of(d, "network").as_deref(), Some("wanip"));
                Nat {
                    protocol: text_of(r, "protocol").unwrap(),
                    port: text_of(d, "port").unwrap().parse().unwrap(),
                    target: text_of(r, "target").unwrap().parse().unwrap(),
                    local_port: text_of(r, "local-port").unwrap().parse().unwrap(),
                }
            })
            .collect();
        let system = section("system");
        let webgui = system.children().find(|c| c.has_tag_name("webgui")).unwrap();
        let noantilockout = webgui.children().any(|c| c.has_tag_name("noantilockout"));
        let antilockout = if noantilockout { None } else { Some(text_of(webgui, "port").unwrap().parse().unwrap()) };
        Pf { ifaces, aliases, rules, nat, antilockout }
    }

    fn addr_matches(&self, spec: &str, a: IpAddr) -> bool {
        if let Ok(x) = spec.parse::<IpAddr>() {
            return x == a;
        }
        if let Ok(n) = spec.parse::<IpNet>() {
            return n.contains(&a);
        }
        let (kind, entries) = self.aliases.get(spec).unwrap_or_else(|| panic!("unknown alias {spec}"));
        assert!(kind == "host" || kind == "network", "alias {spec} of type {kind} used as an address");
        entries.iter().any(|e| self.addr_matches(e, a))
    }

    fn port_matches(&self, spec: &str, p: u16) -> bool {
        if let Ok(x) = spec.parse::<u16>() {
            return x == p;
        }
        if let Some((a, b)) = spec.split_once('-') {
            return (a.parse::<u16>().unwrap()..=b.parse().unwrap()).contains(&p);
        }
        let (kind, entries) = self.aliases.get(spec).unwrap_or_else(|| panic!("unknown port alias {spec}"));
        assert_eq!(kind, "port");
        entries.iter().any(|e| match e.split_once(':') {
            Some((a, b)) => (a.parse::<u16>().unwrap()..=b.parse().unwrap()).contains(&p),
            None => e.parse::<u16>().unwrap() == p,
        })
    }

    fn end_matches(&self, e: &End, a: IpAddr, port: PortSpec) -> bool {
        let hit = if e.any {
            true
        } else if let Some(n) = &e.network {
            match n.as_str() {
                "wanip" => a == WAN_ADDRESS,
                "(self)" => self.ifaces.values().any(|(x, _)| *x == a),
                k if k.ends_with("ip") => self.ifaces[&k[..k.len() - 2]].0 == a,
                k => self.ifaces[k].1.contains(&a),
            }
        } else {
            self.addr_matches(e.address.as_ref().expect("an endpoint has any, network or address"), a)
        };
        let port_ok = match &e.port {
            Some(p) => port.proto.has_ports() && self.port_matches(p, port.port),
            None => true,
        };
        (hit != e.not) && port_ok
    }

    fn proto_matches(proto: &Option<String>, p: Proto) -> bool {
        match proto.as_deref() {
            None => true,
            Some("tcp") => p == Proto::Tcp,
            Some("udp") => p == Proto::Udp,
            Some("tcp/udp") => matches!(p, Proto::Tcp | Proto::Udp),
            Some("icmp") => p == Proto::Icmp,
            Some("carp") => p == Proto::Vrrp,
            Some(other) => panic!("protocol {other}"),
        }
    }

    /// Whether a packet arriving on `iface` passes: pfSense's anti-lockout rule first
    /// (LAN only), then the interface's rules in config order, first match wins; no match
    /// is pfSense's default deny.
    fn passes(&self, iface: &str, src: IpAddr, dst: IpAddr, port: PortSpec) -> (bool, Option<u64>) {
        if iface == "lan"
            && let Some(gui) = self.antilockout
            && port == (PortSpec { proto: Proto::Tcp, port: gui })
            && dst == self.ifaces["lan"].0
        {
            return (true, None);
        }
        for r in self.rules.iter().filter(|r| r.interface == iface) {
            let family = match r.ipprotocol.as_str() {
                "inet" => src.is_ipv4(),
                "inet6" => src.is_ipv6(),
                "inet46" => true,
                other => panic!("ipprotocol {other}"),
            };
            if family
                && Self::proto_matches(&r.protocol, port.proto)
                && self.end_matches(&r.source, src, PortSpec { proto: port.proto, port: 0 })
                && self.end_matches(&r.destination, dst, port)
            {
                return (r.pass, Some(r.tracker));
            }
        }
        (false, None)
    }

    /// From the internet to the WAN address: the port forward (if any), then the WAN
    /// rules on the translated destination. Returns where it arrives when it passes.
    fn forwarded(&self, port: PortSpec) -> Option<IpAddr> {
        let proto = match port.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            _ => return None,
        };
        let n = self.nat.iter().find(|n| (n.protocol == proto || n.protocol == "tcp/udp") && n.port == port.port)?;
        let to = PortSpec { proto: port.proto, port: n.local_port };
        self.passes("wan", CLIENT, n.target, to).0.then_some(n.target)
    }
}

fn zone_iface(pf: &Pf, site: &Site, z: medianest::model::ZoneId) -> String {
    let cidr = site.zone(z).cidr.as_ref().unwrap().value;
    pf.ifaces
        .iter()
        .find(|(k, (_, n))| *k != "wan" && *n == cidr)
        .map(|(k, _)| k.clone())
        .expect("every zone has an interface")
}

/// Counts of one semantic run.
#[derive(Debug, Default)]
struct Counts {
    triples: usize,
    passed: usize,
    internet: usize,
    internet_passed: usize,
    mismatches: Vec<String>,
}

/// Evaluates a site's config against its flow plan.
fn check_semantics(site: &Site, xml: &str) -> Counts {
    let pf = Pf::parse(xml);
    let plan = site.flow_plan();
    let fw: Vec<HostId> =
        (0..site.hosts.len()).map(HostId).filter(|h| site.host(*h).kind.value == HostKind::Firewall).collect();
    assert_eq!(fw.len(), 1, "one firewall");
    let fw = fw[0];
    let mut ports: BTreeSet<PortSpec> = plan.grants.iter().map(|g| g.port).collect();
    for p in [
        PortSpec { proto: Proto::Tcp, port: 1 },
        PortSpec { proto: Proto::Tcp, port: 8443 },
        PortSpec { proto: Proto::Udp, port: 9999 },
        PortSpec { proto: Proto::Icmp, port: 0 },
        PortSpec { proto: Proto::Vrrp, port: 0 },
    ] {
        ports.insert(p);
    }
    if let Some(g) = pf.antilockout {
        ports.insert(PortSpec { proto: Proto::Tcp, port: g });
    }
    let mut c = Counts::default();
    let hosts: Vec<HostId> = (0..site.hosts.len()).map(HostId).collect();
    for &s in &hosts {
        if s == fw {
            continue; // its own traffic leaves by pfSense's pass-out rules
        }
        let sz = site.host_zones(s);
        for &d in &hosts {
            let dz = site.host_zones(d);
            let share = sz.iter().any(|z| dz.contains(z));
            if s == d || (share && d != fw) {
                continue;
            }
            for &port in &ports {
                let allowed = plan.allows(site, Some(s), Some(d), port);
                for i in &site.host(s).interfaces {
                    let iface = zone_iface(&pf, site, i.zone.value);
                    for a in site.host(d).interfaces.iter().map(|x| x.address.value) {
                        c.triples += 1;
                        let (passed, tracker) = pf.passes(&iface, i.address.value, a, port);
                        c.passed += passed as usize;
                        if passed != allowed {
                            c.mismatches.push(format!(
                                "{} ({}) -> {} ({a}) {port} on {iface}: pfSense {}, flow plan {} (rule {tracker:?})",
                                site.host(s).name,
                                i.address.value,
                                site.host(d).name,
                                if passed { "passes" } else { "blocks" },
                                if allowed { "allows" } else { "denies" },
                            ));
                        }
                        if passed && !share {
                            for gr in &site.guardrails {
                                let from = gr.from.is_some_and(|z| sz.contains(&z));
                                let to = gr.to.is_some_and(|z| dz.contains(&z));
                                if from && to {
                                    c.mismatches.push(format!(
                                        "guard-rail pair passes: {} -> {} {port}",
                                        site.host(s).name,
                                        site.host(d).name
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // The internet: to the WAN address (port forwards) and to every site address.
    let vips: Vec<(IpAddr, BTreeSet<HostId>)> = keepalived::model(site)
        .services
        .iter()
        .filter_map(|(k, v)| {
            v.vip.as_ref().map(|a| (a.value, site.service(*k).hosts.iter().map(|h| h.value).collect()))
        })
        .collect();
    for &d in &hosts {
        let dz = site.host_zones(d);
        for &port in &ports {
            c.internet += 1;
            let allowed = plan.allows(site, None, Some(d), port);
            let via_nat = pf.forwarded(port).is_some_and(|t| {
                site.host(d).interfaces.iter().any(|i| i.address.value == t)
                    || vips.iter().any(|(v, holders)| *v == t && holders.contains(&d))
            });
            let direct = site.host(d).interfaces.iter().any(|i| pf.passes("wan", CLIENT, i.address.value, port).0);
            let passed = via_nat || direct;
            c.internet_passed += passed as usize;
            if passed != allowed {
                c.mismatches.push(format!(
                    "internet -> {} {port}: pfSense {}, flow plan {}",
                    site.host(d).name,
                    if passed { "passes" } else { "blocks" },
                    if allowed { "allows" } else { "denies" }
                ));
            }
            if passed && site.guardrails.iter().any(|g| g.from.is_none() && g.to.is_some_and(|z| dz.contains(&z))) {
                c.mismatches.push(format!("guard-rail pair passes: internet -> {} {port}", site.host(d).name));
            }
        }
    }
    c
}

#[test]
fn rules_pass_exactly_what_the_flow_compiler_allows() {
    let (site, configs) = reference();
    let xml = &configs["firewall/fw1/config.xml"];
    let pf = Pf::parse(xml);
    let mut per_iface: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in &pf.rules {
        let e = per_iface.entry(r.interface.as_str()).or_default();
        if r.pass { e.0 += 1 } else { e.1 += 1 }
    }
    // Every interface ends with one block rule, which logs.
    for (k, (_, blocks)) in &per_iface {
        assert_eq!(*blocks, 1, "{k}: one block rule");
        let last = pf.rules.iter().rev().find(|r| r.interface == *k).unwrap();
        assert!(!last.pass && last.source.any && last.destination.any, "{k}: the last rule blocks everything");
    }
    assert!(xml.matches("<log></log>").count() >= per_iface.len(), "the block rules log");
    let trackers: BTreeSet<u64> = pf.rules.iter().map(|r| r.tracker).collect();
    assert_eq!(trackers.len(), pf.rules.len(), "trackers are unique");
    let c = check_semantics(&site, xml);
    println!(
        "pfSense rules: {} rules ({} pass, {} block, {} port forwards, {} aliases) on {} interfaces: {per_iface:?}",
        pf.rules.len(),
        pf.rules.iter().filter(|r| r.pass).count(),
        pf.rules.iter().filter(|r| !r.pass).count(),
        pf.nat.len(),
        pf.aliases.len(),
        per_iface.len()
    );
    println!(
        "pfSense semantics: {} (source, destination address, port) triples across zones or to the firewall, {} passed, {} blocked; {} (internet, host, port) pairs, {} passed; {} mismatches",
        c.triples,
        c.passed,
        c.triples - c.passed,
        c.internet,
        c.internet_passed,
        c.mismatches.len()
    );
    assert!(c.triples > 1000 && c.passed > 50, "too few triples: {c:?}");
    assert!(c.internet_passed > 0, "nothing reaches the edge from the internet");
    assert!(c.mismatches.is_empty(), "{} mismatches:\n{}", c.mismatches.len(), c.mismatches.join("\n"));
}

#[test]
fn a_changed_rule_is_caught_by_the_semantics() {
    // The evaluator must be able to fail: drop one pass rule, widen another.
    let (site, configs) = reference();
    let xml = &configs["firewall/fw1/config.xml"];
    let a = xml.find("\t\t<rule>\n\t\t\t<tracker>").unwrap();
    let b = xml[a..].find("</rule>\n").unwrap() + a + "</rule>\n".len();
    let dropped = format!("{}{}", &xml[..a], &xml[b..]);
    assert!(!check_semantics(&site, &dropped).mismatches.is_empty(), "dropping a pass rule went unnoticed");
    let widened = xml.replacen("<port>9000</port>", "<port>9001</port>", 1);
    assert!(!check_semantics(&site, &widened).mismatches.is_empty(), "changing a port went unnoticed");
}

#[test]
fn a_second_site_also_passes_exactly_what_its_flows_allow() {
    // The base fixture site, given a WAN and an admin zone: four zones on ports of their
    // own, one edge host published without a floating address.
    let repo = Repo::base();
    let services = std::fs::read_to_string(repo.path().join("site/services.toml")).unwrap();
    let fw = "hosts = [\"fw1\"]\nports = { dns = \"udp/53\", dns-tcp = 53, webgui = 443 }\nwan = \"igb9\"\nadmin_zone = \"mgmt\"\n";
    repo.write("site/services.toml", &services.replacen("hosts = [\"fw1\"]\n", fw, 1));
    repo.write(
        "site/zz-admin.toml",
        "[[flows]]\nfrom = \"zone:mgmt\"\nto = \"service:firewall\"\nports = [\"tcp/443\"]\nwhy = \"operators administer the firewall\"\n",
    );
    let c = compile(&Paths::under(repo.path()));
    assert!(!c.failed(), "{}", c.diags.render_plain(&c.sources));
    let xml = String::from_utf8(c.artifacts["firewall/fw1/config.xml"].bytes.clone()).unwrap();
    assert_eq!(xmllint(&xml).0, Some(0));
    let n = check_semantics(&c.site, &xml);
    println!(
        "pfSense semantics (base site): {} triples, {} passed; {} internet pairs, {} passed; {} mismatches",
        n.triples,
        n.passed,
        n.internet,
        n.internet_passed,
        n.mismatches.len()
    );
    assert!(n.internet_passed > 0 && n.passed > 0, "{n:?}");
    assert!(n.mismatches.is_empty(), "{}", n.mismatches.join("\n"));
}

#[test]
fn ipv6_zones_pass_exactly_what_their_flows_allow() {
    // Two IPv6-only zones behind the firewall (the base site's four stay IPv4): their
    // interfaces carry `ipaddrv6`, and a flow between them is an `inet6` rule, which is
    // what pfSense matches an IPv6 packet with.
    let repo = Repo::base();
    let services = std::fs::read_to_string(repo.path().join("site/services.toml")).unwrap();
    let fw = "hosts = [\"fw1\"]\nports = { dns = \"udp/53\", dns-tcp = 53, webgui = 443 }\nwan = \"igb9\"\nadmin_zone = \"mgmt\"\n";
    repo.write("site/services.toml", &services.replacen("hosts = [\"fw1\"]\n", fw, 1));
    let hosts = std::fs::read_to_string(repo.path().join("site/hosts.toml")).unwrap();
    let last = "  { zone = \"dmz\", address = \"10.1.6.1\", name = \"igb3\" },\n";
    let v6 = "  { zone = \"app6\", address = \"fd00:20::1\", name = \"igb4\" },\n  { zone = \"db6\", address = \"fd00:30::1\", name = \"igb5\" },\n";
    assert!(hosts.contains(last));
    repo.write("site/hosts.toml", &hosts.replacen(last, &format!("{last}{v6}"), 1));
    repo.write(
        "site/zz-ipv6.toml",
        "[zones.app6]\nvlan = 21\ncidr = \"fd00:20::/64\"\ngateway = \"fd00:20::1\"\n\n\
         [zones.db6]\nvlan = 31\ncidr = \"fd00:30::/64\"\ngateway = \"fd00:30::1\"\n\n\
         [hosts.app6]\nkind = \"physical\"\ninterfaces = [{ zone = \"app6\", address = \"fd00:20::10\" }]\n\n\
         [hosts.db6]\nkind = \"physical\"\ninterfaces = [{ zone = \"db6\", address = \"fd00:30::10\" }]\n\n\
         [[flows]]\nfrom = \"zone:mgmt\"\nto = \"service:firewall\"\nports = [\"tcp/443\"]\nwhy = \"operators administer the firewall\"\n\n\
         [[flows]]\nfrom = \"host:app6\"\nto = \"host:db6\"\nports = [\"tcp/5432\"]\nwhy = \"the app reaches its database\"\n\n\
         [[flows]]\nfrom = \"zone:db6\"\nto = \"host:app6\"\nports = [\"tcp/8080\"]\nwhy = \"callbacks\"\n",
    );
    let c = compile(&Paths::under(repo.path()));
    assert!(!c.failed(), "{}", c.diags.render_plain(&c.sources));
    let xml = String::from_utf8(c.artifacts["firewall/fw1/config.xml"].bytes.clone()).unwrap();
    let (code, out) = xmllint(&xml);
    assert_eq!(code, Some(0), "{out}");
    assert!(xml.contains("<ipaddrv6>fd00:20::1</ipaddrv6>"), "{xml}");
    assert!(xml.contains("<ipprotocol>inet6</ipprotocol>"), "{xml}");
    let n = check_semantics(&c.site, &xml);
    assert!(n.passed > 0, "{n:?}");
    assert!(n.mismatches.is_empty(), "{}", n.mismatches.join("\n"));
    // As pfSense would, the semantics miss an IPv6 flow passed by an `inet` rule.
    let v4_only = xml.replace("<ipprotocol>inet6</ipprotocol>", "<ipprotocol>inet</ipprotocol>");
    assert!(!check_semantics(&c.site, &v4_only).mismatches.is_empty(), "an inet rule for IPv6 went unnoticed");
}

/// A random flow over the base site's endpoints: sources and destinations of every kind,
/// ports that each destination serves (any port for a host or a zone).
fn random_flow() -> impl proptest::strategy::Strategy<Value = (String, String, String)> {
    use proptest::prelude::*;
    let from = prop_oneof![
        Just("internet"),
        Just("service:web"),
        Just("service:db"),
        Just("service:proxy"),
        Just("host:app1"),
        Just("host:pve1"),
        Just("zone:mgmt"),
        Just("zone:app"),
        Just("zone:db"),
        Just("zone:dmz"),
    ];
    let to = prop_oneof![
        Just(("service:web", "http")),
        Just(("service:db", "tcp/5432")),
        Just(("service:proxy", "tcp/8404")),
        Just(("host:db1", "tcp/22")),
        Just(("host:pve1", "udp/514")),
        Just(("zone:app", "tcp/9100")),
        Just(("zone:mgmt", "tcp/22")),
        Just(("zone:dmz", "icmp")),
        Just(("internet", "tcp/443")),
    ];
    (from, to).prop_map(|(f, (t, p))| (f.to_string(), t.to_string(), p.to_string()))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 40, failure_persistence: None, ..Default::default() })]

    /// Random flows on the base site with a WAN: whenever the site compiles (about 40 of
    /// 57 tries; the rest are guard-rail, self-flow and port-forward errors), its
    /// config.xml passes the schema, pfSense's semantics pass exactly the flow plan, and
    /// every host firewall passes `nft -c`.
    #[test]
    fn random_flows_pass_exactly_what_the_flow_plan_allows(flows in proptest::collection::vec(random_flow(), 1..8)) {
        let repo = Repo::base();
        let services = std::fs::read_to_string(repo.path().join("site/services.toml")).unwrap();
        let fw = "hosts = [\"fw1\"]\nports = { dns = \"udp/53\", dns-tcp = 53, webgui = 443 }\nwan = \"igb9\"\nadmin_zone = \"mgmt\"\n";
        repo.write("site/services.toml", &services.replacen("hosts = [\"fw1\"]\n", fw, 1));
        let mut extra = String::from(
            "[[flows]]\nfrom = \"zone:mgmt\"\nto = \"service:firewall\"\nports = [\"tcp/443\"]\nwhy = \"operators administer the firewall\"\n",
        );
        for (i, (from, to, port)) in flows.iter().enumerate() {
            extra.push_str(&format!("\n[[flows]]\nfrom = \"{from}\"\nto = \"{to}\"\nports = [\"{port}\"]\nwhy = \"random flow {i}\"\n"));
        }
        repo.write("site/zz-random.toml", &extra);
        let c = compile(&Paths::under(repo.path()));
        // Guard-rails, self-flows and port forwards pfSense cannot express are refused
        // with an error; those sites have nothing to check.
        proptest::prop_assume!(!c.failed());
        let xml = String::from_utf8(c.artifacts["firewall/fw1/config.xml"].bytes.clone()).unwrap();
        proptest::prop_assert_eq!(xmllint(&xml).0, Some(0));
        let n = check_semantics(&c.site, &xml);
        proptest::prop_assert!(n.mismatches.is_empty(), "{}\n{extra}", n.mismatches.join("\n"));
        // The host firewalls of the same plan load too.
        let dir = tempfile::tempdir().unwrap();
        for (path, a) in c.artifacts.iter().filter(|(p, _)| p.ends_with("/etc/nftables.conf")) {
            let f = dir.path().join("nftables.conf");
            std::fs::write(&f, &a.bytes).unwrap();
            let o = Command::new("unshare").args(["-n", "nft", "-c", "-f"]).arg(&f).output().unwrap();
            proptest::prop_assert!(o.status.success(), "{path}: {}\n{extra}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

#[test]
fn the_flows_page_lists_every_rule_as_config_xml_holds_it() {
    let (_, configs) = reference();
    let pf = Pf::parse(&configs["firewall/fw1/config.xml"]);
    let page = std::fs::read_to_string(repo_root().join("generated/docs/flows.md")).unwrap();
    let table = page.split("### fw1 (pfSense): ").nth(1).expect("the flows page tabulates fw1's rules");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .take_while(|l| !l.starts_with("Aliases of") && !l.starts_with("## "))
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Interface") && !l.starts_with("| ---"))
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().trim_matches('`')).collect())
        .collect();
    assert_eq!(rows.len(), pf.rules.len(), "one row per rule of config.xml");
    let end = |e: &End| {
        let what = if e.any { "any".to_string() } else { e.network.clone().or(e.address.clone()).unwrap() };
        if e.not { format!("not `{what}") } else { what }
    };
    for (i, (row, r)) in rows.iter().zip(&pf.rules).enumerate() {
        let action = if r.pass { "pass" } else { "block (logged)" };
        assert_eq!(row[1], action, "rule {i}");
        assert_eq!(row[2], r.protocol.as_deref().unwrap_or("any"), "rule {i}");
        assert_eq!(row[3].replace('`', ""), end(&r.source).replace('`', ""), "rule {i}: source");
        assert_eq!(row[4].replace('`', ""), end(&r.destination).replace('`', ""), "rule {i}: destination");
        assert_eq!(row[5], r.destination.port.as_deref().unwrap_or("any"), "rule {i}: port");
    }
    println!("flows.md: {} pfSense rules, each as config.xml holds it, in order", rows.len());
}
