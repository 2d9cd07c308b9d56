//! Normalisation for the duplicate check (查重): two spellings of one phone number,
//! e-mail address or registration number must collide.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// `+86 138-0013-8000`, `008613800138000`, `13800138000` → `+8613800138000` (E.164).
/// An 11-digit number starting with 1 is a mainland mobile number.
pub fn normalize_phone(raw: &str) -> Result<String, DomainError> {
    // The value itself is never in the reason: it is personal data, and reasons are
    // logged.
    let bad = |why: &str| DomainError::invalid("phone", why);
    let mut s: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{3000}'))
        .collect();
    if let Some(rest) = s.strip_prefix("00") {
        s = format!("+{rest}");
    }
    if !s.starts_with('+') {
        if s.len() == 11 && s.starts_with('1') {
            s = format!("+86{s}");
        } else {
            return Err(bad(
                "needs a country code (+86…) or an 11-digit mainland mobile number",
            ));
        }
    }
    let digits = &s[1..];
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad(
            "may contain only digits, spaces, dashes, dots and parentheses",
        ));
    }
    if !(6..=15).contains(&digits.len()) {
        return Err(bad("must have 6 to 15 digits"));
    }
    Ok(s)
}

/// Trimmed and lower-cased; one `@`, a dotted domain.
pub fn normalize_email(raw: &str) -> Result<String, DomainError> {
    let s = raw.trim().to_lowercase();
    let bad = |why: &str| DomainError::invalid("email", why);
    if s.len() > 254 {
        return Err(bad("is longer than 254 characters"));
    }
    let (local, domain) = s.split_once('@').ok_or_else(|| bad("has no @"))?;
    if local.is_empty() || domain.contains('@') || s.chars().any(char::is_whitespace) {
        return Err(bad("is not an e-mail address"));
    }
    if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
        return Err(bad("has no valid domain"));
    }
    Ok(s)
}

/// Registration numbers (e.g. the 18-character unified social credit code): upper case,
/// without spaces and dashes.
pub fn normalize_registration_number(raw: &str) -> Result<String, DomainError> {
    let s: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect::<String>()
        .to_uppercase();
    if !(5..=32).contains(&s.len()) || !s.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(DomainError::invalid(
            "registration_number",
            "must be 5 to 32 letters and digits",
        ));
    }
    Ok(s)
}

/// A key no two customers may share: `phone:+86…`, `email:…`, `regno:…`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UniqueKey(String);

impl UniqueKey {
    /// From an already normalised phone number.
    pub fn phone(normalized: &str) -> Self {
        Self(format!("phone:{normalized}"))
    }
    pub fn email(normalized: &str) -> Self {
        Self(format!("email:{normalized}"))
    }
    pub fn registration_number(normalized: &str) -> Self {
        Self(format!("regno:{normalized}"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `phone`, `email` or `regno`.
    pub fn kind(&self) -> &str {
        self.0.split_once(':').map_or("", |(k, _)| k)
    }
}

impl fmt::Display for UniqueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_in_many_spellings_collide() {
        for raw in [
            "+86 138-0013-8000",
            "008613800138000",
            "13800138000",
            "(+86) 138.0013.8000",
            "+8613800138000",
        ] {
            assert_eq!(normalize_phone(raw).unwrap(), "+8613800138000", "{raw}");
        }
        assert_eq!(
            normalize_phone("+44 20 7946 0958").unwrap(),
            "+442079460958"
        );
    }

    #[test]
    fn bad_phones_are_refused() {
        for raw in [
            "",
            "12345",
            "0212345678",
            "+86 138 abc",
            "+1234",
            "+1234567890123456",
        ] {
            let e = normalize_phone(raw).unwrap_err();
            assert_eq!(e.code(), "validation.invalid_field", "{raw}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("  Li.Wei@Example.CN ").unwrap(),
            "li.wei@example.cn"
        );
        for raw in [
            "", "a", "@x.cn", "a@b", "a@@b.cn", "a b@c.cn", "a@.cn", "a@cn.",
        ] {
            assert!(normalize_email(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn registration_numbers() {
        assert_eq!(
            normalize_registration_number("91310000-7178 1234 5x").unwrap(),
            "9131000071781234 5X".replace(' ', "")
        );
        for raw in ["", "1234", "91-31*", &"9".repeat(33)] {
            assert!(normalize_registration_number(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn keys_carry_their_kind() {
        assert_eq!(
            UniqueKey::phone("+8613800138000").as_str(),
            "phone:+8613800138000"
        );
        assert_eq!(UniqueKey::email("a@b.cn").kind(), "email");
    }
}
