//! Which characters text may hold, and how text is shown where it could mislead.
//!
//! No text the platform stores may hold a NUL (PostgreSQL cannot store it) or a control
//! character that a terminal, a log reader or a spreadsheet would act on: escape
//! sequences, backspaces, bidirectional overrides. Free text (a reason, a contact's
//! summary, a complaint's description) may span lines; every other field is one line.
//! The ingress checks every string of a command against these rules and names the
//! field it refuses (`crm_contracts::wire::check_text`), as `crm policy publish` does for
//! a document; a new actor checks itself ([`crate::Actor`]'s `FromStr`). Text read back
//! from the store is not checked again (older events may hold what is refused now): it
//! is shown [`escaped`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// One line: an identifier, a name, a code.
    Line,
    /// Free text: tabs and line breaks allowed.
    Multiline,
}

/// Why a text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadText {
    #[error("contains a NUL character, which cannot be stored")]
    Nul,
    #[error("contains the control character U+{:04X}", *.0 as u32)]
    Control(char),
    #[error("contains the line break or tab U+{:04X}; this field is one line", *.0 as u32)]
    LineBreak(char),
    #[error("contains the bidirectional formatting character U+{:04X}", *.0 as u32)]
    Bidi(char),
}

/// Bidirectional embeddings, overrides and isolates: they reorder what a reader sees.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Line breaks and the tab: allowed in free text only.
fn is_layout(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

/// Check one character against the rules for `kind`.
pub fn check_char(c: char, kind: TextKind) -> Result<(), BadText> {
    if c == '\0' {
        return Err(BadText::Nul);
    }
    if is_layout(c) {
        return match kind {
            TextKind::Multiline => Ok(()),
            TextKind::Line => Err(BadText::LineBreak(c)),
        };
    }
    if c.is_control() {
        return Err(BadText::Control(c));
    }
    if is_bidi_control(c) {
        return Err(BadText::Bidi(c));
    }
    Ok(())
}

/// Check a text against the rules for `kind`: the first offending character.
pub fn check(s: &str, kind: TextKind) -> Result<(), BadText> {
    s.chars().try_for_each(|c| check_char(c, kind))
}

/// `s` with every character a terminal or log reader could act on written as an escape
/// (`\n`, `\u{1b}`): for log lines and command-line output, where stored text from
/// before these rules (or from a foreign store) must not forge a line or move a cursor.
pub fn escaped(s: &str) -> Cow<'_, str> {
    let needs =
        |c: char| c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}');
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_refuses_what_free_text_allows() {
        assert_eq!(check("east-1", TextKind::Line), Ok(()));
        assert_eq!(check("上海 分行", TextKind::Line), Ok(()));
        assert_eq!(check("a\nb", TextKind::Line), Err(BadText::LineBreak('\n')));
        assert_eq!(check("a\nb\tc\r\n", TextKind::Multiline), Ok(()));
        for kind in [TextKind::Line, TextKind::Multiline] {
            assert_eq!(check("ab\0c", kind), Err(BadText::Nul));
            assert_eq!(check("\u{1b}[2J", kind), Err(BadText::Control('\u{1b}')));
            assert_eq!(check("x\u{7f}", kind), Err(BadText::Control('\u{7f}')));
            assert_eq!(check("x\u{9b}", kind), Err(BadText::Control('\u{9b}')));
            assert_eq!(
                check("abc\u{202E}fdp.exe", kind),
                Err(BadText::Bidi('\u{202E}'))
            );
        }
    }

    #[test]
    fn escaped_text_has_no_control_characters_and_leaves_clean_text_alone() {
        assert!(matches!(escaped("person:li.wei 李伟"), Cow::Borrowed(_)));
        let forged = "x\n2026-12-06 ERROR forged\u{1b}[2J\u{202E}";
        let shown = escaped(forged);
        assert_eq!(shown, "x\\n2026-12-06 ERROR forged\\u{1b}[2J\\u{202e}");
        assert!(shown.chars().all(|c| !c.is_control()));
    }
}
