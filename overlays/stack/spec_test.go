package stack

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// chartValues returns the valuesContent of the HelmChart named chart.
func chartValues(t *testing.T, docs []doc, chart string) map[string]any {
	t.Helper()
	for _, d := range docs {
		if hc, ok := d.obj.(*helmChart); ok && hc.Spec.Chart == chart {
			var v map[string]any
			if err := yaml.Unmarshal([]byte(hc.Spec.ValuesContent), &v); err != nil {
				t.Fatalf("%s values: %v", chart, err)
			}
			return v
		}
	}
	t.Fatalf("no HelmChart %s", chart)
	return nil
}

// dig follows keys through nested maps; nil when any is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// TestIngressFollowsTheSpec: with a domain, Let's Encrypt with the
// spec's e-mail, HTTP redirected to HTTPS, and every service on its own
// name under the domain; without one, plain HTTP on the LAN and no ACME.
func TestIngressFollowsTheSpec(t *testing.T) {
	for _, domain := range []bool{true, false} {
		t.Run(fmt.Sprintf("domain=%v", domain), func(t *testing.T) {
			in, files := renderWithOff(t, 4, domain, nil)
			docs := decodeAll(t, files)
			v := chartValues(t, docs, "traefik")
			email := dig(v, "certResolvers", "letsencrypt", "email")
			redirect := dig(v, "ports", "web", "redirectTo", "port")
			if domain {
				if email != in.Settings.ACMEEmail || dig(v, "ports", "websecure", "tls", "certResolver") != "letsencrypt" {
					t.Errorf("ACME e-mail %v, websecure resolver %v; want %s and letsencrypt", email, dig(v, "ports", "websecure", "tls", "certResolver"), in.Settings.ACMEEmail)
				}
				if redirect != "websecure" {
					t.Errorf("web redirects to %v, want websecure", redirect)
				}
			} else if email != nil || redirect != nil {
				t.Errorf("no domain, yet ACME e-mail %v and redirect %v", email, redirect)
			}
			n := 0
			for _, d := range docs {
				ing, ok := d.obj.(*networkingv1.Ingress)
				if !ok {
					continue
				}
				n++
				for _, r := range ing.Spec.Rules {
					switch {
					case domain && !strings.HasSuffix(r.Host, "."+in.Settings.Domain):
						t.Errorf("Ingress %s/%s: host %q not under %s", d.ns, d.name, r.Host, in.Settings.Domain)
					case !domain && r.Host != "":
						t.Errorf("Ingress %s/%s: host %q without a domain", d.ns, d.name, r.Host)
					}
				}
				// Traefik's Ingress provider takes TLS from annotations.
				a := ing.Annotations
				tls := a["traefik.ingress.kubernetes.io/router.tls"] == "true" && a["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure" &&
					a["traefik.ingress.kubernetes.io/router.tls.certresolver"] == "letsencrypt"
				if domain != tls {
					t.Errorf("Ingress %s/%s: annotations %v; want HTTPS with Let's Encrypt only with a domain", d.ns, d.name, a)
				}
			}
			if n == 0 {
				t.Error("no Ingress rendered")
			}
		})
	}
}

// TestLonghornFollowsTheSpec: one replica per node up to three, and the
// backup target of the spec.
func TestLonghornFollowsTheSpec(t *testing.T) {
	for _, c := range []struct {
		nodes, replicas int
		target          string
	}{{1, 1, ""}, {3, 3, "nfs://nas.lan:/longhorn"}, {4, 3, ""}} {
		t.Run(fmt.Sprintf("%d nodes", c.nodes), func(t *testing.T) {
			in := testInput(c.nodes, false)
			in.Settings.LonghornBackupTarget = c.target
			files, err := Render(in)
			if err != nil {
				t.Fatal(err)
			}
			v := chartValues(t, decodeAll(t, files), "longhorn")
			for _, k := range [][]string{{"persistence", "defaultClassReplicaCount"}, {"defaultSettings", "defaultReplicaCount"}} {
				if got := dig(v, k...); got != float64(c.replicas) {
					t.Errorf("%s = %v, want %d", strings.Join(k, "."), got, c.replicas)
				}
			}
			got, _ := dig(v, "defaultSettings", "backupTarget").(string)
			if got != c.target {
				t.Errorf("backupTarget %q, want %q", got, c.target)
			}
		})
	}
}

// TestDnasFollowsTheSpec: Samba speaks SMB3 only, to the generated user
// alone; NFS exports to the spec's LAN only; the data disk is mounted by
// the spec's label.
func TestDnasFollowsTheSpec(t *testing.T) {
	in, files := renderWithOff(t, 4, false, nil)
	docs := decodeAll(t, files)
	var smbConf, smbPassword, exports, mount string
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *corev1.ConfigMap:
			if d.ns == "dnas" && d.name == "samba-config" {
				smbConf = o.Data["config.yml"]
			}
		case *corev1.Secret:
			if d.ns == "dnas" && d.name == "dnas-credentials" {
				smbPassword = o.StringData["samba-password"]
			}
		case *appsv1.Deployment:
			if d.ns != "dnas" {
				continue
			}
			for _, c := range o.Spec.Template.Spec.Containers {
				for _, e := range c.Env {
					if e.Name == "CUSTOM_EXPORTS_CONFIG" {
						exports = e.Value
					}
				}
			}
			for _, c := range o.Spec.Template.Spec.InitContainers {
				if c.Name == "mount-data-disk" {
					mount = strings.Join(c.Args, " ")
				}
			}
		}
	}
	if smbPassword == "" || smbPassword != in.Secrets["samba-password"] {
		t.Errorf("dnas-credentials' samba-password %q is not the cluster's generated one", smbPassword)
	}
	for _, want := range []string{"server min protocol = SMB3", "map to guest = never", "restrict anonymous = 2", "password_file:"} {
		if !strings.Contains(smbConf, want) {
			t.Errorf("samba config lacks %q:\n%s", want, smbConf)
		}
	}
	if !strings.Contains(exports, " "+in.Settings.LAN+"(") || strings.Count(exports, "(") != 1 || strings.Contains(exports, "*") {
		t.Errorf("NFS exports %q, want the share to %s only", exports, in.Settings.LAN)
	}
	if !strings.Contains(mount, "/dev/disk/by-label/"+in.Settings.DataDisk+" ") {
		t.Errorf("the data disk is not mounted by its label %s: %q", in.Settings.DataDisk, mount)
	}
}

