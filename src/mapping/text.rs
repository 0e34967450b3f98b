//! Text measured and cut the way Dataverse counts it. A column's
//! `MaxLength` is in UTF-16 code units (it is .NET's `string.Length`): a
//! character outside the Basic Multilingual Plane — most emoji, rarer CJK
//! ideographs — counts two. Counting characters instead lets 25 emoji
//! (50 units) through as 25, and Dataverse refuses the record.

/// The length Dataverse sees.
pub(crate) fn length(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// `s` cut to at most `max` UTF-16 units, on a character boundary (never
/// half a surrogate pair); with `ellipsis`, the last unit kept is `…`, so
/// the result still fits.
pub(crate) fn cut(s: String, max: usize, ellipsis: bool) -> String {
    if length(&s) <= max {
        return s;
    }
    let budget = if ellipsis { max.saturating_sub(1) } else { max };
    let mut used = 0usize;
    let mut out = String::new();
    for c in s.chars() {
        let next = used.saturating_add(c.len_utf16());
        if next > budget {
            break;
        }
        used = next;
        out.push(c);
    }
    if ellipsis && max >= 1 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_utf16_units() {
        assert_eq!(length("abc"), 3);
        assert_eq!(length("Ωμέγα"), 5, "Greek is in the BMP");
        assert_eq!(length("山田"), 2);
        assert_eq!(length("😀"), 2, "outside the BMP: a surrogate pair");
        assert_eq!(length(&"😀".repeat(25)), 50);
        assert_eq!(length("𠮷野家"), 4);
    }

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(cut("Ωμέγα".into(), 3, false), "Ωμέ");
        // Three units of budget: one emoji (2) fits, the next would split.
        assert_eq!(cut("😀😀😀".into(), 3, false), "😀");
        assert_eq!(length(&cut("😀😀😀".into(), 3, false)), 2);
        assert_eq!(cut("😀😀😀".into(), 4, false), "😀😀");
        assert_eq!(cut("😀😀😀".into(), 3, true), "😀…");
        assert_eq!(cut("a😀".into(), 2, true), "a…");
        assert_eq!(cut("short".into(), 10, true), "short");
        assert_eq!(cut("abc".into(), 0, false), "");
        for max in 0..12 {
            for ellipsis in [false, true] {
                let out = cut("a😀b山😀😀c".into(), max, ellipsis);
                assert!(
                    length(&out) <= max.max(usize::from(ellipsis)),
                    "{max} {ellipsis}: {out}"
                );
            }
        }
    }
}
