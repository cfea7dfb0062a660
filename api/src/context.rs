//! The destination `context_token`: JSON describing the caller.

use serde::{Deserialize, Serialize};

/// Who is asking the destination service; sent as JSON in `GetDestination.context_token`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextToken {
    /// The caller's namespace.
    pub ns: String,
    /// The caller's pod name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

impl ContextToken {
    /// Encodes the token as JSON.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a token; an empty or malformed token gives the default (no namespace).
    pub fn decode(s: &str) -> Self {
        serde_json::from_str(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = ContextToken {
            ns: "shop".into(),
            pod: Some("web-0".into()),
        };
        assert_eq!(ContextToken::decode(&t.encode()), t);
        assert_eq!(ContextToken::decode("garbage"), ContextToken::default());
    }
}
