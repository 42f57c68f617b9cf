//! The `markdown` filter: Markdown (a rendered docs page) → HTML, with pulldown-cmark.
//!
//! The docs' HTML site renders the same Markdown pages as `generated/docs/`, so the two
//! cannot differ in content. On top of CommonMark (and tables):
//!
//! - raw HTML in the Markdown is written as text (comments are dropped): a page's HTML is only what Markdown
//!   makes of it (site values are Markdown-escaped as they are rendered anyway);
//! - every heading gets the `id` a git host gives it (GitHub's slug, [`slug`]), so one
//!   anchor works in both;
//! - relative links follow the pages into the site folder, one level below `docs/`:
//!   `x.md#a` → `x.html#a` (`README.md` → `index.html`), any other relative path (a
//!   generated file, the SVG) gains a `../`.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces → `-`.
pub fn slug(text: &str) -> String {
    text.trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_lowercase().next().unwrap_or(c)),
            _ => None,
        })
        .collect()
}

/// Where a link of a page in `docs/` points from the same page in `docs/site/`.
pub fn site_link(dest: &str) -> String {
    let relative =
        !(dest.starts_with('#') || dest.starts_with('/') || dest.contains("://") || dest.starts_with("mailto:"));
    if !relative {
        return dest.to_string();
    }
    let (path, frag) = match dest.split_once('#') {
        Some((p, f)) => (p, format!("#{f}")),
        None => (dest, String::new()),
    };
    if let Some(stem) = path.strip_suffix(".md") {
        let stem = match stem.strip_suffix("README") {
            Some(dir) => format!("{dir}index"),
            None => stem.to_string(),
        };
        format!("{stem}.html{frag}")
    } else {
        format!("../{path}{frag}")
    }
}

/// Renders Markdown as HTML (see the module documentation).
pub fn to_html(md: &str) -> String {
    let mut events: Vec<Event> = Vec::new();
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let mut heading: Option<usize> = None;
    for ev in Parser::new_ext(md, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH) {
        let ev = match ev {
            // A comment ("generated, do not edit") says nothing to a reader of the site.
            Event::Html(t) | Event::InlineHtml(t) if t.trim_start().starts_with("<!--") => continue,
            Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
            Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
                Event::Start(Tag::Link { link_type, dest_url: CowStr::from(site_link(&dest_url)), title, id })
            }
            Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
                Event::Start(Tag::Image { link_type, dest_url: CowStr::from(site_link(&dest_url)), title, id })
            }
            Event::Start(Tag::HtmlBlock) | Event::End(TagEnd::HtmlBlock) => continue,
            Event::Start(t @ Tag::Heading { .. }) => {
                heading = Some(events.len());
                Event::Start(t)
            }
            Event::End(TagEnd::Heading(level)) => {
                if let Some(start) = heading.take() {
                    let text: String = events[start..]
                        .iter()
                        .filter_map(|e| match e {
                            Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
                            _ => None,
                        })
                        .collect();
                    let base = slug(&text);
                    let n = seen.entry(base.clone()).or_insert(0);
                    let id = if *n == 0 { base.clone() } else { format!("{base}-{n}") };
                    *n += 1;
                    if let Event::Start(Tag::Heading { id: slot, .. }) = &mut events[start] {
                        *slot = Some(CowStr::from(id));
                    }
                }
                Event::End(TagEnd::Heading(level))
            }
            e => e,
        };
        events.push(ev);
    }
    let mut out = String::with_capacity(md.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, events.into_iter());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_get_github_anchors_and_links_follow_the_pages() {
        let html = to_html(
            "# Runbook: db\n\n## WebNodeDown\n\n## WebNodeDown\n\n[a](hosts/db1.md#x) [b](README.md) [c](../hosts/db1/root/etc/hosts) [d](#y) [e](https://x.org/a.md)\n",
        );
        assert!(html.contains(r#"<h1 id="runbook-db">"#), "{html}");
        assert!(html.contains(r#"<h2 id="webnodedown">"#) && html.contains(r#"<h2 id="webnodedown-1">"#), "{html}");
        assert!(html.contains(r#"href="hosts/db1.html#x""#) && html.contains(r#"href="index.html""#), "{html}");
        assert!(html.contains(r#"href="../../hosts/db1/root/etc/hosts""#) && html.contains(r##"href="#y""##), "{html}");
        assert!(html.contains(r#"href="https://x.org/a.md""#), "{html}");
    }

    #[test]
    fn raw_html_is_text() {
        let html = to_html("<script>alert(1)</script>\n\na <b>b</b>\n");
        assert!(!html.contains("<script>") && !html.contains("<b>"), "{html}");
    }
}
