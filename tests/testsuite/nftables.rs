//! Host firewalls against the real tool and real packets.
//!
//! `nft -c` accepts every generated `/etc/nftables.conf` (and refuses a broken one).
//! Then the reference site is stood up in network namespaces: one namespace per Linux
//! host loading its generated ruleset, a router namespace standing in for pfSense (one
//! bridge per zone holding the firewall's zone addresses, and forwarding rules rendered
//! here from the same flow plan, `model::flows`), and an "internet" namespace behind
//! the router's WAN veth. Listeners open every declared destination port; every declared
//! grant must connect, and a deterministic sample of undeclared (source, destination,
//! port) triples must be dropped — a timeout, not a refusal — and counted by the drop
//! rules. Only the site's own addresses are used, plus TEST-NET-2 (198.51.100.0/24) for
//! the stand-in internet, all inside namespaces the test creates and deletes.
//!
//! Needs root and `nft`, `ip`, `python3` (scripts/test.sh installs them).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::{Child, Command, Output, Stdio};

use medianest::model::flows::{Dest, Peer, egress_zone};
use medianest::model::values::{PortSpec, Proto};
use medianest::model::{HostId, Site};
use medianest::ops::{Paths, compile};

use crate::support::*;

fn sh(script: &str) -> Output {
    Command::new("sh").arg("-c").arg(script).output().expect("sh runs")
}

fn must(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: exit {:?}\n{}{}", o.status.code(), stdout(&o), stderr(&o));
    stdout(&o)
}

fn generated_rulesets() -> Vec<(String, std::path::PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(repo_root().join("generated/hosts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("root/etc/nftables.conf").exists())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p.join("root/etc/nftables.conf")))
        .collect();
    v.sort();
    v
}

#[test]
fn every_host_firewall_passes_nft_check_and_a_broken_one_fails() {
    let site = compile(&Paths::under(&repo_root())).site;
    let linux = site.hosts.iter().filter(|h| h.kind.value.is_linux()).count();
    let rulesets = generated_rulesets();
    assert_eq!(rulesets.len(), linux, "one ruleset per Linux host");
    for (host, file) in &rulesets {
        must(sh(&format!("unshare -n nft -c -f '{}'", file.display())), &format!("nft -c on {host}"));
    }
    // The check can fail: a misspelt verdict is refused.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("nftables.conf");
    let text =
        std::fs::read_to_string(&rulesets[0].1).unwrap().replacen("tcp dport 22 accept", "tcp dport 22 acept", 1);
    std::fs::write(&broken, text).unwrap();
    let o = sh(&format!("unshare -n nft -c -f '{}'", broken.display()));
    assert!(!o.status.success(), "nft -c accepted a broken ruleset");
    println!("nft -c: {} host firewalls accepted, the broken one refused", rulesets.len());
}

/// Network namespaces of one test run, deleted (with every process in them) on drop.
struct Lab {
    prefix: String,
    names: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&mut self, name: &str) -> String {
        let full = format!("{}{name}", self.prefix);
        must(sh(&format!("ip netns add {full} && ip -n {full} link set lo up")), "ip netns add");
        self.names.push(full.clone());
        full
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = sh(&format!("ip netns pids {n} | xargs -r kill -9; ip netns del {n}"));
        }
    }
}

const SERVER: &str = r#"
import select, socket, sys
socks = []
for spec in sys.argv[1:]:
    proto, port = spec.split("/")
    if proto == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(port)))
        s.listen(128)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", int(port)))
    socks.append(s)
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        if s.type == socket.SOCK_STREAM:
            c, _ = s.accept()
            c.close()
        else:
            d, a = s.recvfrom(64)
            s.sendto(d, a)
"#;

const PROBER: &str = r#"
import concurrent.futures, json, socket, sys
def probe(t):
    addr, proto, port = t
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(2.0)
    try:
        if proto == "tcp":
            s.connect((addr, port))
        else:
            s.sendto(b"x", (addr, port))
            s.recvfrom(64)
        return "open"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return "error: " + str(e)
    finally:
        s.close()
with concurrent.futures.ThreadPoolExecutor(64) as ex:
    print(json.dumps(list(ex.map(probe, json.loads(sys.stdin.read())))))
"#;

