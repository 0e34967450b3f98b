//! From a YAML document to a [`Mapping`], collecting every problem on the way.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_norway::Value as Yaml;

use super::source::SourcePath;
use super::template::Template;
use super::{
    BIND_SUFFIX, DEFAULT_ENTITY_SET, FieldSpec, Lines, Mapping, MappingIssue, Source, Transform,
};

const TOP_KEYS: [&str; 3] = ["entity_set", "primary_key", "fields"];
const SOURCE_KEYS: [&str; 4] = ["from", "template", "value", "bind"];
const FIELD_KEYS: [&str; 8] = [
    "from",
    "template",
    "value",
    "bind",
    "transform",
    "map",
    "default",
    "lines",
];

/// Collects issues under a key prefix.
struct Issues(Vec<MappingIssue>);

impl Issues {
    fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(MappingIssue {
            key: key.into(),
            reason: reason.into(),
        });
    }
}

pub(super) fn mapping(doc: &Yaml) -> Result<Mapping, Vec<MappingIssue>> {
    let mut issues = Issues(Vec::new());
    let Some(top) = doc.as_mapping() else {
        issues.push(
            "(top)",
            format!("expected a mapping with `fields:`, got {}", kind(doc)),
        );
        return Err(issues.0);
    };
    for k in top.keys() {
        match k.as_str() {
            Some(s) if TOP_KEYS.contains(&s) => {}
            _ => issues.push(
                key_text(k),
                format!("unknown key; expected one of {}", TOP_KEYS.join(", ")),
            ),
        }
    }

    let entity_set = match top.get("entity_set") {
        None => DEFAULT_ENTITY_SET.to_owned(),
        Some(v) => identifier(v, "entity_set", &mut issues).unwrap_or_default(),
    };
    let primary_key = match top.get("primary_key") {
        Some(v) => identifier(v, "primary_key", &mut issues).unwrap_or_default(),
        None if entity_set == DEFAULT_ENTITY_SET => "leadid".to_owned(),
        None => {
            issues.push(
                "primary_key",
                format!(
                    "required when entity_set is not `{DEFAULT_ENTITY_SET}`: the primary key column of `{entity_set}` \
                     (e.g. contactid), which leadbridge sets so that a retried create never makes a second record"
                ),
            );
            String::new()
        }
    };

    let mut fields = Vec::new();
    match top.get("fields") {
        None => issues.push("fields", "missing: a mapping needs at least one field"),
        Some(Yaml::Mapping(m)) if m.is_empty() => {
            issues.push("fields", "empty: a mapping needs at least one field")
        }
        Some(Yaml::Mapping(m)) => {
            for (k, v) in m {
                let Some(target) = k.as_str() else {
                    issues.push(
                        format!("fields.{}", key_text(k)),
                        "target column names must be strings",
                    );
                    continue;
                };
                let key = format!("fields.{target}");
                if !primary_key.is_empty() && target == primary_key {
                    issues.push(
                        &key,
                        "leadbridge sets the primary key itself (a client-generated id makes retries idempotent)",
                    );
                    continue;
                }
                let target_ok = check_target(target, &key, &mut issues);
                if let Some(spec) = field(v, target, &key, &mut issues)
                    && target_ok
                {
                    fields.push((target.to_owned(), spec));
                }
            }
        }
        Some(other) => issues.push(
            "fields",
            format!(
                "expected a mapping of column name to source, got {}",
                kind(other)
            ),
        ),
    }

    if issues.0.is_empty() {
        Ok(Mapping {
            entity_set,
            primary_key,
            fields,
        })
    } else {
        Err(issues.0)
    }
}

fn check_target(target: &str, key: &str, issues: &mut Issues) -> bool {
    let column = target.strip_suffix(BIND_SUFFIX).unwrap_or(target);
    if is_identifier(column) {
        true
    } else {
        issues.push(
            key,
            "not a Dataverse column name: use the logical name (lowercase letters, digits, `_`), \
             optionally followed by @odata.bind for a lookup",
        );
        false
    }
}

/// The record a lookup points at is the publisher's choice, never a
/// marketplace customer's: no value from the lead, no template.
fn only_bind() -> String {
    format!(
        "a `{BIND_SUFFIX}` column takes only `bind: {{entity_set: …, id: …}}`, so that no lead can choose which record it points at"
    )
}

