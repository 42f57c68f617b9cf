//! Printing a [`Review`]: plain text for terminals, Markdown to paste into a pull-request
//! comment as is, and JSON (stable, versioned by `format`) for bots.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::{FileChange, FileChangeKind, HostSummary, Review};
use crate::artifact::MANIFEST;

/// GitHub refuses comments over 65,536 characters; stay well below it.
pub const MARKDOWN_LIMIT: usize = 60_000;

/// Output options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// Only the summary and a per-file line count, no diffs.
    pub stat: bool,
}

fn host_label(h: &str) -> &str {
    if h.is_empty() { "(no host: docs, manifest)" } else { h }
}

fn counts(h: &HostSummary) -> String {
    let mut parts = Vec::new();
    for (n, what) in [(h.added, "added"), (h.changed, "changed"), (h.removed, "removed")] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(", ")
}

fn actions(h: &HostSummary) -> String {
    if h.tree_removed {
        return "tree removed: its agent refuses this commit and changes nothing".into();
    }
    let mut parts = Vec::new();
    if !h.reload.is_empty() {
        parts.push(format!("reloads {}", h.reload.join(", ")));
    }
    if !h.restart.is_empty() {
        parts.push(format!("restarts {}", h.restart.join(", ")));
    }
    if parts.is_empty() { "no reload or restart".into() } else { parts.join("; ") }
}

fn families(h: &HostSummary) -> String {
    h.families.iter().map(|(f, n)| format!("{f} {n}")).collect::<Vec<_>>().join(", ")
}

fn heading(r: &Review) -> String {
    match &r.base_commit {
        Some(c) => format!("`{}` ({c})", r.base),
        None => r.base.clone(),
    }
}

/// What to run locally to see everything the comment leaves out.
fn local_command(r: &Review) -> String {
    if r.base_commit.is_none() {
        "medianest diff --worktree".into()
    } else {
        format!("medianest diff {}", crate::render::escape::sh(&r.base))
    }
}

/// When the change reaches no host, why (the words after "this change reaches no host:").
fn reaches_no_host(r: &Review) -> Option<String> {
    if r.is_empty() || r.files.iter().any(|f| f.host.is_some()) {
        return None;
    }
    if r.files.is_empty() {
        return Some(
            "no generated host file changes, and nothing else under `generated/` changes either: the model changes below are not rendered into any file yet".into(),
        );
    }
    const SHOWN: usize = 5;
    let mut names: Vec<String> = r.files.iter().take(SHOWN).map(|f| format!("`generated/{}`", f.path)).collect();
    if r.files.len() > SHOWN {
        names.push(format!("{} more", r.files.len() - SHOWN));
    }
    Some(format!(
        "no generated host file changes; only {}, which no host applies, {}",
        names.join(", "),
        if r.files.len() == 1 { "changes" } else { "change" }
    ))
}

/// What removing a host's whole tree means when the change is applied, per such host.
/// (The agent reads only `generated/hosts/<host>/` and refuses a commit without it:
/// `source::read_generation`.)
fn removed_trees(r: &Review) -> Vec<String> {
    r.hosts
        .iter()
        .filter(|(_, h)| h.tree_removed)
        .map(|(name, _)| {
            format!(
                "`{name}` leaves the site: `generated/hosts/{name}/` is removed. On apply, its agent (`medianest pull`) refuses this commit and every later one while the tree is missing (\"commit … has no `generated/hosts/{name}/`\", exit 1, `medianest_pull_result` 1) and changes nothing on the host: the files it last applied stay in place and their units keep running. Disable `medianest-pull.timer` there and clean the host up by hand when you decommission it."
            )
        })
        .collect()
}

