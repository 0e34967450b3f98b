//! `"{OfferTitle} ({UserDetails.Company})"`: text with source paths in braces.
//! `{{` and `}}` stand for literal braces.

use super::source::SourcePath;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Part {
    Text(String),
    Field(SourcePath),
}

impl Template {
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        let t = Self::parse_text(s)?;
        if !t.parts.iter().any(|p| matches!(p, Part::Field(_))) {
            return Err("template has no {field}: use `value:` for a constant".into());
        }
        Ok(t)
    }

    /// Like [`parse`](Self::parse), but text without a field is fine.
    fn parse_text(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = s.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let rest = &s[i + 1..];
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("unclosed '{{' at character {}", i + 1))?;
                    let path = SourcePath::parse(rest[..end].trim())?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Field(path));
                    // Skip the placeholder and its closing brace.
                    for _ in 0..=rest[..end].chars().count() {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(format!(
                        "unmatched '}}' at character {} (write '}}}}' for a literal brace)",
                        i + 1
                    ));
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self { parts })
    }

    pub(super) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Absent fields render as nothing.
    pub(super) fn render(&self, mut resolve: impl FnMut(&SourcePath) -> Option<String>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(path) => {
                    if let Some(v) = resolve(path) {
                        out.push_str(&v);
                    }
                }
            }
        }
        out
    }
}

/// A template for text outside a record: an e-mail's subject and bodies.
/// The same language as the mapping's `template:`, and the same values.
#[derive(Debug, Clone, PartialEq)]
pub struct TextTemplate(Template);

impl TextTemplate {
    pub fn parse(s: &str) -> Result<Self, String> {
        Template::parse_text(s).map(Self)
    }

    /// Each value goes through `escape` (HTML bodies escape them); the
    /// template's own text is kept as written.
    pub fn render(
        &self,
        ctx: &super::RenderContext<'_>,
        escape: impl Fn(&str) -> String,
    ) -> String {
        self.0.render(|path| path.resolve(ctx).map(|v| escape(&v)))
    }
}
