//! A mapping measured against Dataverse's column metadata: the findings of
//! `check --live`, and the cut to MaxLength the worker applies at delivery.
//! Pure functions: the metadata is fetched elsewhere.

use serde::Serialize;
use serde_json::Value;

use super::template::Part;
use super::{BIND_SUFFIX, FieldSpec, Mapping, Source, Transform, text};
use crate::entity::{Attribute, EntityMetadata};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The mapping cannot work against this organization.
    Error,
    /// It works, but values may be changed on the way (cut to MaxLength).
    Warning,
    /// Something that was not checked, said so.
    Note,
}

/// One thing `check --live` has to say about a mapping field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Where in the mapping file: `fields.subject`.
    pub key: String,
    pub message: String,
}

/// In UTF-16 units, as Dataverse counts `MaxLength` ([`text`]).
fn text_len(v: &Value) -> usize {
    match v {
        Value::String(s) => text::length(s),
        Value::Null => 0,
        other => text::length(&other.to_string()),
    }
}

impl FieldSpec {
    /// The longest text this field can render (in UTF-16 units), or `None`
    /// when the lead decides.
    fn max_len(&self) -> Option<usize> {
        let mut bound = match &self.source {
            Source::Path(p) => p.max_len(),
            Source::Template(t) => t.parts().iter().try_fold(0usize, |acc, part| {
                Some(
                    acc + match part {
                        Part::Text(s) => text::length(s),
                        Part::Field(p) => p.max_len()?,
                    },
                )
            }),
            Source::Constant(v) => Some(text_len(v)),
            Source::Bind { entity_set, id } => Some(text::length(entity_set) + id.len() + 3),
        };
        for t in &self.transforms {
            if let Transform::Truncate { max, .. } = t {
                bound = Some(bound.map_or(*max, |b| b.min(*max)));
            }
        }
        if let Some(map) = &self.map {
            // A value the map does not know falls to the default: the map decides.
            bound = Some(map.values().map(text_len).max().unwrap_or(0));
        }
        match (&self.default, bound) {
            (Some(d), Some(b)) => Some(b.max(text_len(d))),
            (_, b) => b,
        }
    }

    /// The ellipsis choice of the field's last truncate, if it has one.
    pub(super) fn truncate_ellipsis(&self) -> Option<bool> {
        self.transforms.iter().rev().find_map(|t| match t {
            Transform::Truncate { ellipsis, .. } => Some(*ellipsis),
            _ => None,
        })
    }

    fn truncate_max(&self) -> Option<usize> {
        self.transforms.iter().rev().find_map(|t| match t {
            Transform::Truncate { max, .. } => Some(*max),
            _ => None,
        })
    }

    /// The values this field can send as they are written in the file:
    /// constants, value-map results and the default.
    fn literal_values(&self) -> Vec<(&'static str, &Value)> {
        let mut out = Vec::new();
        if let Source::Constant(v) = &self.source {
            out.push(("value", v));
        }
        if let Some(map) = &self.map {
            out.extend(map.values().map(|v| ("map", v)));
        }
        if let Some(d) = &self.default {
            out.push(("default", d));
        }
        out
    }

    /// Whether text from the lead can reach the column unmapped.
    fn passes_lead_text(&self) -> bool {
        self.map.is_none() && matches!(self.source, Source::Path(_) | Source::Template(_))
    }
}