/// One attempted connection.
#[derive(Clone, Debug)]
struct Probe {
    from_ns: String,
    from: String,
    to: String,
    addr: IpAddr,
    port: PortSpec,
    declared: bool,
}

/// The forwarding and input rules of the stand-in firewall, rendered from the plan: the
/// same grants that pfSense's rules come from.
fn router_rules(site: &Site, fw: HostId) -> String {
    let nets = |p: Peer| -> Option<String> {
        match p {
            Peer::Internet => None,
            _ => Some(
                medianest::model::flows::peer_networks(site, p)
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        }
    };
    let proto = |p: PortSpec| match p.proto {
        Proto::Tcp | Proto::Udp => format!("{} dport {}", p.proto, p.port),
        Proto::Vrrp => "meta l4proto vrrp".into(),
        Proto::Icmp => "icmp type echo-request".into(),
    };
    let (mut forward, mut input) = (String::new(), String::new());
    for g in &site.flow_plan().grants {
        let src = match nets(g.from) {
            Some(n) => format!("ip saddr {{ {n} }}"),
            None => "iifname \"wan\"".into(),
        };
        match g.to {
            Dest::Host(h) if h == fw => input.push_str(&format!("        {src} {} accept\n", proto(g.port))),
            Dest::Host(h) => {
                let addrs: Vec<String> =
                    medianest::model::flows::host_addresses(site, h).iter().map(|a| a.to_string()).collect();
                forward.push_str(&format!(
                    "        {src} ip daddr {{ {} }} {} accept\n",
                    addrs.join(", "),
                    proto(g.port)
                ));
            }
            Dest::Internet => forward.push_str(&format!("        {src} oifname \"wan\" {} accept\n", proto(g.port))),
        }
    }
    format!(
        "table inet fw {{\n    chain forward {{\n        type filter hook forward priority filter; policy drop;\n        ct state established,related accept\n{forward}        counter drop\n    }}\n    chain input {{\n        type filter hook input priority filter; policy drop;\n        ct state established,related accept\n        iif \"lo\" accept\n{input}        counter drop\n    }}\n}}\n"
    )
}

/// A small deterministic generator (the sample must be the same on every run).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

#[test]
fn packets_follow_the_flows_in_network_namespaces() {
    let uid = must(sh("id -u"), "id");
    assert_eq!(uid.trim(), "0", "the namespace test needs root");
    let compiled = compile(&Paths::under(&repo_root()));
    assert!(!compiled.diags.has_errors());
    let site = &compiled.site;
    let plan = site.flow_plan();
    let fw = site.hosts.iter().position(|h| !h.kind.value.is_linux()).map(HostId).expect("a firewall host");
    let rulesets: BTreeMap<String, std::path::PathBuf> = generated_rulesets().into_iter().collect();

    let mut lab = Lab { prefix: format!("mn{}-", std::process::id()), names: Vec::new(), children: Vec::new() };
    // The router: one bridge per zone with the firewall's address in it, and the WAN.
    let router = lab.ns("fw");
    let _ = sh(&format!(
        "ip netns exec {router} sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0"
    ));
    must(sh(&format!("ip netns exec {router} sysctl -qw net.ipv4.ip_forward=1")), "forwarding");
    let mut bridge_of = BTreeMap::new();
    for (i, z) in site.zones.iter().enumerate() {
        let br = format!("br{i}");
        let cidr = z.cidr.as_ref().unwrap().value;
        let addr = site
            .host(fw)
            .interfaces
            .iter()
            .find(|x| x.zone.value.0 == i)
            .map(|x| x.address.value)
            .expect("the firewall has an address in every zone");
        must(
            sh(&format!(
                "ip -n {router} link add {br} type bridge && ip -n {router} addr add {addr}/{} dev {br} && ip -n {router} link set {br} up",
                cidr.prefix_len()
            )),
            "zone bridge",
        );
        bridge_of.insert(i, (br, addr));
    }
    let internet = lab.ns("inet");
    must(
        sh(&format!(
            "ip link add mnwan{0} type veth peer name mnin{0} && ip link set mnwan{0} netns {router} name wan && ip link set mnin{0} netns {internet} name eth0 && \
             ip -n {router} addr add 198.51.100.1/24 dev wan && ip -n {router} link set wan up && \
             ip -n {internet} addr add 198.51.100.2/24 dev eth0 && ip -n {internet} link set eth0 up && ip -n {internet} route add default via 198.51.100.1",
            std::process::id()
        )),
        "internet veth",
    );
    let rules = router_rules(site, fw);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("router.nft"), &rules).unwrap();
    must(sh(&format!("ip netns exec {router} nft -f {}", dir.path().join("router.nft").display())), "router rules");

    // One namespace per Linux host, on its zone's bridge, loading its generated firewall.
    let mut ns_of: BTreeMap<HostId, String> = BTreeMap::new();
    for (i, h) in site.hosts.iter().enumerate().filter(|(_, h)| h.kind.value.is_linux()) {
        let ns = lab.ns(&format!("h{i}"));
        for (k, x) in h.interfaces.iter().enumerate() {
            let (br, gw) = &bridge_of[&x.zone.value.0];
            let prefix = site.zone(x.zone.value).cidr.as_ref().unwrap().value.prefix_len();
            let (a, b) = (
                format!("mn{}h{i}i{k}", std::process::id() % 100000),
                format!("mn{}p{i}i{k}", std::process::id() % 100000),
            );
            must(
                sh(&format!(
                    "ip link add {a} type veth peer name {b} && ip link set {a} netns {ns} name eth{k} && ip link set {b} netns {router} && \
                     ip -n {router} link set {b} master {br} up && ip -n {ns} addr add {}/{prefix} dev eth{k} && ip -n {ns} link set eth{k} up",
                    x.address.value
                )),
                "host veth",
            );
            if k == 0 {
                must(sh(&format!("ip -n {ns} route add default via {gw}")), "default route");
            }
        }
        must(
            sh(&format!("ip netns exec {ns} nft -f '{}'", rulesets[&h.name].display())),
            &format!("loading {}'s generated firewall", h.name),
        );
        ns_of.insert(HostId(i), ns);
    }

    // What to try: every declared grant (TCP and UDP), from each machine its source
    // stands for, and a sample of undeclared triples.
    let addr_of = |h: HostId, from: Option<HostId>| -> IpAddr {
        let host = site.host(h);
        // The firewall answers on its address in the caller's zone.
        from.and_then(|f| {
            host.interfaces.iter().find(|x| site.host(f).interfaces.iter().any(|y| y.zone.value == x.zone.value))
        })
        .unwrap_or(&host.interfaces[0])
        .address
        .value
    };
    let name = |h: Option<HostId>| h.map_or("internet".to_string(), |h| site.host(h).name.clone());
    let ns_for = |h: Option<HostId>| match h {
        None => internet.clone(),
        Some(h) if h == fw => router.clone(),
        Some(h) => ns_of[&h].clone(),
    };
    let mut probes: Vec<Probe> = Vec::new();
    let mut unprobed = 0;
    for g in &plan.grants {
        if !g.port.proto.has_ports() {
            unprobed += 1;
            continue;
        }
        let sources: Vec<Option<HostId>> = match g.from {
            Peer::Host(h) => vec![Some(h)],
            // A machine of the zone, when it talks to the destination from its address
            // in that zone (the firewall talks from its address facing the destination).
            Peer::Zone(z) => (0..site.hosts.len())
                .map(HostId)
                .filter(|h| {
                    egress_zone(
                        site,
                        *h,
                        match g.to {
                            Dest::Host(d) => Some(d),
                            Dest::Internet => None,
                        },
                    ) == Some(z)
                })
                .map(Some)
                .collect(),
            Peer::Internet => vec![None],
        };
        let to = match g.to {
            Dest::Host(h) => Some(h),
            Dest::Internet => None,
        };
        for from in sources {
            if from.is_some() && from == to {
                continue;
            }
            let addr = match to {
                Some(h) => addr_of(h, from),
                None => "198.51.100.2".parse().unwrap(),
            };
            probes.push(Probe {
                from_ns: ns_for(from),
                from: name(from),
                to: name(to),
                addr,
                port: g.port,
                declared: true,
            });
        }
    }
    let declared_count = probes.len();
    let ports: Vec<PortSpec> = plan
        .grants
        .iter()
        .map(|g| g.port)
        .filter(|p| p.proto.has_ports())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let machines: Vec<Option<HostId>> = (0..site.hosts.len()).map(|h| Some(HostId(h))).chain([None]).collect();
    let mut rng = Lcg(0x6d65_6469_616e_6573);
    let mut undeclared = BTreeSet::new();
    let mut tries = 0;
    while undeclared.len() < 150 && tries < 100_000 {
        tries += 1;
        let (from, to) = (machines[rng.below(machines.len())], machines[rng.below(machines.len())]);
        let port = ports[rng.below(ports.len())];
        if from == to || to.is_none() || plan.allows(site, from, to, port) {
            continue;
        }
        undeclared.insert((from, to, port));
    }
    for (from, to, port) in &undeclared {
        let addr = addr_of(to.unwrap(), *from);
        probes.push(Probe {
            from_ns: ns_for(*from),
            from: name(*from),
            to: name(*to),
            addr,
            port: *port,
            declared: false,
        });
    }

    // Listeners: every port any probe aims at, in the namespace that owns the address.
    let mut listen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let owner = |a: IpAddr| -> String {
        if a.to_string() == "198.51.100.2" {
            return internet.clone();
        }
        let h = site.hosts.iter().position(|h| h.interfaces.iter().any(|x| x.address.value == a)).map(HostId).unwrap();
        ns_for(Some(h))
    };
    for p in &probes {
        listen.entry(owner(p.addr)).or_default().insert(p.port.to_string());
    }
    for (ns, specs) in &listen {
        let mut c = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", SERVER])
            .args(specs)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(c.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "listener in {ns}");
        lab.children.push(c);
    }

    // Probe from every source namespace at once.
    let mut by_ns: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, p) in probes.iter().enumerate() {
        by_ns.entry(p.from_ns.clone()).or_default().push(i);
    }
    let running: Vec<(Vec<usize>, Child)> = by_ns
        .into_iter()
        .map(|(ns, idx)| {
            let targets: Vec<serde_json::Value> = idx
                .iter()
                .map(|&i| {
                    let p = &probes[i];
                    serde_json::json!([p.addr.to_string(), p.port.proto.to_string(), p.port.port])
                })
                .collect();
            let mut c = Command::new("ip")
                .args(["netns", "exec", &ns, "python3", "-c", PROBER])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin.take().unwrap().write_all(serde_json::to_string(&targets).unwrap().as_bytes()).unwrap();
            (idx, c)
        })
        .collect();
    let mut wrong = Vec::new();
    let (mut connected, mut dropped) = (0, 0);
    for (idx, c) in running {
        let o = c.wait_with_output().unwrap();
        let results: Vec<String> = serde_json::from_str(&must(o, "prober")).unwrap();
        for (i, r) in idx.into_iter().zip(results) {
            let p = &probes[i];
            let want = if p.declared { "open" } else { "timeout" };
            if r == want {
                if p.declared { connected += 1 } else { dropped += 1 }
            } else {
                wrong.push(format!(
                    "{} {} → {} ({}) {}: {r}, expected {want}",
                    if p.declared { "declared" } else { "undeclared" },
                    p.from,
                    p.to,
                    p.addr,
                    p.port
                ));
            }
        }
    }
    // The drops were counted by the drop rules (the log rule sits beside them).
    let mut counted = 0u64;
    for ns in ns_of.values().chain([&router]) {
        let text = must(sh(&format!("ip netns exec {ns} nft list ruleset")), "nft list");
        for l in text.lines().filter(|l| l.contains("counter packets") && l.trim_end().ends_with("drop")) {
            let n: u64 =
                l.split("counter packets ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
            counted += n;
        }
    }
    println!(
        "namespaces: {} hosts + router + internet; declared: {connected}/{declared_count} connected ({unprobed} VRRP/ICMP grants not probed); \
         undeclared: {dropped}/{} dropped; drop counters: {counted} packets",
        ns_of.len(),
        undeclared.len()
    );
    assert!(wrong.is_empty(), "{} of {} probes went the wrong way:\n{}", wrong.len(), probes.len(), wrong.join("\n"));
    assert!(
        declared_count > 50 && undeclared.len() == 150,
        "{declared_count} declared, {} undeclared",
        undeclared.len()
    );
    assert!(counted >= dropped as u64, "{counted} packets counted for {dropped} dropped connections");
}

