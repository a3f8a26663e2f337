package stack

import (
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
)

// TestAlertRules reads Prometheus' alert rules as Prometheus does (the
// rule file format, every expression through the PromQL parser, every
// annotation through its template engine): a typo would otherwise only
// show as alerts that never fire. The three alerts must be there.
func TestAlertRules(t *testing.T) {
	for _, c := range []struct {
		name string
		off  []string
		want []string
	}{
		{"with longhorn", nil, []string{"NodeDown", "DiskFilling", "VolumeDegraded"}},
		{"without longhorn", []string{"longhorn"}, []string{"NodeDown", "DiskFilling"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, files := renderWithOff(t, 4, true, c.off)
			var rules string
			for _, d := range decodeAll(t, files) {
				if cm, ok := d.obj.(*corev1.ConfigMap); ok && d.ns == "monitoring" && cm.Data["alerts.yml"] != "" {
					rules = cm.Data["alerts.yml"]
				}
			}
			if rules == "" {
				t.Fatal("no alerts.yml in the monitoring namespace")
			}
			groups, errs := rulefmt.Parse([]byte(rules), false, model.UTF8Validation,
				parser.NewParser(parser.Options{}), slog.New(slog.NewTextHandler(io.Discard, nil)))
			for _, err := range errs {
				t.Error(err)
			}
			if groups == nil {
				return
			}
			var names []string
			for _, g := range groups.Groups {
				for _, r := range g.Rules {
					names = append(names, r.Alert)
				}
			}
			for _, w := range c.want {
				if !slices.Contains(names, w) {
					t.Errorf("alerts %v lack %s", names, w)
				}
			}
			if slices.Contains(c.off, "longhorn") && slices.Contains(names, "VolumeDegraded") {
				t.Error("a Longhorn alert without Longhorn")
			}
		})
	}
}
