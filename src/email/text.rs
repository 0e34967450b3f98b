//! Making untrusted text safe for where it goes.

/// One line of at most `max` characters: every control character (CR, LF,
/// tab, NEL) and Unicode line or paragraph separator becomes a space, runs
/// of white space become one, and `=?` loses its meaning as the start of an
/// RFC 2047 encoded word (a value cannot smuggle in a pre-encoded header
/// text). Longer text is cut with an ellipsis.
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max.saturating_mul(4)));
    let mut last_space = true;
    for c in s.chars() {
        let c = if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            ' '
        } else {
            c
        };
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    let out = out.trim_end().replace("=?", "= ?");
    if out.chars().count() <= max {
        return out;
    }
    let mut cut: String = out.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Text as HTML: `& < > " '` escaped, line breaks kept as `<br>`.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("<br>\n");
            }
            '\n' => out.push_str("<br>\n"),
            c => out.push(c),
        }
    }
    out
}