/// Plain text.
pub fn text(r: &Review, style: Style) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "medianest diff against {}", heading(r).replace('`', ""));
    if r.is_empty() {
        let _ = writeln!(s, "\nno changes");
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    if let Some(why) = reaches_no_host(r) {
        let _ = writeln!(s, "note: this change reaches no host: {why}");
    }
    if !r.semantic.is_empty() {
        let _ = writeln!(s, "\nWhat changes:");
        for c in &r.semantic {
            let _ = writeln!(s, "  {}", c.line());
        }
    }
    if !r.hosts.is_empty() {
        let _ = writeln!(s, "\nHosts:");
        for (h, sum) in &r.hosts {
            let _ = writeln!(s, "  {}: {} [{}]; {}", host_label(h), counts(sum), families(sum), actions(sum));
        }
        for t in removed_trees(r) {
            let _ = writeln!(s, "note: {}", t.replace('`', ""));
        }
        let _ = writeln!(s, "\nFiles:");
        for f in &r.files {
            let _ =
                writeln!(s, "  {} generated/{} (+{} -{})", f.change.letter(), f.path, f.added_lines, f.removed_lines);
        }
    }
    if !style.stat {
        for f in &r.files {
            if f.diff.is_empty() {
                let _ = writeln!(s, "\nbinary file generated/{} {:?}", f.path, f.change);
            } else {
                let _ = write!(s, "\n{}", f.diff);
            }
        }
    }
    s
}

/// A code fence longer than any run of backticks in `content`.
fn fence(content: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in content.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat(longest.max(2) + 1)
}

/// Markdown for a pull-request comment, cut to [`MARKDOWN_LIMIT`] with a note on what
/// was left out.
pub fn markdown(r: &Review, style: Style) -> String {
    markdown_limited(r, style, MARKDOWN_LIMIT)
}

/// Which file diffs the comment gives up first when it must be cut: the lowest rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// `manifest.json` and the hosts' `plan.json`: checksum churn that follows from the
    /// other files. Shown only when every other diff fits.
    Checksums,
    /// A whole file added or removed: its content, not a change to read line by line.
    WholeFile,
    /// A changed file that no unit reloads or restarts over (docs, `/etc/hosts`, …).
    Changed,
    /// A changed file on a host that reloads or restarts units: a config change that
    /// goes live on apply.
    LiveConfig,
}

fn rank(r: &Review, f: &FileChange) -> Rank {
    let plan = f.family == "plan" || f.host.as_ref().is_some_and(|h| f.path == format!("hosts/{h}/plan.json"));
    if f.path == MANIFEST || f.family == "manifest" || plan {
        return Rank::Checksums;
    }
    if f.change != FileChangeKind::Changed {
        return Rank::WholeFile;
    }
    let live =
        f.host.as_ref().and_then(|h| r.hosts.get(h)).is_some_and(|h| !h.reload.is_empty() || !h.restart.is_empty());
    if live { Rank::LiveConfig } else { Rank::Changed }
}

/// A diff longer than all the room the comment has for diffs.
const TOO_LONG: &str = "too long for this comment";
/// A diff that would fit alone, but not after the better-ranked ones.
const NO_ROOM: &str = "no room left";

/// Why a file's diff was left out, after its line in the list (for changed files, the
/// longer of the two reasons until the cut is known).
fn left_out_reason(rank: Rank, f: &FileChange) -> &'static str {
    match (rank, f.change) {
        (Rank::Checksums, _) => "checksums",
        (Rank::WholeFile, FileChangeKind::Added) => "whole file added",
        (Rank::WholeFile, _) => "whole file removed",
        _ => TOO_LONG,
    }
}

/// A file's line in the Files list.
fn file_line(f: &FileChange, reason: Option<&str>) -> String {
    format!(
        "- `{}` generated/{} (+{} -{}){}\n",
        f.change.letter(),
        md_inline(&f.path),
        f.added_lines,
        f.removed_lines,
        reason.map(|r| format!(" · {r}")).unwrap_or_default()
    )
}

/// A file's diff in its host's `<details>` block.
fn diff_block(f: &FileChange) -> String {
    let body = if f.diff.is_empty() { format!("binary file {:?}\n", f.change) } else { f.diff.clone() };
    let fence = fence(&body);
    format!(
        "**{}** `generated/{}`\n\n{fence}diff\n{body}{}{fence}\n\n",
        word(f.change),
        md_code(&f.path),
        if body.ends_with('\n') { "" } else { "\n" }
    )
}

