//! Printing a [`Review`]: plain text for terminals, Markdown to paste into a pull-request
//! comment as is, and JSON (stable, versioned by `format`) for bots.

use std::fmt::Write;

use super::{FileChangeKind, Review};

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

fn counts(h: &super::HostSummary) -> String {
    let mut parts = Vec::new();
    for (n, what) in [(h.added, "added"), (h.changed, "changed"), (h.removed, "removed")] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(", ")
}

fn actions(h: &super::HostSummary) -> String {
    let mut parts = Vec::new();
    if !h.reload.is_empty() {
        parts.push(format!("reloads {}", h.reload.join(", ")));
    }
    if !h.restart.is_empty() {
        parts.push(format!("restarts {}", h.restart.join(", ")));
    }
    if parts.is_empty() { "no reload or restart".into() } else { parts.join("; ") }
}

fn families(h: &super::HostSummary) -> String {
    h.families.iter().map(|(f, n)| format!("{f} {n}")).collect::<Vec<_>>().join(", ")
}

fn heading(r: &Review) -> String {
    match &r.base_commit {
        Some(c) => format!("`{}` ({c})", r.base),
        None => r.base.clone(),
    }
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

/// Markdown with an explicit size limit.
pub fn markdown_limited(r: &Review, style: Style, limit: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### medianest diff against {}\n", heading(r));
    if r.is_empty() {
        let _ = writeln!(s, "No changes to the rendered infrastructure.");
        return s;
    }
    for n in &r.notes {
        let _ = writeln!(s, "> **Note:** {n}\n");
    }
    if !r.semantic.is_empty() {
        let _ = writeln!(s, "#### What changes\n");
        for c in &r.semantic {
            let _ = writeln!(s, "- {}", md_inline(&c.line()));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "#### Hosts\n");
    let _ = writeln!(s, "| Host | Files | Families | On apply |");
    let _ = writeln!(s, "| --- | --- | --- | --- |");
    for (h, sum) in &r.hosts {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            md_inline(host_label(h)),
            counts(sum),
            md_inline(&families(sum)),
            md_inline(&actions(sum))
        );
    }
    let _ = writeln!(s);
    if style.stat {
        for f in &r.files {
            let _ = writeln!(
                s,
                "- `{}` generated/{} (+{} -{})",
                f.change.letter(),
                md_inline(&f.path),
                f.added_lines,
                f.removed_lines
            );
        }
        return s;
    }
    let mut cut = 0;
    for h in r.hosts.keys() {
        let files: Vec<_> = r.files.iter().filter(|f| f.host.as_deref().unwrap_or("") == h.as_str()).collect();
        let mut block =
            format!("<details><summary><code>{}</code>: {} file(s)</summary>\n\n", html(host_label(h)), files.len());
        for f in &files {
            let body = if f.diff.is_empty() { format!("binary file {:?}\n", f.change) } else { f.diff.clone() };
            let fence = fence(&body);
            let _ = write!(
                block,
                "**{}** `generated/{}`\n\n{fence}diff\n{body}{}{fence}\n\n",
                word(f.change),
                md_code(&f.path),
                if body.ends_with('\n') { "" } else { "\n" }
            );
        }
        block.push_str("</details>\n\n");
        if s.len() + block.len() + 300 > limit {
            cut += files.len();
            continue;
        }
        s.push_str(&block);
    }
    if cut > 0 {
        let _ = writeln!(
            s,
            "> **{cut} file diff(s) were left out** to keep this comment under {limit} characters. Run `medianest diff {}` locally for everything.",
            r.base
        );
    }
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

    use crate::review::{FileChange, FileChangeKind, HostSummary, Review};

    fn review(diff: &str) -> Review {
        let mut hosts = std::collections::BTreeMap::new();
        hosts.insert("app1".to_string(), HostSummary { changed: 1, ..HostSummary::default() });
        Review {
            format: 1,
            base: "HEAD".into(),
            base_commit: Some("abc".into()),
            hosts,
            semantic: vec![],
            files: vec![FileChange {
                path: "hosts/app1/root/etc/x.md".into(),
                change: FileChangeKind::Changed,
                host: Some("app1".into()),
                family: "docs".into(),
                added_lines: 1,
                removed_lines: 1,
                diff: diff.into(),
            }],
            notes: vec![],
        }
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
        assert!(md.contains("1 file diff(s) were left out"), "{md}");
        assert!(md.contains("| app1 | 1 changed |"), "the summary is never cut: {md}");
    }

    #[test]
    fn fences_outgrow_backtick_runs() {
        assert_eq!(fence("plain"), "```");
        assert_eq!(fence("a ```` b"), "`````");
    }
}
