//! What the CLI prints of stored data goes through here: a line of text with every
//! control character escaped (`\n`, `\u{1b}`), so an actor, a reason or a stream id in
//! the store can never forge an extra line or drive the auditor's terminal. (New data
//! cannot hold such characters; data from before the rule, or written around the
//! platform, can.)

use std::fmt::Display;

/// Print one line of `text`, escaped.
pub fn line(text: impl Display) {
    println!("{}", crm_domain::text::escaped(&text.to_string()));
}