fn host_open(h: &str, shown: usize, total: usize) -> String {
    let what = if shown == total {
        format!("{total} file diff{}", crate::diag::plural(total))
    } else {
        format!("{shown} of {total} file diffs")
    };
    format!("<details><summary><code>{}</code>: {what}</summary>\n\n", html(host_label(h)))
}

const HOST_CLOSE: &str = "</details>\n\n";

/// `lines` as they fit in `room` bytes: all of them, or the first ones and then
/// `more(n)` for the `n` left.
fn fit_lines(lines: &[String], room: usize, more: impl Fn(usize) -> String) -> String {
    let all: usize = lines.iter().map(String::len).sum();
    if all <= room {
        return lines.concat();
    }
    let tail = more(lines.len()).len();
    let mut out = String::new();
    let mut taken = 0;
    for l in lines {
        if out.len() + l.len() + tail > room {
            break;
        }
        out.push_str(l);
        taken += 1;
    }
    out.push_str(&more(lines.len() - taken));
    out
}

/// Markdown with an explicit size limit (the output is always shorter than `limit`).
///
/// Never cut: the heading, the notes, the semantic summary, the hosts table and the
/// Files list with every file's line counts (each is cut only if it alone cannot fit).
/// File diffs fill what is left, best first: config diffs of hosts that reload or
/// restart units, then other changed files, then whole files added or removed; the
/// checksum churn of `manifest.json` and `plan.json` only when everything else fits. A
/// diff that does not fit is left out, and its file is listed as such.
pub fn markdown_limited(r: &Review, style: Style, limit: usize) -> String {
    let budget = limit.saturating_sub(1);
    let command = local_command(r);
    let mut s = String::new();
    let _ = writeln!(s, "### medianest diff against {}\n", heading(r));
    if r.is_empty() {
        let _ = writeln!(s, "No changes to the rendered infrastructure.");
        return s;
    }
    for n in &r.notes {
        let _ = writeln!(s, "> **Note:** {n}\n");
    }
    if let Some(why) = reaches_no_host(r) {
        let _ = writeln!(s, "> **This change reaches no host:** {why}\n");
    }
    // Room kept for the sections after the one being fitted, should one be too big.
    let reserve = (budget / 10).min(2_000);
    if !r.semantic.is_empty() {
        let _ = writeln!(s, "#### What changes\n");
        let lines: Vec<String> = r.semantic.iter().map(|c| format!("- {}\n", md_inline(&c.line()))).collect();
        let room = budget.saturating_sub(s.len() + 2 * reserve);
        s.push_str(&fit_lines(&lines, room, |n| format!("- … and {n} more: run `{command} --stat`\n")));
        let _ = writeln!(s);
    }
    if !r.hosts.is_empty() {
        let _ = writeln!(s, "#### Hosts\n");
        let _ = writeln!(s, "| Host | Files | Families | On apply |");
        let _ = writeln!(s, "| --- | --- | --- | --- |");
        let rows: Vec<String> = r
            .hosts
            .iter()
            .map(|(h, sum)| {
                format!(
                    "| {} | {} | {} | {} |\n",
                    md_inline(host_label(h)),
                    counts(sum),
                    md_inline(&families(sum)),
                    md_inline(&actions(sum))
                )
            })
            .collect();
        let room = budget.saturating_sub(s.len() + reserve);
        s.push_str(&fit_lines(&rows, room, |n| format!("| … and {n} more hosts | | | |\n")));
        let _ = writeln!(s);
        for t in removed_trees(r) {
            let _ = writeln!(s, "> **Host removed:** {t}\n");
        }
    }
    if r.files.is_empty() {
        return cap(s, budget);
    }
    let _ = writeln!(s, "#### Files\n");
    let plain: Vec<String> = r.files.iter().map(|f| file_line(f, None)).collect();
    let list_more = |n: usize| format!("- … and {n} more files: run `{command} --stat` for the whole list\n");
    if style.stat {
        s.push_str(&fit_lines(&plain, budget.saturating_sub(s.len()), list_more));
        return cap(s, budget);
    }

    let ranks: Vec<Rank> = r.files.iter().map(|f| rank(r, f)).collect();
    let mut left: Vec<String> =
        r.files.iter().zip(&ranks).map(|(f, k)| file_line(f, Some(left_out_reason(*k, f)))).collect();
    let n = r.files.len();
    let intro = |left_out: usize| {
        format!(
            "{n} file{}; {left_out} diff{} left out to keep this comment under {} characters (checksum churn first, then whole files added or removed; config diffs of hosts that reload or restart units go last). Run `{command}` locally to see every diff.\n\nDiffs below:\n\nDiffs left out:\n\n",
            crate::diag::plural(n),
            if left_out == 1 { " is" } else { "s are" },
            thousands(limit)
        )
    };
    // Everything listed as left out, with the longest intro: the most the Files section
    // can take. Each diff shown then costs its block (and its host's `<details>`) less
    // the difference between its two lines.
    let floor = s.len() + intro(n).len() + left.iter().map(String::len).sum::<usize>() + 2;
    if floor > budget {
        // Even the list does not fit with every file marked: list what fits, no diffs.
        let note = format!(
            "No diffs are shown: the file list alone fills this comment. Run `{command}` locally to see them.\n\n"
        );
        s.push_str(&note);
        s.push_str(&fit_lines(&plain, budget.saturating_sub(s.len()), list_more));
        return cap(s, budget);
    }
    let blocks: Vec<String> = r.files.iter().map(diff_block).collect();
    let by_host = files_by_host(r);
    let wrapper = |h: &str| {
        let total = by_host.get(h).map_or(0, Vec::len);
        host_open(h, total, total + 1).len() + HOST_CLOSE.len()
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ranks[i]));
    let mut shown = vec![false; n];
    let mut added: Vec<usize> = Vec::new();
    let mut open: BTreeSet<&str> = BTreeSet::new();
    let mut total = floor;
    let mut missed_content = false;
    for &i in &order {
        if ranks[i] == Rank::Checksums && missed_content {
            break;
        }
        let h = r.files[i].host.as_deref().unwrap_or("");
        let shown_len = plain[i].len() + blocks[i].len();
        if ranks[i] > Rank::WholeFile && floor + (shown_len + wrapper(h)).saturating_sub(left[i].len()) <= budget {
            // It would fit alone: if it is left out, it is for lack of room.
            left[i] = file_line(&r.files[i], Some(NO_ROOM));
            total -= TOO_LONG.len() - NO_ROOM.len();
        }
        let cost = (shown_len + if open.contains(h) { 0 } else { wrapper(h) }).saturating_sub(left[i].len());
        if total + cost <= budget {
            total += cost;
            shown[i] = true;
            added.push(i);
            open.insert(h);
        } else if ranks[i] != Rank::Checksums {
            missed_content = true;
        }
    }
    // The estimate is an upper bound; should it ever be wrong, give up diffs until it fits.
    loop {
        let out = render_files(&s, &by_host, &shown, &plain, &left, &blocks, &intro);
        if out.len() <= budget || added.is_empty() {
            return cap(out, budget);
        }
        if let Some(i) = added.pop() {
            shown[i] = false;
        }
    }
}

