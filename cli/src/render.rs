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
