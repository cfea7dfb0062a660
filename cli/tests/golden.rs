//! Golden-file tests of `tulle install` and `tulle uninstall` output. The PKI comes from the
//! committed fixture files, so the output is byte-for-byte stable. Regenerate with
//! `TULLE_UPDATE_GOLDEN=1 cargo test -p tulle-cli --test golden` and review the diff; that also
//! regenerates the CRD templates of charts/tulle-crds from the same Rust definitions.

mod support;

use support::*;

#[test]
fn install_default() {
    golden("install.yaml", &install_fixed(&[]));
}

#[test]
fn install_with_flags() {
    golden(
        "install-flags.yaml",
        &install_fixed(&[
            "--registry",
            "registry.example.com/mesh/",
            "--tag",
            "v9.9.9",
            "--trust-domain",
            "prod.example.com",
            "--webhook-failure-policy",
            "Fail",
            "--controller-replicas",
            "3",
            "--proxy-log-level",
            "debug",
        ]),
    );
}

/// `--ha` (issue 15, high availability).
#[test]
fn install_ha() {
    golden("install-ha.yaml", &install_fixed(&["--ha"]));
}

#[test]
fn install_json() {
    golden("install.json", &install_fixed(&["-o", "json"]));
}

#[test]
fn uninstall() {
    golden(
        "uninstall.yaml",
        &tulle_cli::manifest::uninstall(tulle_cli::args::Output::Yaml).unwrap(),
    );
}

/// charts/tulle-crds/templates/<crd>.yaml carry the CLI's CRD specs verbatim (with Helm labels).
#[test]
fn chart_crds_are_generated_from_the_cli() {
    let dir = repo_dir().join("charts/tulle-crds/templates");
    for crd in tulle_cli::manifest::crds(env!("CARGO_PKG_VERSION")) {
        let name = crd.metadata.name.clone().unwrap();
        let spec = tulle_cli::render::yaml(&crd.spec).unwrap();
        let text = format!(
            "{{{{- /* Generated from cli/src/manifest (smi_schema.rs, crds.rs) by\n     \
             TULLE_UPDATE_GOLDEN=1 cargo test -p tulle-cli --test golden. Do not edit. */}}}}\n\
             apiVersion: apiextensions.k8s.io/v1\n\
             kind: CustomResourceDefinition\n\
             metadata:\n  name: {name}\n  labels:\n    \
             {{{{- include \"tulle-crds.labels\" (dict \"ctx\" $ \"component\" \"crds\") | nindent 4 }}}}\n\
             spec:\n{}",
            indent(&spec, 2)
        );
        let path = dir.join(format!("{name}.yaml"));
        if update_golden() {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            actual == text,
            "{} is not generated from the CLI's CRDs; run TULLE_UPDATE_GOLDEN=1 cargo test -p tulle-cli --test golden",
            path.display()
        );
    }
}

fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    s.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}