// TestNoAnonymousAdmin: Portainer's admin password is the generated one,
// read from a Secret; the dashboard makes everyone log in with a token
// and its own account is no cluster-admin; Grafana has no anonymous
// access and a generated admin password.
func TestNoAnonymousAdmin(t *testing.T) {
	in, files := renderWithOff(t, 4, true, nil)
	docs := decodeAll(t, files)
	args := map[string][]string{}                // ns/deployment → container args
	env := map[string]map[string]corev1.EnvVar{} // ns/deployment → env
	secrets := map[string]map[string]string{}    // ns/name → stringData
	var admins []string                          // ns/name of cluster-admin accounts
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			k := d.ns + "/" + d.name
			env[k] = map[string]corev1.EnvVar{}
			for _, c := range o.Spec.Template.Spec.Containers {
				args[k] = append(args[k], c.Args...)
				for _, e := range c.Env {
					env[k][e.Name] = e
				}
			}
		case *corev1.Secret:
			secrets[d.ns+"/"+d.name] = o.StringData
		case *rbacv1.ClusterRoleBinding:
			if o.RoleRef.Name == "cluster-admin" {
				for _, s := range o.Subjects {
					admins = append(admins, s.Namespace+"/"+s.Name)
				}
			}
		}
	}
	// The family admin's login account is cluster-admin (README gives its
	// token); the account the dashboard itself runs as must not be, or
	// anyone reaching it would act as admin.
	for _, d := range docs {
		if o, ok := d.obj.(*appsv1.Deployment); ok && d.ns == "kubernetes-dashboard" && d.name == "kubernetes-dashboard" {
			sa := d.ns + "/" + cmp.Or(o.Spec.Template.Spec.ServiceAccountName, "default")
			if slices.Contains(admins, sa) {
				t.Errorf("the dashboard runs as %s, which is cluster-admin", sa)
			}
		}
	}
	if a := strings.Join(args["portainer/portainer"], " "); !strings.Contains(a, "--admin-password-file=") {
		t.Errorf("portainer args %q: no admin password file", a)
	}
	if !slices.ContainsFunc(slices.Collect(maps.Values(secrets)), func(m map[string]string) bool {
		return slices.Contains(slices.Collect(maps.Values(m)), in.Secrets["portainer-admin-password"])
	}) {
		t.Error("no Secret carries the generated Portainer admin password")
	}
	dash := args["kubernetes-dashboard/kubernetes-dashboard"]
	if !slices.Contains(dash, "--enable-skip-login=false") || slices.Contains(dash, "--enable-skip-login") || slices.Contains(dash, "--enable-skip-login=true") {
		t.Errorf("dashboard args %q: login must not be skippable", dash)
	}
	g := env["monitoring/grafana"]
	if g["GF_AUTH_ANONYMOUS_ENABLED"].Value != "false" {
		t.Errorf("grafana GF_AUTH_ANONYMOUS_ENABLED = %q, want false", g["GF_AUTH_ANONYMOUS_ENABLED"].Value)
	}
	ref := g["GF_SECURITY_ADMIN_PASSWORD"].ValueFrom
	if ref == nil || ref.SecretKeyRef == nil || secrets["monitoring/"+ref.SecretKeyRef.Name][ref.SecretKeyRef.Key] != in.Secrets["grafana-admin-password"] {
		t.Errorf("grafana's admin password is not the generated one from a Secret (%+v)", ref)
	}
}