impl Mapping {
    /// What the organization's metadata says about each field: columns that
    /// do not exist or cannot be set, option values that are not options,
    /// text that can be longer than the column.
    pub fn check_against(&self, meta: &EntityMetadata) -> Vec<Finding> {
        let mut out = Vec::new();
        let entity = &meta.logical_name;
        for (target, spec) in &self.fields {
            let key = format!("fields.{target}");
            let mut push = |severity, message: String| {
                out.push(Finding {
                    severity,
                    key: key.clone(),
                    message,
                })
            };
            if let Some(column) = target.strip_suffix(BIND_SUFFIX) {
                match meta.attribute(column) {
                    None => push(
                        Severity::Error,
                        format!("entity {entity} has no column `{column}` to bind"),
                    ),
                    Some(a) if !a.is_lookup() => push(
                        Severity::Error,
                        format!(
                            "`{column}` is a {} column, not a lookup: @odata.bind needs a Lookup, Owner or Customer column",
                            a.attribute_type
                        ),
                    ),
                    Some(_) => {
                        let target_set = match &spec.source {
                            Source::Bind { entity_set, .. } => entity_set.as_str(),
                            _ => "?",
                        };
                        push(
                            Severity::Note,
                            format!(
                                "lookup column `{column}` exists; its navigation property name, the entity set `{target_set}` and the record are not checked (Dataverse checks them at delivery)"
                            ),
                        )
                    }
                }
                continue;
            }
            let Some(attr) = meta.attribute(target) else {
                push(
                    Severity::Error,
                    format!(
                        "entity {entity} has no column `{target}`: Dataverse refuses the whole record"
                    ),
                );
                continue;
            };
            if !attr.valid_for_create {
                push(
                    Severity::Error,
                    format!(
                        "column `{target}` cannot be set when a record is created (computed or system column)"
                    ),
                );
                continue;
            }
            if attr.is_picklist() {
                check_options(spec, target, attr, &mut push);
            } else if attr.is_text()
                && let Some(max) = attr.max_length
            {
                check_length(spec, max, &mut push);
            }
        }
        out
    }
}

