//! Rendering objects as multi-document YAML or as one JSON `v1/List`.

use crate::{Error, args::Output};
use serde_json::Value;

/// Renders `objects` in `output` format, with a trailing newline.
pub fn render(objects: &[Value], output: Output) -> Result<String, Error> {
    match output {
        Output::Yaml => {
            let mut s = String::new();
            for o in objects {
                s.push_str("---\n");
                s.push_str(&yaml(o)?);
            }
            Ok(s)
        }
        Output::Json => {
            let list = serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": objects,
            });
            let mut s =
                serde_json::to_string_pretty(&list).map_err(|e| Error::Render(e.to_string()))?;
            s.push('\n');
            Ok(s)
        }
    }
}

/// One YAML document: PEM blocks as literal block scalars (`|`), long single-line strings
/// (base64, descriptions) on one line rather than folded.
pub fn yaml<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
    serde_saphyr::to_string_with_options(value, options).map_err(|e| Error::Render(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_documents_are_separated_and_pem_is_a_literal_block() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let docs = [
            serde_json::json!({"kind": "A", "data": {"pem": pem}}),
            serde_json::json!({"kind": "B", "long": "x".repeat(200)}),
        ];
        let out = render(&docs, Output::Yaml).unwrap();
        assert_eq!(out.lines().filter(|l| *l == "---").count(), 2);
        assert!(out.contains("pem: |\n"), "{out}");
        assert!(
            out.contains(&format!("long: {}\n", "x".repeat(200))),
            "not folded: {out}"
        );
        let back: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
        assert_eq!(back, docs);
    }

    #[test]
    fn json_is_a_v1_list() {
        let out = render(&[serde_json::json!({"kind": "A"})], Output::Json).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["kind"], "List");
        assert_eq!(v["items"][0]["kind"], "A");
    }
}