// TestNextcloudStorage: Nextcloud's files and its database sit on
// Longhorn volumes (local-path without Longhorn), and the NAS share is
// mounted and registered as external storage when dnas is on.
func TestNextcloudStorage(t *testing.T) {
	for _, c := range []struct {
		name  string
		off   []string
		class string
		nas   bool
	}{
		{"everything on", nil, "longhorn", true},
		{"no longhorn", []string{"longhorn"}, "local-path", true},
		{"no dnas", []string{"dnas"}, "longhorn", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, files := renderWithOff(t, 4, true, c.off)
			classes := map[string]string{}
			var hooks string
			var nasMounted bool
			for _, d := range decodeAll(t, files) {
				if d.ns != "nextcloud" {
					continue
				}
				switch o := d.obj.(type) {
				case *corev1.PersistentVolumeClaim:
					classes[d.name] = ptrString(o.Spec.StorageClassName)
				case *appsv1.StatefulSet:
					for _, v := range o.Spec.VolumeClaimTemplates {
						classes[d.name+"/"+v.Name] = ptrString(v.Spec.StorageClassName)
					}
				case *corev1.ConfigMap:
					hooks += strings.Join(slices.Collect(maps.Values(o.Data)), "\n")
				case *appsv1.Deployment:
					for _, v := range o.Spec.Template.Spec.Volumes {
						if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "nextcloud-nas" {
							nasMounted = true
						}
					}
				}
			}
			for _, k := range []string{"nextcloud-data", "nextcloud-db/data"} {
				if classes[k] != c.class {
					t.Errorf("%s on storage class %q, want %q (all: %v)", k, classes[k], c.class, classes)
				}
			}
			external := strings.Contains(hooks, "files_external:create /NAS local")
			if nasMounted != c.nas || external != c.nas {
				t.Errorf("NAS share mounted %v, registered as external storage %v; want %v", nasMounted, external, c.nas)
			}
		})
	}
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
