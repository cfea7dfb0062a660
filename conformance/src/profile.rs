//! A mesh profile: how the suite puts a namespace in the mesh and sets its default access
//! mode, so that the suite is not tied to one mesh. `tulle` and `linkerd` are built in; any
//! other mesh is a YAML file of the same shape (`--mesh FILE`):
//!
//! ```yaml
//! name: linkerd
//! inject:  {annotations: {linkerd.io/inject: enabled}}           # namespace metadata
//! deny:    {annotations: {config.linkerd.io/default-inbound-policy: deny}}
//! allow:   {annotations: {config.linkerd.io/default-inbound-policy: all-unauthenticated}}
//! outside: {annotations: {linkerd.io/inject: disabled}}           # pod metadata: not meshed
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Labels and annotations to put on an object.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Metadata {
    /// `self` with `other` laid over it.
    pub fn merged(&self, other: &Metadata) -> Metadata {
        let mut m = self.clone();
        m.labels.extend(other.labels.clone());
        m.annotations.extend(other.annotations.clone());
        m
    }

    /// As JSON (`{"labels": ..., "annotations": ...}`), for a manifest's metadata.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"labels": self.labels, "annotations": self.annotations})
    }
}

/// How to use one mesh.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// Namespace metadata that meshes the namespace's pods.
    pub inject: Metadata,
    /// Namespace metadata that makes inbound traffic denied unless a TrafficTarget allows it.
    pub deny: Metadata,
    /// Namespace metadata that lets all traffic in (access control open).
    pub allow: Metadata,
    /// Pod metadata that keeps one pod out of the mesh (the unauthenticated client).
    pub outside: Metadata,
}

fn annotations(pairs: &[(&str, &str)]) -> Metadata {
    Metadata {
        labels: BTreeMap::new(),
        annotations: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

impl Profile {
    /// tulle: `tulle.io/inject` and `config.tulle.io/default-inbound-policy`.
    pub fn tulle() -> Self {
        const POLICY: &str = "config.tulle.io/default-inbound-policy";
        Self {
            name: "tulle".into(),
            inject: annotations(&[("tulle.io/inject", "enabled")]),
            deny: annotations(&[(POLICY, "deny")]),
            allow: annotations(&[(POLICY, "allow")]),
            outside: annotations(&[("tulle.io/inject", "disabled")]),
        }
    }

    /// Linkerd 2.x: `linkerd.io/inject` and `config.linkerd.io/default-inbound-policy`.
    pub fn linkerd() -> Self {
        const POLICY: &str = "config.linkerd.io/default-inbound-policy";
        Self {
            name: "linkerd".into(),
            inject: annotations(&[("linkerd.io/inject", "enabled")]),
            deny: annotations(&[(POLICY, "deny")]),
            allow: annotations(&[(POLICY, "all-unauthenticated")]),
            outside: annotations(&[("linkerd.io/inject", "disabled")]),
        }
    }

    /// A built-in profile by name, or a YAML file.
    pub fn load(name_or_path: &str) -> Result<Self> {
        match name_or_path {
            "tulle" => Ok(Self::tulle()),
            "linkerd" => Ok(Self::linkerd()),
            path => {
                let fail = |message: String| Error::Profile {
                    path: path.into(),
                    message,
                };
                let text = std::fs::read_to_string(path).map_err(|e| {
                    fail(format!(
                        "{e} (use tulle, linkerd or a YAML file of that shape)"
                    ))
                })?;
                serde_saphyr::from_str(&text).map_err(|e| fail(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_file_reads_and_unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.yaml");
        let yaml = "name: linkerd\ninject: {annotations: {linkerd.io/inject: enabled}}\ndeny: {annotations: {config.linkerd.io/default-inbound-policy: deny}}\nallow: {annotations: {config.linkerd.io/default-inbound-policy: all-unauthenticated}}\noutside: {annotations: {linkerd.io/inject: disabled}}\n";
        std::fs::write(&path, yaml).unwrap();
        assert_eq!(
            Profile::load(path.to_str().unwrap()).unwrap(),
            Profile::linkerd()
        );
        std::fs::write(&path, format!("{yaml}extra: 1\n")).unwrap();
        let e = Profile::load(path.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("extra"), "{e}");
        let e = Profile::load("/nonexistent.yaml").unwrap_err().to_string();
        assert!(e.contains("use tulle, linkerd or a YAML file"), "{e}");
    }

    #[test]
    fn metadata_merges_with_the_later_winning() {
        let m = Profile::tulle().inject.merged(&Profile::tulle().deny);
        assert_eq!(m.annotations.len(), 2);
        let open = Profile::tulle().deny.merged(&Profile::tulle().allow);
        assert_eq!(
            open.annotations["config.tulle.io/default-inbound-policy"],
            "allow"
        );
    }
}
