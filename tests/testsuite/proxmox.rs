//! The proxmox family: each Proxmox VE host's `/etc/network/interfaces`.
//!
//! - ifupdown2's own parser accepts every generated file and refuses broken ones, run
//!   as the agent runs it (`actions::validator(Validator::Ifupdown2, staged)`, i.e.
//!   `ifup -a -s -i <staged>/etc/network/interfaces`). ifupdown2 is not installed here
//!   (installing it would take over this machine's network setup): the Debian 12
//!   package (3.0.0) is fetched once per test run with `apt-get download` (or taken from
//!   `$MEDIANEST_IFUPDOWN2_DEB`), unpacked with `dpkg -x` into a temporary directory,
//!   and an `ifup` wrapper first on `PATH` runs it in a private network and mount
//!   namespace (`unshare -n -m`, scratch `/run` and `/var/tmp`), so the host's
//!   interfaces and state are never read or touched.
//! - The files say what the site says: parsed back, stanza by stanza, against the
//!   model (the bridge, its address inside its zone, the zone gateway, the uplink from
//!   `[proxmox.<host>]`, every zone's VLAN id).
//!
//! Needs root, `unshare`, `dpkg`, `apt-get` (or the `.deb`) and `/usr/bin/python3`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use medianest::agent::actions;
use medianest::artifact::Validator;
use medianest::model::{HostId, Role, Site};
use medianest::ops::{Paths, compile};

use crate::support::*;

/// A directory holding an `ifup` that runs the unpacked ifupdown2 in its own
/// namespaces; unpacked once per test run.
fn ifupdown2_bin() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("medianest-ifupdown2-").tempdir().unwrap().keep();
        let deb = match std::env::var_os("MEDIANEST_IFUPDOWN2_DEB") {
            Some(p) => PathBuf::from(p),
            None => {
                let o = Command::new("apt-get").args(["download", "ifupdown2"]).current_dir(&dir).output().unwrap();
                assert!(o.status.success(), "apt-get download ifupdown2: {}", stderr(&o));
                let found = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path());
                found.into_iter().find(|p| p.extension().is_some_and(|x| x == "deb")).expect("a .deb")
            }
        };
        let root = dir.join("root");
        let o = Command::new("dpkg").arg("-x").arg(&deb).arg(&root).output().unwrap();
        assert!(o.status.success(), "dpkg -x: {}", stderr(&o));
        let share = root.join("usr/share/ifupdown2");
        // ifupdown2 finds its configuration beside its package when /etc/network has none.
        copy_tree(&root.join("etc"), &share.join("etc"));
        // It checks the name it is run by (`ifup`, `ifquery`, …).
        let py = dir.join("py");
        std::fs::create_dir_all(&py).unwrap();
        std::os::unix::fs::symlink(share.join("__main__.py"), py.join("ifup")).unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = format!(
            "#!/bin/sh\n# ifupdown2 from the unpacked package, in a private network and mount namespace.\n\
             exec unshare -n -m sh -ec 'mount -t tmpfs tmpfs /run; mkdir /run/network; \
             mount -t tmpfs tmpfs /var/tmp; exec /usr/bin/python3 \"$0\" \"$@\"' {} \"$@\"\n",
            py.join("ifup").display()
        );
        std::fs::write(bin.join("ifup"), script).unwrap();
        std::fs::set_permissions(bin.join("ifup"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        bin
    })
}