fn check_options(
    spec: &FieldSpec,
    column: &str,
    attr: &Attribute,
    push: &mut impl FnMut(Severity, String),
) {
    let options = attr.options.as_deref().unwrap_or_default();
    let valid = || {
        options
            .iter()
            .map(|o| format!("{} {}", o.value, o.label))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (from, v) in spec.literal_values() {
        let ok = match v {
            Value::Null => true,
            Value::Number(n) => n
                .as_i64()
                .is_some_and(|n| options.iter().any(|o| o.value == n)),
            _ => false,
        };
        if !ok {
            push(
                Severity::Error,
                format!(
                    "{from} {v} is not an option of `{column}`; valid values: {}",
                    valid()
                ),
            );
        }
    }
    if spec.passes_lead_text() {
        push(
            Severity::Error,
            format!(
                "`{column}` is an option set but gets text from the lead as is; add a `map` to option values ({})",
                valid()
            ),
        );
    }
}

fn check_length(spec: &FieldSpec, max: usize, push: &mut impl FnMut(Severity, String)) {
    let bound = spec.max_len();
    if bound.is_some_and(|b| b <= max) {
        return;
    }
    let truncation = match spec.truncate_max() {
        Some(n) => format!("truncation is configured, but to {n} characters"),
        None => "no truncation is configured".to_owned(),
    };
    let size = match bound {
        Some(b) => format!("can be {b} characters"),
        None => "can be any length (it comes from the lead)".to_owned(),
    };
    push(
        Severity::Warning,
        format!(
            "value {size}, more than MaxLength {max}; {truncation}, so leadbridge cuts it to {max} at delivery"
        ),
    );
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    use super::*;
    use crate::entity::OptionValue;

    /// A default organization's lead columns, as the Dataverse client reads them.
    pub(in crate::mapping) fn lead_metadata() -> EntityMetadata {
        let column = |ty: &str, create: bool, max: Option<usize>| Attribute {
            attribute_type: ty.to_owned(),
            valid_for_create: create,
            max_length: max,
            format: (ty == "String").then(|| "Text".to_owned()),
            options: None,
        };
        let mut leadsourcecode = column("Picklist", true, None);
        leadsourcecode.options = Some(vec![
            OptionValue {
                value: 8,
                label: "Web".into(),
            },
            OptionValue {
                value: 10,
                label: "Other".into(),
            },
        ]);
        let attributes = [
            ("subject", column("String", true, Some(300))),
            ("firstname", column("String", true, Some(50))),
            ("companyname", column("String", true, Some(100))),
            (
                "emailaddress1",
                Attribute {
                    format: Some("Email".into()),
                    ..column("String", true, Some(100))
                },
            ),
            ("description", column("Memo", true, Some(2000))),
            ("fullname", column("String", false, Some(160))),
            ("leadsourcecode", leadsourcecode),
            ("ownerid", column("Owner", true, None)),
            ("leadid", column("Uniqueidentifier", true, None)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        EntityMetadata {
            logical_name: "lead".into(),
            attributes,
        }
    }

    pub(in crate::mapping) fn mapping(yaml: &str) -> Mapping {
        Mapping::from_yaml(Path::new("t.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn findings(yaml: &str) -> Vec<(Severity, String, String)> {
        mapping(yaml)
            .check_against(&lead_metadata())
            .into_iter()
            .map(|f| (f.severity, f.key, f.message))
            .collect()
    }

    #[test]
    fn reports_unknown_read_only_and_bind_columns() {
        let f = findings(
            "fields:\n  new_x: OfferTitle\n  fullname: UserDetails.LastName\n  ownerid@odata.bind: {bind: {entity_set: teams, id: 7a2b5c1e-0000-4000-8000-000000000001}}\n  subject@odata.bind: {bind: {entity_set: teams, id: 7a2b5c1e-0000-4000-8000-000000000001}}\n  new_y@odata.bind: {bind: {entity_set: teams, id: 7a2b5c1e-0000-4000-8000-000000000001}}\n",
        );
        assert_eq!(f.len(), 5, "{f:#?}");
        assert_eq!((f[0].0, f[0].1.as_str()), (Severity::Error, "fields.new_x"));
        assert!(f[0].2.contains("no column `new_x`"), "{}", f[0].2);
        assert_eq!(f[1].0, Severity::Error);
        assert!(f[1].2.contains("cannot be set"), "{}", f[1].2);
        assert_eq!(f[2].0, Severity::Note);
        assert!(f[2].2.contains("not checked"), "{}", f[2].2);
        assert_eq!(f[3].0, Severity::Error);
        assert!(f[3].2.contains("not a lookup"), "{}", f[3].2);
        assert_eq!(f[4].0, Severity::Error);
    }

    #[test]
    fn reports_option_values_that_are_not_options() {
        let f = findings(
            "fields:\n  leadsourcecode: {from: $source, map: {AzureMarketplace: 8, SPZA: 9}, default: 10}\n",
        );
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].0, Severity::Error);
        assert!(
            f[0].2.contains("map 9 is not an option") && f[0].2.contains("8 Web, 10 Other"),
            "{}",
            f[0].2
        );
        let f = findings("fields:\n  leadsourcecode: {value: 3}\n");
        assert!(f[0].2.starts_with("value 3 is not an option"), "{f:?}");
        let f = findings("fields:\n  leadsourcecode: {from: $source, default: 12}\n");
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f[0].2.starts_with("default 12"), "{f:?}");
        assert!(f[1].2.contains("add a `map`"), "{f:?}");
        assert!(findings("fields:\n  leadsourcecode: {value: 8}\n").is_empty());
    }

    #[test]
    fn reports_text_that_can_exceed_max_length() {
        let f = findings(
            "fields:\n  subject: {template: '{OfferTitle} ({UserDetails.Company})'}\n  firstname: {from: UserDetails.FirstName, transform: [{truncate: 80}]}\n  description: {from: Description, transform: [{truncate: {max: 2000, ellipsis: true}}]}\n",
        );
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(
            (f[0].0, f[0].1.as_str()),
            (Severity::Warning, "fields.subject")
        );
        assert!(
            f[0].2.contains("any length") && f[0].2.contains("no truncation is configured"),
            "{}",
            f[0].2
        );
        assert!(
            f[1].2.contains("to 80 characters") && f[1].2.contains("MaxLength 50"),
            "{}",
            f[1].2
        );
        // Bounded sources are measured: 36 + 2 + 63 characters fit in 300.
        assert!(findings("fields:\n  subject: {template: '{$lead_id} @{$org}'}\n").is_empty());
        let f = findings(&format!(
            "fields:\n  firstname: {{value: {}}}\n",
            "x".repeat(51)
        ));
        assert!(f[0].2.contains("can be 51 characters"), "{f:?}");
    }
}
