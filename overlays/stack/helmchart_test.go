package stack

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// helmChart is helm.cattle.io/v1 HelmChart as k3s' helm-controller's CRD
// defines it (doc/helmchart.md in k3s-io/helm-controller): decoding with
// unknown fields rejected checks our documents against that schema.
type helmChart struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              helmChartSpec `json:"spec"`
}

type helmSecretSpec struct {
	Name          string   `json:"name"`
	Keys          []string `json:"keys,omitempty"`
	IgnoreUpdates bool     `json:"ignoreUpdates,omitempty"`
}

type helmChartSpec struct {
	TargetNamespace       string                        `json:"targetNamespace,omitempty"`
	CreateNamespace       bool                          `json:"createNamespace,omitempty"`
	Chart                 string                        `json:"chart,omitempty"`
	Version               string                        `json:"version,omitempty"`
	Repo                  string                        `json:"repo,omitempty"`
	RepoCA                string                        `json:"repoCA,omitempty"`
	RepoCAConfigMap       *corev1.LocalObjectReference  `json:"repoCAConfigMap,omitempty"`
	Set                   map[string]intstr.IntOrString `json:"set,omitempty"`
	Values                map[string]any                `json:"values,omitempty"`
	ValuesContent         string                        `json:"valuesContent,omitempty"`
	ValuesSecrets         []helmSecretSpec              `json:"valuesSecrets,omitempty"`
	HelmVersion           string                        `json:"helmVersion,omitempty"`
	Bootstrap             bool                          `json:"bootstrap,omitempty"`
	TakeOwnership         bool                          `json:"takeOwnership,omitempty"`
	ChartContent          string                        `json:"chartContent,omitempty"`
	JobImage              string                        `json:"jobImage,omitempty"`
	BackOffLimit          *int32                        `json:"backOffLimit,omitempty"`
	Timeout               *metav1.Duration              `json:"timeout,omitempty"`
	FailurePolicy         string                        `json:"failurePolicy,omitempty"` // enum: abort, reinstall
	AuthSecret            *corev1.LocalObjectReference  `json:"authSecret,omitempty"`
	AuthPassCredentials   bool                          `json:"authPassCredentials,omitempty"`
	InsecureSkipTLSVerify bool                          `json:"insecureSkipTLSVerify,omitempty"`
	PlainHTTP             bool                          `json:"plainHTTP,omitempty"`
	DockerRegistrySecret  *corev1.LocalObjectReference  `json:"dockerRegistrySecret,omitempty"`
	PodSecurityContext    *corev1.PodSecurityContext    `json:"podSecurityContext,omitempty"`
	SecurityContext       *corev1.SecurityContext       `json:"securityContext,omitempty"`
	Driver                string                        `json:"driver,omitempty"` // enum: secret, configmap
}

// helmChartConfig is helm.cattle.io/v1 HelmChartConfig.
type helmChartConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Values        map[string]any   `json:"values,omitempty"`
		ValuesContent string           `json:"valuesContent,omitempty"`
		ValuesSecrets []helmSecretSpec `json:"valuesSecrets,omitempty"`
		FailurePolicy string           `json:"failurePolicy,omitempty"`
	} `json:"spec"`
}
