package stack

import (
	helmv1 "github.com/k3s-io/helm-controller/pkg/apis/helm.cattle.io/v1"
)

// HelmChart and HelmChartConfig decode into k3s' helm-controller's own
// Go types, from which its CRDs' schemas are generated: rejecting unknown
// fields against them checks our documents against the CRDs (their enums
// are checked beside, in checkImages).
type (
	helmChart       = helmv1.HelmChart
	helmChartConfig = helmv1.HelmChartConfig
)
