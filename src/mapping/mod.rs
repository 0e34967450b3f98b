//! Declarative field mapping: one YAML file per organization turns a [`Lead`]
//! into the JSON body of a Dataverse record.
//!
//! The file is parsed once into [`Mapping`], which cannot represent an invalid
//! mapping; rendering a lead can then never fail. See `mappings/contoso.yaml`
//! and the README for the file format.

mod columns;
mod fit;
mod parse;
mod source;
mod template;
mod text;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::ids::{LeadId, RecordId};
use crate::lead::{Lead, OrgName};

pub use columns::{Finding, Severity};
pub use fit::{Cut, Fitted, MovedEmail};
use source::SourcePath;
use template::Template;
pub use template::TextTemplate;

/// The Dataverse entity set a mapping writes to unless it says otherwise.
pub(crate) const DEFAULT_ENTITY_SET: &str = "leads";

/// The suffix of a lookup column set by reference (`ownerid@odata.bind`).
const BIND_SUFFIX: &str = "@odata.bind";

/// A validated mapping file.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    entity_set: String,
    primary_key: String,
    fields: Vec<(String, FieldSpec)>,
}

/// How one target attribute gets its value.
#[derive(Debug, Clone, PartialEq)]
struct FieldSpec {
    source: Source,
    transforms: Vec<Transform>,
    map: Option<BTreeMap<String, Value>>,
    default: Option<Value>,
    /// Whether the column takes line breaks; column metadata, when known,
    /// decides instead. Without either: single.
    lines: Option<Lines>,
}

/// How a text column takes line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lines {
    /// CR, LF and other control characters become a space.
    Single,
    /// Line breaks and tabs are kept; other control characters become a space.
    Multi,
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Path(SourcePath),
    Template(Template),
    Constant(Value),
    /// `@odata.bind`: `/entityset(id)`.
    Bind {
        entity_set: String,
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transform {
    Trim,
    Lower,
    Upper,
    Truncate { max: usize, ellipsis: bool },
}

/// What the lead is rendered together with.
#[derive(Debug, Clone)]
pub struct RenderContext<'a> {
    pub lead: &'a Lead,
    pub lead_id: LeadId,
    pub org: &'a OrgName,
    pub received_at: OffsetDateTime,
}

/// A rendered record, ready to be created in `entity_set`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub entity_set: String,
    pub primary_key: String,
    pub body: Map<String, Value>,
}

impl Record {
    /// Sets the client-generated primary key, which makes a retried create
    /// idempotent: Dataverse refuses a second record with the same key.
    pub fn with_primary_key(mut self, id: RecordId) -> Self {
        self.body
            .insert(self.primary_key.clone(), Value::String(id.to_string()));
        self
    }
}

/// One problem in a mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingIssue {
    /// Dotted location in the file, e.g. `fields.subject.transform[1]`.
    pub key: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("{file}: cannot read mapping file: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid YAML: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{}", format_issues(file, issues))]
    Invalid {
        file: PathBuf,
        issues: Vec<MappingIssue>,
    },
}

fn format_issues(file: &Path, issues: &[MappingIssue]) -> String {
    let mut out = format!(
        "{}: {} problem(s) in mapping file",
        file.display(),
        issues.len()
    );
    for i in issues {
        out.push_str(&format!("\n  {}: {}: {}", file.display(), i.key, i.reason));
    }
    out
}

impl fmt::Display for MappingIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl Mapping {
    pub fn load(path: &Path) -> Result<Self, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Io {
            file: path.to_owned(),
            source,
        })?;
        Self::from_yaml(path, &text)
    }

    /// Parses and validates a whole file; every problem is reported, not just the first.
    pub fn from_yaml(file: &Path, text: &str) -> Result<Self, MappingError> {
        let doc: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| MappingError::Syntax {
                file: file.to_owned(),
                message: e.to_string(),
            })?;
        parse::mapping(&doc).map_err(|issues| MappingError::Invalid {
            file: file.to_owned(),
            issues,
        })
    }

    pub fn entity_set(&self) -> &str {
        &self.entity_set
    }

    pub fn render(&self, ctx: &RenderContext<'_>) -> Record {
        let mut body = Map::new();
        for (target, spec) in &self.fields {
            if let Some(v) = spec.render(ctx) {
                body.insert(target.clone(), v);
            }
        }
        Record {
            entity_set: self.entity_set.clone(),
            primary_key: self.primary_key.clone(),
            body,
        }
    }
}

impl FieldSpec {
    fn render(&self, ctx: &RenderContext<'_>) -> Option<Value> {
        let raw = match &self.source {
            Source::Path(p) => p.resolve(ctx).map(Value::String),
            Source::Template(t) => {
                let s = t.render(|p| p.resolve(ctx));
                (!s.trim().is_empty()).then_some(Value::String(s))
            }
            Source::Constant(v) => Some(v.clone()),
            Source::Bind { entity_set, id } => Some(Value::String(format!("/{entity_set}({id})"))),
        };
        let transformed = raw.map(|v| match v {
            Value::String(s) => Value::String(apply_transforms(s, &self.transforms)),
            other => other,
        });
        let mapped = match (&self.map, transformed) {
            (Some(map), Some(v)) => lookup_map(map, &v),
            (_, v) => v,
        };
        let present = mapped.filter(|v| !matches!(v, Value::String(s) if s.is_empty()));
        present.or_else(|| self.default.clone())
    }
}

/// Exact key first, then ignoring case: senders are inconsistent about casing.
fn lookup_map(map: &BTreeMap<String, Value>, v: &Value) -> Option<Value> {
    let key = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    map.get(&key)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                .map(|(_, v)| v)
        })
        .cloned()
}

fn apply_transforms(mut s: String, transforms: &[Transform]) -> String {
    for t in transforms {
        s = match *t {
            Transform::Trim => s.trim().to_owned(),
            Transform::Lower => s.to_lowercase(),
            Transform::Upper => s.to_uppercase(),
            Transform::Truncate { max, ellipsis } => text::cut(s, max, ellipsis),
        };
    }
    s
}

#[cfg(test)]
mod tests;
