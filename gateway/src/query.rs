//! Query strings as the official server reads them (a leaf): keys compared without regard to case
//! (`negotiateVersion` and `NegotiateVersion` are the same), values percent-decoded.

/// The decoded pairs of a request's query string.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    /// Parses a raw query string (without `?`); `None` is an empty query.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw.map(|raw| form_urlencoded::parse(raw.as_bytes()).into_owned().collect()).unwrap_or_default();
        Self { pairs }
    }

    /// A copy without the given keys (compared case-insensitively).
    pub fn without(&self, keys: &[&str]) -> Self {
        let kept = self.pairs.iter().filter(|(k, _)| !keys.iter().any(|key| k.eq_ignore_ascii_case(key)));
        Self { pairs: kept.cloned().collect() }
    }

    /// Every pair, in the order sent.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// The pairs as a query string again (without `?`), percent-encoded.
    pub fn encode(&self) -> String {
        form_urlencoded::Serializer::new(String::new()).extend_pairs(&self.pairs).finish()
    }

    /// The first value of `key`, compared case-insensitively.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_case_and_values_are_decoded() {
        let query = QueryParams::parse(Some("NegotiateVersion=1&id=a%2Bb&x=%F0%9F%8E%89"));
        assert_eq!(query.get("negotiateVersion"), Some("1"));
        assert_eq!(query.get("ID"), Some("a+b"));
        assert_eq!(query.get("x"), Some("🎉"));
        assert_eq!(query.get("missing"), None);
        assert_eq!(QueryParams::parse(Some(&query.encode())).get("x"), Some("🎉"));
    }
}
