//! Facts for the review: an entity's fields as comparable values. The model's own
//! vocabulary, so the families (which add facts of their keys) and the review (which
//! compares them) both use it without depending on each other.

use super::Site;

/// One fact of an entity: a value, or a list compared item by item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// A scalar (`""` when unset).
    One(String),
    /// A list, compared as a set of items.
    Many(Vec<String>),
}

impl Val {
    /// A list from any items.
    pub fn many<T: ToString>(items: impl IntoIterator<Item = T>) -> Val {
        Val::Many(items.into_iter().map(|x| x.to_string()).collect())
    }
    /// The value as one line.
    pub fn text(&self) -> String {
        match self {
            Val::One(s) => s.clone(),
            Val::Many(v) => v.join(", "),
        }
    }
}

impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::One(s)
    }
}

/// A fact a family adds to an entity of the summary.
#[derive(Debug, Clone)]
pub struct Fact {
    /// Category of the entity (`service`, `exposure`, or the family's own, `certificate`).
    pub category: &'static str,
    /// The entity, as the core names it ([`exposure_subject`] for exposures).
    pub subject: String,
    /// Field name, as written in the site.
    pub field: &'static str,
    /// Value.
    pub value: Val,
}

/// The identity of an exposure in the summary: its service and its place in `expose`,
/// so a change of its hostname or path reads as one changed exposure (the summary shows
/// it by its URL, [`exposure_url`]).
pub fn exposure_subject(site: &Site, service: super::ServiceId, e: &super::Expose) -> String {
    format!("{} expose[{}]", site.service(service).name, e.index)
}

/// How the summary shows an exposure.
pub fn exposure_url(site: &Site, service: super::ServiceId, e: &super::Expose) -> String {
    format!("https://{}{} → {}", e.hostname.value, e.path.value, site.service(service).name)
}
