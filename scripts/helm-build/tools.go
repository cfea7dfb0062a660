//go:build tools

// Package tools keeps helm.sh/helm/v3/cmd/helm in this wrapper module's build list, so that
// scripts/helm builds exactly the module versions pinned by the committed go.mod and go.sum.
// It is never compiled.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