/// Indices of the files of each host (`""` for files no host applies), in path order.
fn files_by_host(r: &Review) -> BTreeMap<&str, Vec<usize>> {
    let mut out: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, f) in r.files.iter().enumerate() {
        out.entry(f.host.as_deref().unwrap_or("")).or_default().push(i);
    }
    out
}

/// The Files section and the diffs, for the diffs marked `shown`.
fn render_files(
    head: &str,
    by_host: &BTreeMap<&str, Vec<usize>>,
    shown: &[bool],
    plain: &[String],
    left: &[String],
    blocks: &[String],
    intro: &impl Fn(usize) -> String,
) -> String {
    let mut s = head.to_string();
    let left_out = shown.iter().filter(|x| !**x).count();
    if left_out == 0 {
        s.push_str(&plain.concat());
    } else {
        let full = intro(left_out);
        let (para, _) = full.split_once("\n\n").unwrap_or((&full, ""));
        let _ = writeln!(s, "{para}\n");
        if left_out < shown.len() {
            let _ = writeln!(s, "Diffs below:\n");
            for (i, l) in plain.iter().enumerate() {
                if shown[i] {
                    s.push_str(l);
                }
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "Diffs left out:\n");
        for (i, l) in left.iter().enumerate() {
            if !shown[i] {
                s.push_str(l);
            }
        }
    }
    let _ = writeln!(s);
    for (h, mine) in by_host {
        let k = mine.iter().filter(|&&i| shown[i]).count();
        if k == 0 {
            continue;
        }
        s.push_str(&host_open(h, k, mine.len()));
        for &i in mine {
            if shown[i] {
                s.push_str(&blocks[i]);
            }
        }
        s.push_str(HOST_CLOSE);
    }
    s
}

/// `60000` as `60,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Never longer than `budget`: a last guard, cutting at a line.
fn cap(mut s: String, budget: usize) -> String {
    if s.len() <= budget {
        return s;
    }
    const CUT: &str = "\n> **Cut here** to stay under the size limit of a comment.\n";
    let mut at = budget.saturating_sub(CUT.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    let at = s[..at].rfind('\n').unwrap_or(0);
    s.truncate(at);
    s.push_str(CUT);
    s
}

fn word(k: FileChangeKind) -> &'static str {
    match k {
        FileChangeKind::Added => "added",
        FileChangeKind::Removed => "removed",
        FileChangeKind::Changed => "changed",
    }
}

/// Text inside Markdown prose: characters that start markup are escaped.
fn md_inline(s: &str) -> String {
    crate::render::escape::md(s)
}

/// Text inside a Markdown code span (no backticks can occur in generated paths).
fn md_code(s: &str) -> String {
    s.replace('`', "'")
}

fn html(s: &str) -> String {
    crate::render::escape::xml(s)
}

/// JSON, stable: keys in a fixed order, sorted lists, `format` versioned.
pub fn json(r: &Review, style: Style) -> String {
    let mut v = serde_json::to_value(r).expect("reviews always serialize");
    if !style.stat
        && let Some(files) = v.get_mut("files").and_then(|f| f.as_array_mut())
    {
        for (f, change) in files.iter_mut().zip(&r.files) {
            if let Some(obj) = f.as_object_mut() {
                obj.insert("diff".into(), serde_json::Value::String(change.diff.clone()));
            }
        }
    }
    let mut out = serde_json::to_string_pretty(&v).expect("values always serialize");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeMap;

    use crate::review::{FileChange, FileChangeKind, HostSummary, Review};

    fn file(path: &str, host: Option<&str>, family: &str, change: FileChangeKind, diff: &str) -> FileChange {
        FileChange {
            path: path.into(),
            change,
            host: host.map(str::to_string),
            family: family.into(),
            added_lines: diff.lines().filter(|l| l.starts_with('+')).count(),
            removed_lines: diff.lines().filter(|l| l.starts_with('-')).count(),
            diff: diff.into(),
        }
    }

    /// A review of `files`, with the host summaries they imply; `reloading` hosts
    /// reload a unit.
    fn review_of(files: Vec<FileChange>, reloading: &[&str]) -> Review {
        let mut hosts: BTreeMap<String, HostSummary> = BTreeMap::new();
        for f in &files {
            hosts.entry(f.host.clone().unwrap_or_default()).or_default().count(f);
        }
        for r in reloading {
            hosts.get_mut(*r).unwrap().reload.push("haproxy.service".into());
        }
        Review {
            format: 1,
            base: "HEAD".into(),
            base_commit: Some("abc".into()),
            hosts,
            semantic: vec![],
            files,
            notes: vec![],
        }
    }

    fn review(diff: &str) -> Review {
        review_of(vec![file("hosts/app1/root/etc/x.md", Some("app1"), "docs", FileChangeKind::Changed, diff)], &[])
    }

    fn lines(n: usize, mark: &str) -> String {
        (0..n).map(|i| format!("{mark}line {i}\n")).collect()
    }

    /// A change on two hosts: edge1 reloads haproxy over its config, app1's hosts file
    /// changes, one whole file is added, and manifest.json and the plans churn.
    fn mixed(size: usize) -> Review {
        use FileChangeKind::*;
        review_of(
            vec![
                file("docs/inventory.md", None, "docs", Changed, &lines(size, "+")),
                file("hosts/app1/plan.json", Some("app1"), "plan", Changed, &lines(2, "-")),
                file("hosts/app1/root/etc/hosts", Some("app1"), "base", Changed, &lines(size, "-")),
                file("hosts/edge1/plan.json", Some("edge1"), "plan", Changed, &lines(2, "+")),
                file("hosts/edge1/root/etc/haproxy/haproxy.cfg", Some("edge1"), "haproxy", Changed, &lines(size, "+")),
                file("hosts/new1/root/etc/hosts", Some("new1"), "base", Added, &lines(size, "+")),
                file("manifest.json", None, "manifest", Changed, &lines(40, "+")),
            ],
            &["edge1"],
        )
    }

    /// The `Diffs left out:` list of a comment.
    fn left_out(md: &str) -> &str {
        let start = md.find("Diffs left out:\n\n").map_or(md.len(), |s| s + "Diffs left out:\n\n".len());
        let end = md[start..].find("\n\n").map_or(md.len(), |e| start + e + 1);
        &md[start..end]
    }

    #[test]
    fn markdown_fences_survive_backticks_in_content() {
        let md = markdown(&review("-a ``` b\n+a ```` c\n"), Style::default());
        assert!(md.contains("`````diff\n"), "{md}");
        assert!(md.contains("\n`````\n"), "{md}");
    }

    #[test]
    fn markdown_is_cut_to_the_limit_with_a_note() {
        let big = "+x\n".repeat(5000);
        let md = markdown_limited(&review(&big), Style::default(), 2000);
        assert!(md.len() < 2000, "{}", md.len());
        assert!(md.contains("1 file; 1 diff is left out to keep this comment under 2,000 characters"), "{md}");
        assert!(md.contains("Run `medianest diff HEAD` locally to see every diff."), "{md}");
        assert!(md.contains("| app1 | 1 changed |"), "the summary is never cut: {md}");
        assert!(
            left_out(&md).contains("- `M` generated/hosts/app1/root/etc/x.md (+5000 -0) · too long for this comment\n"),
            "{md}"
        );
        assert!(!md.contains("<details>"), "{md}");
    }

    #[test]
    fn a_comment_that_fits_has_every_diff_and_the_file_list() {
        let r = mixed(3);
        let md = markdown(&r, Style::default());
        assert!(md.contains("#### Files\n\n- `M` generated/docs/inventory.md (+3 -0)\n"), "{md}");
        for f in &r.files {
            assert!(md.contains(&format!("generated/{} (+{} -{})\n", f.path, f.added_lines, f.removed_lines)), "{md}");
            assert!(md.contains(&format!("`generated/{}`\n\n```diff\n", f.path)), "{md}");
        }
        assert!(!md.contains("left out"), "{md}");
        assert!(md.contains("<details><summary><code>edge1</code>: 2 file diffs</summary>"), "{md}");
    }

    #[test]
    fn cutting_drops_checksums_first_then_whole_files_and_keeps_reloading_configs() {
        let r = mixed(60);
        let churn = ["manifest.json", "hosts/app1/plan.json", "hosts/edge1/plan.json"];
        let content = ["docs/inventory.md", "hosts/app1/root/etc/hosts", "hosts/edge1/root/etc/haproxy/haproxy.cfg"];
        let whole = "hosts/new1/root/etc/hosts";
        let full = markdown_limited(&r, Style::default(), usize::MAX).len();
        let (mut only_churn, mut churn_and_whole) = (false, false);
        for limit in (full / 3..=full + 1).rev() {
            let md = markdown_limited(&r, Style::default(), limit);
            assert!(md.len() < limit, "{} >= {limit}", md.len());
            let left = left_out(&md);
            let out = |p: &str| left.contains(&format!("generated/{p} ("));
            let shown = |p: &str| md.contains(&format!("`generated/{p}`\n\n```diff\n"));
            for p in churn.iter().chain(&content).chain([&whole]) {
                assert!(out(p) != shown(p), "{p} at {limit}:\n{md}");
            }
            // The churn goes first: none of it while any other diff is left out, even
            // when it is small enough to fit in what is left.
            if content.iter().any(|p| out(p)) || out(whole) {
                assert!(churn.iter().all(|p| out(p)), "at {limit}:\n{md}");
            }
            // The reloading host's config goes last: it is left out only when it cannot
            // fit at all.
            if out(content[2]) {
                assert!(left.contains("haproxy.cfg (+60 -0) · too long for this comment\n"), "at {limit}:\n{md}");
            }
            only_churn |= churn.iter().all(|p| out(p)) && !out(whole) && content.iter().all(|p| shown(p));
            churn_and_whole |= churn.iter().all(|p| out(p)) && out(whole) && content.iter().all(|p| shown(p));
            if limit == full / 2 {
                assert!(shown(content[2]), "{md}");
                assert!(left.contains("- `M` generated/hosts/app1/root/etc/hosts (+0 -60) · no room left\n"), "{md}");
                assert!(
                    left.contains("- `A` generated/hosts/new1/root/etc/hosts (+60 -0) · whole file added\n"),
                    "{md}"
                );
                assert!(left.contains("- `M` generated/manifest.json (+40 -0) · checksums\n"), "{md}");
            }
        }
        assert!(only_churn, "some limit cuts only the checksum churn");
        assert!(churn_and_whole, "some limit cuts the churn and the whole file, and nothing else");
    }

    #[test]
    fn the_comment_is_always_under_the_limit() {
        for size in [1, 10, 100, 1000] {
            let r = mixed(size);
            for limit in (600..30_000).step_by(397) {
                for stat in [false, true] {
                    let md = markdown_limited(&r, Style { stat }, limit);
                    assert!(md.len() < limit, "size {size}, limit {limit}, stat {stat}: {}\n{md}", md.len());
                }
            }
        }
    }

    #[test]
    fn a_file_list_too_long_for_the_comment_is_cut_with_what_to_run() {
        let files = (0..3000)
            .map(|i| {
                file(
                    &format!("hosts/h{i:04}/root/etc/hosts"),
                    Some(&format!("h{i:04}")),
                    "base",
                    FileChangeKind::Changed,
                    "+a\n",
                )
            })
            .collect();
        let md = markdown_limited(&review_of(files, &[]), Style::default(), 60_000);
        assert!(md.len() < 60_000, "{}", md.len());
        assert!(md.contains("No diffs are shown: the file list alone fills this comment."), "{md}");
        assert!(md.contains("more files: run `medianest diff HEAD --stat` for the whole list\n"), "{md}");
        assert!(md.contains("| … and "), "the hosts table is cut last, with a count: {md}");
    }

    #[test]
    fn a_removed_host_tree_is_explained() {
        let mut r = review_of(
            vec![
                file("hosts/db2/plan.json", Some("db2"), "plan", FileChangeKind::Removed, "-x\n"),
                file("hosts/db2/root/etc/hosts", Some("db2"), "base", FileChangeKind::Removed, "-y\n"),
            ],
            &[],
        );
        r.hosts.get_mut("db2").unwrap().tree_removed = true;
        let md = markdown(&r, Style::default());
        assert!(
            md.contains("| db2 | 2 removed | base 1, plan 1 | tree removed: its agent refuses this commit"),
            "{md}"
        );
        assert!(md.contains("> **Host removed:** `db2` leaves the site: `generated/hosts/db2/` is removed."), "{md}");
        assert!(md.contains("the files it last applied stay in place"), "{md}");
        let text = text(&r, Style::default());
        assert!(text.contains("note: db2 leaves the site: generated/hosts/db2/ is removed."), "{text}");
    }

    #[test]
    fn fences_outgrow_backtick_runs() {
        assert_eq!(fence("plain"), "```");
        assert_eq!(fence("a ```` b"), "`````");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(60_000), "60,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
