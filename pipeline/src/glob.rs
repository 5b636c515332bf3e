//! Event-type patterns: `*` matches any run of characters (dots and slashes included), everything else
//! matches itself. `invoice.*` matches `invoice.paid`; `*.test` matches `charge.test`; `orders/*` matches
//! `orders/create`.
//!
//! Written here rather than with `globset`: a shell glob also gives `?`, `[...]` and `{a,b}` a meaning, and an
//! event type holding one of them would then stop matching itself.

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    parts: Vec<String>,
    starts_open: bool,
    ends_open: bool,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Glob {
        Glob {
            parts: pattern.split('*').filter(|p| !p.is_empty()).map(str::to_owned).collect(),
            starts_open: pattern.starts_with('*'),
            ends_open: pattern.ends_with('*'),
        }
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let mut rest = text;
        let last = self.parts.len().saturating_sub(1);
        for (i, part) in self.parts.iter().enumerate() {
            if i == 0 && !self.starts_open {
                match rest.strip_prefix(part.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                }
            } else if i == last && !self.ends_open {
                return rest.len() >= part.len() && rest.ends_with(part.as_str());
            } else {
                match rest.find(part.as_str()) {
                    Some(at) => rest = &rest[at + part.len()..],
                    None => return false,
                }
            }
        }
        if self.parts.is_empty() {
            return self.starts_open || text.is_empty();
        }
        self.ends_open || rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn patterns() {
        let cases = [
            ("invoice.*", "invoice.paid", true),
            ("invoice.*", "invoice.", true),
            ("invoice.*", "invoices.paid", false),
            ("*.test", "charge.test", true),
            ("*.test", "charge.tested", false),
            ("orders/*", "orders/create", true),
            ("*", "", true),
            ("*", "anything/at.all", true),
            ("push", "push", true),
            ("push", "pushed", false),
            ("push", "", false),
            ("", "", true),
            ("", "x", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*ab*", "xaby", true),
            ("customer.*.updated", "customer.subscription.updated", true),
            ("customer.*.updated", "customer.updated", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(Glob::new(pattern).matches(text), want, "{pattern} vs {text}");
        }
    }
}
