//! Each artifact family's cost on one site: its checks (verify), its lower and the
//! render of its jobs, one family at a time on one thread, median of N runs. For
//! BENCHMARKS.md ("lower+render at 10,000 services" per family).
//!
//! ```text
//! cargo run --release --example family_times -- /tmp/synth [runs]
//! ```
//!
//! The site is loaded and resolved once; a family's `verify` reads the resolved site, so
//! it is timed alone (pfSense's checks build its config once per site and its lower
//! reuses it, so that build is timed on its own line). The flow plan is built once before timing (it is shared by every
//! family that writes an allow-list) and reported on its own line.

use std::path::Path;
use std::time::Instant;

use medianest::diag::{Diagnostics, SourceMap};
use medianest::families::provenance::Depth;
use medianest::families::{FAMILIES, Lowering};
use medianest::model::flows::Plan;
use medianest::ops::analyze_files;
use medianest::render::Templates;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).map(String::as_str).unwrap_or("."));
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    let mut diags = Diagnostics::default();
    let files = medianest::load::read_site(&dir.join("site"), "site", &mut diags);
    let analysis = analyze_files(files, "site");
    assert!(!analysis.diags.has_errors(), "the site has errors");
    let site = &analysis.site;
    let mut sources = SourceMap::default();
    let templates = Templates::load(None, "templates", &mut sources, &mut diags);

    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a thread pool");
    let plan: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(Plan::compile(site));
            ms(t)
        })
        .collect();
    let grants = site.flow_plan().grants.len();
    println!("{:<12} {:>9} {:>9} {:>9} {:>9} {:>7}", "family", "verify", "lower", "render", "l+r", "files");
    println!("{:<12} {:>9.1} {:>9} {:>9} {:>9} {:>7}", "flow plan", median(plan), "", "", "", format!("{grants}g"));
    // pfSense builds its whole config once, in its checks, and lowers the cached result:
    // time the build itself.
    let pf: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            for (id, fw) in &medianest::families::pfsense::model(site).services {
                for h in &site.service(*id).hosts {
                    std::hint::black_box(medianest::families::pfsense::build(site, *id, fw, h.value).is_ok());
                }
            }
            ms(t)
        })
        .collect();
    println!("{:<12} {:>9.1} {:>9} {:>9} {:>9} {:>7}", "pfsense cfg", median(pf), "", "", "", "");
    // What every family lowers, for those that describe the others' files (`lower_after`).
    let mut first = Lowering::new(site, Depth::Files);
    for f in FAMILIES {
        f.lower(site, &mut first);
    }
    let first = first.jobs;
    for f in FAMILIES {
        let (mut v, mut l, mut r, mut n) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for _ in 0..runs {
            let t = Instant::now();
            let mut d = Diagnostics::default();
            f.verify(site, &mut d);
            v.push(ms(t));
            let t = Instant::now();
            let mut low = Lowering::new(site, Depth::Files);
            f.lower(site, &mut low);
            f.lower_after(site, &first, &mut low);
            l.push(ms(t));
            n = low.jobs.len();
            let t = Instant::now();
            let mut d = Diagnostics::default();
            std::hint::black_box(one.install(|| templates.render_all(low.jobs, &mut d)));
            r.push(ms(t));
        }
        let (v, l, r) = (median(v), median(l), median(r));
        println!("{:<12} {v:>9.1} {l:>9.1} {r:>9.1} {:>9.1} {n:>7}", f.name(), l + r);
    }
}