/// Runs the agent's validator on a staged tree holding `text` as the interfaces file.
fn validate(text: &str) -> (bool, String) {
    let staged = tempfile::tempdir().unwrap();
    let p = staged.path().join("etc/network/interfaces");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    let mut c = actions::validator(Validator::Ifupdown2, staged.path());
    let path = format!("{}:{}", ifupdown2_bin().display(), std::env::var("PATH").unwrap_or_default());
    let o = c.env("PATH", path).output().unwrap();
    (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
}

/// The reference site's Proxmox VE hosts and their generated interfaces files.
fn reference() -> (Site, BTreeMap<String, String>) {
    let c = compile(&Paths::under(&repo_root()));
    assert!(!c.diags.has_errors());
    let files = c
        .artifacts
        .iter()
        .filter(|(p, _)| p.ends_with("/root/etc/network/interfaces"))
        .map(|(p, a)| (p.split('/').nth(1).unwrap().to_string(), String::from_utf8(a.bytes.to_vec()).unwrap()))
        .collect();
    (c.site, files)
}

#[test]
fn ifupdown2_accepts_every_generated_file_and_refuses_broken_ones() {
    let (_, files) = reference();
    assert_eq!(files.len(), 2, "{:?}", files.keys());
    for (host, text) in &files {
        let (ok, out) = validate(text);
        assert!(ok, "ifupdown2 refused {host}'s interfaces:\n{out}\n{text}");
    }
    let good = &files["pve1"];
    let broken = [
        ("an address that is no address", "address 10.0.1.2/24", "address 10.0.1.300/24"),
        ("a gateway that is no address", "gateway 10.0.1.1", "gateway 10.0.1"),
        ("bridge-stp neither on nor off", "bridge-stp off", "bridge-stp maybe"),
        ("bridge-vlan-aware neither yes nor no", "bridge-vlan-aware yes", "bridge-vlan-aware perhaps"),
        ("a VLAN list that is no list", "bridge-vids 10", "bridge-vids ten"),
        ("a forward delay that is no number", "bridge-fd 0", "bridge-fd zero"),
        ("an unknown address method", "inet static", "inet statik"),
        ("an option outside any stanza", "iface vmbr0 inet static", "vmbr0 inet static"),
    ];
    for (what, from, to) in broken {
        assert!(good.contains(from), "{from}");
        let (ok, out) = validate(&good.replacen(from, to, 1));
        assert!(!ok, "ifupdown2 accepted {what}:\n{out}");
    }
    println!(
        "ifupdown2 3.0.0 (ifup -a -s): {} generated files accepted, {} broken ones refused",
        files.len(),
        broken.len()
    );
}

/// One `iface` stanza: its method and options in order.
#[derive(Debug, Default)]
struct Stanza {
    family: String,
    method: String,
    options: Vec<(String, String)>,
}

impl Stanza {
    fn get(&self, key: &str) -> Option<&str> {
        self.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// `(auto interfaces, stanzas by interface in order, source lines)`.
fn parse(text: &str) -> (Vec<String>, Vec<(String, Stanza)>, Vec<String>) {
    let (mut auto, mut stanzas, mut source) = (Vec::new(), Vec::<(String, Stanza)>::new(), Vec::new());
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = t.split_whitespace().collect();
        match words[0] {
            "auto" => auto.extend(words[1..].iter().map(|w| w.to_string())),
            "iface" => {
                assert_eq!(words.len(), 4, "{line}");
                stanzas.push((
                    words[1].into(),
                    Stanza { family: words[2].into(), method: words[3].into(), options: Vec::new() },
                ));
            }
            "source" => source.push(words[1..].join(" ")),
            key => {
                assert!(line.starts_with('\t'), "an option outside a stanza: {line}");
                let last = stanzas.last_mut().expect("an option after an iface line");
                last.1.options.push((key.to_string(), words[1..].join(" ")));
            }
        }
    }
    (auto, stanzas, source)
}

#[test]
fn every_file_says_what_the_site_says() {
    let (site, files) = reference();
    let model = medianest::families::proxmox::model(&site);
    let nodes: Vec<HostId> =
        (0..site.hosts.len()).map(HostId).filter(|h| site.host(*h).has_role(Role::Proxmox)).collect();
    assert_eq!(files.len(), nodes.len());
    let mut vids: Vec<u16> = site.zones.iter().filter_map(|z| z.vlan.as_ref()).map(|v| v.value).collect();
    vids.sort();
    let vids: Vec<String> = vids.iter().map(u16::to_string).collect();
    let mut options = 0;
    for id in nodes {
        let host = site.host(id);
        let text = &files[&host.name];
        let (auto, stanzas, source) = parse(text);
        let iface = &host.interfaces[0];
        let bridge = iface.name.as_ref().map(|n| n.value.as_str()).unwrap_or("vmbr0");
        let uplink = model.nodes[&id].uplink.value.as_str();
        // Proxmox's own layout: loopback, the NIC without an address, then the bridge.
        assert_eq!(auto, ["lo", bridge], "{}", host.name);
        let names: Vec<&str> = stanzas.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["lo", uplink, bridge], "{}", host.name);
        assert_eq!((stanzas[0].1.method.as_str(), stanzas[0].1.options.len()), ("loopback", 0));
        assert_eq!((stanzas[1].1.family.as_str(), stanzas[1].1.method.as_str()), ("inet", "manual"));
        assert!(stanzas[1].1.options.is_empty());
        let b = &stanzas[2].1;
        assert_eq!((b.family.as_str(), b.method.as_str()), ("inet", "static"));
        // The host's address, with its zone's prefix length, inside the zone.
        let zone = site.zone(iface.zone.value);
        let addr: ipnet::IpNet = b.get("address").unwrap().parse().unwrap();
        let cidr = zone.cidr.as_ref().unwrap().value;
        assert_eq!(addr.addr(), iface.address.value);
        assert_eq!(addr.prefix_len(), cidr.prefix_len());
        assert!(cidr.contains(&addr.addr()), "{addr} outside {cidr}");
        assert_eq!(b.get("gateway"), Some(zone.gateway.as_ref().unwrap().value.to_string().as_str()));
        assert_eq!(b.get("bridge-ports"), Some(uplink));
        assert_eq!(b.get("bridge-stp"), Some("off"));
        assert_eq!(b.get("bridge-fd"), Some("0"));
        assert_eq!(b.get("bridge-vlan-aware"), Some("yes"));
        assert_eq!(b.get("bridge-vids"), Some(vids.join(" ").as_str()));
        assert_eq!(b.options.len(), 7, "{:?}", b.options);
        assert_eq!(source, ["/etc/network/interfaces.d/*"]);
        options += b.options.len();
    }
    println!(
        "proxmox: {} hosts, {options} bridge options checked against the site (VLAN ids {})",
        files.len(),
        vids.join(" ")
    );
}

#[test]
fn the_plan_validates_reloads_and_probes() {
    let c = compile(&Paths::under(&repo_root()));
    let a = &c.artifacts["hosts/pve1/root/etc/network/interfaces"];
    let apply = a.meta.apply.as_ref().unwrap();
    assert_eq!(apply.target, "/etc/network/interfaces");
    assert_eq!(apply.validate, Some(Validator::Ifupdown2));
    assert_eq!(apply.reload.as_deref(), Some("networking.service"));
    assert_eq!(apply.probe, Some(medianest::artifact::Probe::Refetch));
    assert_eq!(a.meta.family, "proxmox");
    assert!(a.meta.sources.contains(&"site/proxmox.toml".to_string()), "{:?}", a.meta.sources);
}