fn field(v: &Yaml, target: &str, key: &str, issues: &mut Issues) -> Option<FieldSpec> {
    let is_bind_target = target.ends_with(BIND_SUFFIX);
    // A bare string is a source path: `firstname: UserDetails.FirstName`.
    if let Some(path) = v.as_str() {
        if is_bind_target {
            issues.push(key, only_bind());
            return None;
        }
        return match SourcePath::parse(path) {
            Ok(p) => Some(FieldSpec {
                source: Source::Path(p),
                transforms: Vec::new(),
                map: None,
                default: None,
                lines: None,
            }),
            Err(e) => {
                issues.push(key, e);
                None
            }
        };
    }
    let Some(m) = v.as_mapping() else {
        issues.push(
            key,
            format!(
                "expected a source path or a mapping with one of {}, got {}",
                SOURCE_KEYS.join(", "),
                kind(v)
            ),
        );
        return None;
    };
    let before = issues.0.len();
    for k in m.keys() {
        if !k.as_str().is_some_and(|s| FIELD_KEYS.contains(&s)) {
            issues.push(
                format!("{key}.{}", key_text(k)),
                format!("unknown key; expected one of {}", FIELD_KEYS.join(", ")),
            );
        }
    }
    let given: Vec<&str> = SOURCE_KEYS
        .iter()
        .copied()
        .filter(|s| m.contains_key(*s))
        .collect();
    let source = match given.as_slice() {
        [one] => source(
            one,
            m.get(*one).unwrap_or(&Yaml::Null),
            &format!("{key}.{one}"),
            issues,
        ),
        [] => {
            issues.push(
                key,
                format!("needs exactly one source: {}", SOURCE_KEYS.join(", ")),
            );
            None
        }
        many => {
            issues.push(
                key,
                format!(
                    "has several sources ({}); keep exactly one",
                    many.join(", ")
                ),
            );
            None
        }
    };
    match &source {
        Some(Source::Bind { .. }) if !is_bind_target => issues.push(
            format!("{key}.bind"),
            format!("a lookup must target `<column>{BIND_SUFFIX}`, e.g. `ownerid{BIND_SUFFIX}`"),
        ),
        Some(Source::Path(_) | Source::Template(_) | Source::Constant(_)) if is_bind_target => {
            issues.push(key.to_owned(), only_bind())
        }
        _ => {}
    }

    let transforms = m
        .get("transform")
        .map(|t| transforms(t, &format!("{key}.transform"), issues))
        .unwrap_or_default();
    let map = m
        .get("map")
        .and_then(|t| value_map(t, &format!("{key}.map"), issues));
    let default = m
        .get("default")
        .and_then(|d| scalar(d, &format!("{key}.default"), issues));
    let lines = m.get("lines").and_then(|l| match l.as_str() {
        Some("single") => Some(Lines::Single),
        Some("multi") => Some(Lines::Multi),
        _ => {
            issues.push(
                format!("{key}.lines"),
                "expected single (line breaks become spaces) or multi (kept)",
            );
            None
        }
    });

    if issues.0.len() > before {
        return None;
    }
    Some(FieldSpec {
        source: source?,
        transforms,
        map,
        default,
        lines,
    })
}

fn source(kind_key: &str, v: &Yaml, key: &str, issues: &mut Issues) -> Option<Source> {
    match kind_key {
        "from" => match v.as_str().map(SourcePath::parse) {
            Some(Ok(p)) => Some(Source::Path(p)),
            Some(Err(e)) => {
                issues.push(key, e);
                None
            }
            None => {
                issues.push(
                    key,
                    format!(
                        "expected a source path such as UserDetails.Email, got {}",
                        kind(v)
                    ),
                );
                None
            }
        },
        "template" => match v.as_str().map(Template::parse) {
            Some(Ok(t)) => Some(Source::Template(t)),
            Some(Err(e)) => {
                issues.push(key, e);
                None
            }
            None => {
                issues.push(key, format!("expected a string, got {}", kind(v)));
                None
            }
        },
        "value" => scalar(v, key, issues).map(Source::Constant),
        "bind" => bind(v, key, issues),
        _ => None,
    }
}

fn bind(v: &Yaml, key: &str, issues: &mut Issues) -> Option<Source> {
    let Some(m) = v.as_mapping() else {
        issues.push(
            key,
            format!(
                "expected `{{entity_set: teams, id: <guid>}}`, got {}",
                kind(v)
            ),
        );
        return None;
    };
    for k in m.keys() {
        if !matches!(k.as_str(), Some("entity_set" | "id")) {
            issues.push(
                format!("{key}.{}", key_text(k)),
                "unknown key; expected entity_set, id",
            );
        }
    }
    let entity_set = match m.get("entity_set") {
        Some(e) => identifier(e, &format!("{key}.entity_set"), issues),
        None => {
            issues.push(
                key,
                "missing entity_set (e.g. teams, systemusers, contacts)",
            );
            None
        }
    };
    let id = match m.get("id").and_then(Yaml::as_str).map(str::trim) {
        Some(id) if is_record_key(id) => Some(id.to_owned()),
        Some(_) => {
            issues.push(
                format!("{key}.id"),
                "expected a record id (GUID) or an alternate key such as accountnumber='A-1'",
            );
            None
        }
        None => {
            issues.push(
                format!("{key}.id"),
                "missing: the id of the record to link to",
            );
            None
        }
    };
    Some(Source::Bind {
        entity_set: entity_set?,
        id: id?,
    })
}

