//! What drplan prints from its input never reaches the terminal as a control sequence.
//!
//! A plan under review is untrusted text: an id, a reference, an object name or a
//! comment could carry `ESC [2J` (clear the screen), colours that fake output, or an
//! OSC sequence that sets the window title. [`is_unsafe`] is the one definition of what
//! must not be printed raw: C0 controls except line feed and tab (which are layout),
//! DEL, C1 controls, and the bidirectional overrides that reorder text on screen
//! ("Trojan Source"). [`escape`] is applied at the output boundary (diagnostics, `dr
//! graph`, `dr plan` text, CLI messages); JSON output relies on JSON's own escaping.

use std::borrow::Cow;

/// Whether a character must not be written raw to a terminal.
pub fn is_unsafe(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        // Bidirectional embeddings, overrides and isolates.
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// The text with every unsafe character written as a Rust-style escape (`\x1b`,
/// `\u{9b}`); borrowed unchanged when there is nothing to escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !is_unsafe(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// The text with every unsafe character replaced by `?` repeated to its UTF-8 length,
/// so byte offsets (the spans of source snippets) stay valid. Used for the source
/// lines quoted under a diagnostic, whose labels point into them by byte offset.
pub fn mask(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(std::iter::repeat_n('?', c.len_utf8()));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_are_escaped() {
        assert_eq!(escape("a\u{1b}[2J\u{1b}[31mb"), "a\\x1b[2J\\x1b[31mb");
        assert_eq!(escape("\u{1b}]0;title\u{7}"), "\\x1b]0;title\\x07");
        assert_eq!(escape("x\u{9b}31m\u{7f}\r"), "x\\u{9b}31m\\x7f\\x0d");
        assert_eq!(escape("rtl\u{202e}gnp.exe"), "rtl\\u{202e}gnp.exe");
        assert!(matches!(escape("plain\ttext\nwith ünïcode"), Cow::Borrowed(_)));
    }

    #[test]
    fn masking_keeps_byte_offsets() {
        let text = "id: a\u{1b}[2J\u{9b}b";
        let masked = mask(text);
        assert_eq!(masked.len(), text.len());
        assert_eq!(masked, "id: a?[2J??b");
    }
}
