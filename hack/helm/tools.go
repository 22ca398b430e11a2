//go:build tools

// Package tools pins Helm for the chart's tests; hack/helm/build.sh builds its command.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