#[test]
fn allow_lists_follow_a_new_flow_everywhere() {
    // A new zone's operators get the HAProxy stats page: the stats ACL and edge1's
    // firewall both follow the one flow, and neither admits the zone before it.
    let repo = Repo::base();
    repo.write("site/ops.toml", "[zones.ops]\nvlan = 90\ncidr = \"10.1.9.0/24\"\ngateway = \"10.1.9.1\"\n");
    let out = repo.run(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |rel: &str| std::fs::read_to_string(repo.path().join("generated/hosts/edge1/root").join(rel)).unwrap();
    assert!(!read("etc/haproxy/haproxy.cfg").contains("10.1.9.0/24"));
    assert!(!read("etc/nftables.conf").contains("ip saddr { 10.1.9.0/24 }"));
    repo.write(
        "site/ops.toml",
        "[zones.ops]\nvlan = 90\ncidr = \"10.1.9.0/24\"\ngateway = \"10.1.9.1\"\n\n[[flows]]\nfrom = \"zone:ops\"\nto = \"service:proxy\"\nports = [\"stats\"]\nwhy = \"operators read the stats page\"\n",
    );
    let out = repo.run(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cfg = read("etc/haproxy/haproxy.cfg");
    assert!(cfg.contains("    acl allowed src 10.1.9.0/24\n"), "{cfg}");
    let nft = read("etc/nftables.conf");
    assert!(nft.contains("ip saddr { 10.1.9.0/24 } tcp dport 8404 accept"), "{nft}");
    // And only there: the flow reaches no other host.
    let others = repo.generated().into_iter().filter(|(p, _)| p.ends_with("nftables.conf") && !p.contains("edge1"));
    for (p, text) in others {
        assert!(!String::from_utf8_lossy(&text).contains("10.1.9.0/24 }"), "{p}");
    }
}

#[test]
fn the_flows_page_lists_exactly_each_host_firewall_accepts() {
    // docs/flows.md and every /etc/nftables.conf read the same grants: each line of a
    // host's section is an accept rule of its firewall, and each flow comment of the
    // firewall is a line of the page.
    let page = std::fs::read_to_string(repo_root().join("generated/docs/flows.md")).unwrap();
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = None;
    for l in page.lines() {
        if let Some(h) = l.strip_prefix("### ") {
            current = Some(h.split(' ').next().unwrap().to_string());
        } else if let (Some(h), Some(row)) = (&current, l.strip_prefix("| ")) {
            let cells: Vec<&str> = row.split(" | ").collect();
            if cells.len() >= 3 && cells[0] != "Port" && cells[0] != "---" {
                sections.entry(h.clone()).or_default().push((cells[0].to_string(), cells[2].to_string()));
            }
        }
    }
    let rulesets: BTreeMap<String, std::path::PathBuf> = generated_rulesets().into_iter().collect();
    let mut checked = 0;
    for (host, file) in &rulesets {
        let nft = std::fs::read_to_string(file).unwrap();
        let input = &nft[..nft.find("chain forward").unwrap_or(nft.len())];
        let lines = sections.get(host).cloned().unwrap_or_default();
        for (port, flow) in &lines {
            let comment = format!("# {flow}: ");
            let want = match port.split_once('/') {
                Some((proto, n)) => format!("{proto} dport {n} accept"),
                None => port.clone(),
            };
            // A flow with several ports has one commented rule per port.
            let found = input
                .match_indices(&comment)
                .any(|(at, _)| input[at..].lines().skip(1).take(2).any(|r| r.contains(&want)));
            assert!(found, "{host}: no accept rule for {flow} {port}");
            checked += 1;
        }
        let comments = input.lines().filter(|l| l.trim_start().starts_with("# ") && l.contains(" → ")).count();
        let flows: BTreeSet<&str> = lines.iter().map(|(_, f)| f.as_str()).collect();
        assert!(
            comments >= flows.len() && comments <= lines.len(),
            "{host}: {comments} rules, page lists {}",
            lines.len()
        );
    }
    assert!(checked > 50, "{checked}");
    println!("flows.md: {checked} host accept lines, each an accept rule of that host's firewall");
}