fn transforms(v: &Yaml, key: &str, issues: &mut Issues) -> Vec<Transform> {
    let items: Vec<&Yaml> = match v {
        Yaml::Sequence(s) => s.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ikey = format!("{key}[{i}]");
        match transform(item) {
            Ok(t) => out.push(t),
            Err(e) => issues.push(ikey, e),
        }
    }
    out
}

fn transform(v: &Yaml) -> Result<Transform, String> {
    const KNOWN: &str = "trim, lower, upper, {truncate: N}, {truncate: {max: N, ellipsis: true}}";
    if let Some(name) = v.as_str() {
        return match name {
            "trim" => Ok(Transform::Trim),
            "lower" => Ok(Transform::Lower),
            "upper" => Ok(Transform::Upper),
            "truncate" => Err("truncate needs a length: {truncate: N}".into()),
            other => Err(format!(
                "unknown transform `{other}`; expected one of {KNOWN}"
            )),
        };
    }
    let m = v
        .as_mapping()
        .filter(|m| m.len() == 1)
        .ok_or_else(|| format!("expected one of {KNOWN}, got {}", kind(v)))?;
    let (name, arg) = m.iter().next().ok_or("empty transform")?;
    if name.as_str() != Some("truncate") {
        return Err(format!(
            "unknown transform `{}`; expected one of {KNOWN}",
            key_text(name)
        ));
    }
    let (max, ellipsis) = match arg {
        Yaml::Mapping(opts) => {
            for k in opts.keys() {
                if !matches!(k.as_str(), Some("max" | "ellipsis")) {
                    return Err(format!(
                        "truncate: unknown option `{}`; expected max, ellipsis",
                        key_text(k)
                    ));
                }
            }
            let ellipsis = match opts.get("ellipsis") {
                None => false,
                Some(Yaml::Bool(b)) => *b,
                Some(other) => {
                    return Err(format!(
                        "truncate.ellipsis must be true or false, got {}",
                        kind(other)
                    ));
                }
            };
            (opts.get("max"), ellipsis)
        }
        other => (Some(other), false),
    };
    match max.and_then(Yaml::as_u64) {
        Some(n) if n >= 1 => Ok(Transform::Truncate {
            max: usize::try_from(n).map_err(|_| "truncate length too large".to_owned())?,
            ellipsis,
        }),
        _ => Err("truncate needs a whole number of characters, at least 1".into()),
    }
}

fn value_map(v: &Yaml, key: &str, issues: &mut Issues) -> Option<BTreeMap<String, Value>> {
    let Some(m) = v.as_mapping() else {
        issues.push(
            key,
            format!(
                "expected a mapping of incoming value to Dataverse value, got {}",
                kind(v)
            ),
        );
        return None;
    };
    if m.is_empty() {
        issues.push(key, "empty value map");
        return None;
    }
    let mut out = BTreeMap::new();
    for (k, val) in m {
        let from = match k {
            Yaml::String(s) => s.clone(),
            Yaml::Number(n) => n.to_string(),
            Yaml::Bool(b) => b.to_string(),
            other => {
                issues.push(
                    format!("{key}.{}", key_text(other)),
                    "value-map keys must be strings or numbers",
                );
                continue;
            }
        };
        if let Some(to) = scalar(val, &format!("{key}.{from}"), issues) {
            out.insert(from, to);
        }
    }
    Some(out)
}

/// Dataverse columns take strings, numbers, booleans or null.
fn scalar(v: &Yaml, key: &str, issues: &mut Issues) -> Option<Value> {
    let out = match v {
        Yaml::Null => Some(Value::Null),
        Yaml::Bool(b) => Some(Value::Bool(*b)),
        Yaml::String(s) => Some(Value::String(s.clone())),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Value::from(i))
            } else if let Some(u) = n.as_u64() {
                Some(Value::from(u))
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            }
        }
        _ => None,
    };
    if out.is_none() {
        issues.push(
            key,
            format!(
                "expected a string, number, boolean or null, got {}",
                kind(v)
            ),
        );
    }
    out
}

fn identifier(v: &Yaml, key: &str, issues: &mut Issues) -> Option<String> {
    match v.as_str() {
        Some(s) if is_identifier(s) => Some(s.to_owned()),
        _ => {
            issues.push(
                key,
                "expected a Dataverse logical name: lowercase letters, digits and `_`",
            );
            None
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A GUID, or an alternate key `name='value'` / `name=123` (comma-separated for several).
fn is_record_key(s: &str) -> bool {
    if uuid::Uuid::parse_str(s).is_ok() {
        return true;
    }
    !s.is_empty()
        && !s.contains(['(', ')', '/'])
        && s.split(',').all(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, v)| is_identifier(k.trim()) && !v.trim().is_empty())
        })
}

fn key_text(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => format!("<{}>", kind(other)),
    }
}

fn kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}
