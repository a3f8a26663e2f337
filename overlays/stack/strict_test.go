package stack

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// doc is one decoded document of a rendered file.
type doc struct {
	file, kind, ns, name string
	obj                  any
}

func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1/PersistentVolume":
		return &corev1.PersistentVolume{}, nil
	case "v1/PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}, nil
	case "batch/v1/CronJob":
		return &batchv1.CronJob{}, nil
	case "batch/v1/Job":
		return &batchv1.Job{}, nil
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}, nil
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}, nil
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}, nil
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		return &rbacv1.ClusterRole{}, nil
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, nil
	case "helm.cattle.io/v1/HelmChart":
		return &helmChart{}, nil
	case "helm.cattle.io/v1/HelmChartConfig":
		return &helmChartConfig{}, nil
	}
	return nil, fmt.Errorf("no strict type for apiVersion %q kind %q: add it to newObject", apiVersion, kind)
}

// strictJSON decodes b into v rejecting unknown fields and trailing data.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// decodeAll splits every file into documents and decodes each strictly
// against the type its apiVersion and kind name.
func decodeAll(t *testing.T, files []File) []doc {
	t.Helper()
	var docs []doc
	for _, f := range files {
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(f.Data)))
		for i := 0; ; i++ {
			raw, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f.Name, err)
			}
			j, err := yaml.YAMLToJSONStrict(raw)
			if err != nil {
				t.Fatalf("%s document %d: %v\n%s", f.Name, i, err, raw)
			}
			if string(j) == "null" {
				continue // comments only
			}
			var tm struct {
				metav1.TypeMeta `json:",inline"`
				Metadata        metav1.ObjectMeta `json:"metadata"`
			}
			if err := json.Unmarshal(j, &tm); err != nil {
				t.Fatalf("%s document %d: %v", f.Name, i, err)
			}
			obj, err := newObject(tm.APIVersion, tm.Kind)
			if err != nil {
				t.Fatalf("%s document %d: %v", f.Name, i, err)
			}
			if err := strictJSON(j, obj); err != nil {
				t.Fatalf("%s document %d (%s %s): strict decode: %v\n%s", f.Name, i, tm.Kind, tm.Metadata.Name, err, raw)
			}
			if tm.Metadata.Name == "" {
				t.Errorf("%s document %d (%s): no metadata.name", f.Name, i, tm.Kind)
			}
			docs = append(docs, doc{file: f.Name, kind: tm.Kind, ns: tm.Metadata.Namespace, name: tm.Metadata.Name, obj: obj})
		}
	}
	return docs
}

// podTemplate is a workload's pod template, with how many copies and
// where: every node for a DaemonSet.
type podTemplate struct {
	doc       doc
	spec      corev1.PodSpec
	labels    map[string]string
	daemonSet bool
	cron      bool
}

func podTemplates(docs []doc) []podTemplate {
	var out []podTemplate
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			out = append(out, podTemplate{doc: d, spec: o.Spec.Template.Spec, labels: o.Spec.Template.Labels})
		case *appsv1.StatefulSet:
			out = append(out, podTemplate{doc: d, spec: o.Spec.Template.Spec, labels: o.Spec.Template.Labels})
		case *appsv1.DaemonSet:
			out = append(out, podTemplate{doc: d, spec: o.Spec.Template.Spec, labels: o.Spec.Template.Labels, daemonSet: true})
		case *batchv1.CronJob:
			out = append(out, podTemplate{doc: d, spec: o.Spec.JobTemplate.Spec.Template.Spec, labels: o.Spec.JobTemplate.Spec.Template.Labels, cron: true})
		}
	}
	return out
}

// node is where a pod of t runs in the plan: its nodeSelector or
// preferred node; "" means anywhere.
func (t podTemplate) node() string {
	if n := t.spec.NodeSelector["kubernetes.io/hostname"]; n != "" {
		return n
	}
	if a := t.spec.Affinity; a != nil && a.NodeAffinity != nil {
		for _, p := range a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			for _, e := range p.Preference.MatchExpressions {
				if e.Key == "kubernetes.io/hostname" && len(e.Values) == 1 {
					return e.Values[0]
				}
			}
		}
	}
	return ""
}

func testInput(nodes int, domain bool) Input {
	in := Input{Config: Config{Settings: Settings{Cluster: "home", VIP: "192.168.1.250", LAN: "192.168.1.0/24",
		DataDisk: "NAS", Storage: DefaultStorage()}, Secrets: map[string]string{}}}
	if domain {
		in.Settings.Domain, in.Settings.ACMEEmail = "cloud.example.org", "admin@example.org"
	}
	for _, k := range SecretKeys() {
		in.Secrets[k] = fmt.Sprintf("gen-%s-Zq8\"x'%d", k, nodes)
	}
	servers := min(nodes, 3)
	if nodes < 3 {
		servers = 1
	}
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("home-node%d", i)
		if i <= servers {
			in.Servers = append(in.Servers, name)
		} else {
			in.Agents = append(in.Agents, name)
		}
	}
	in.DataDiskNode = in.Nodes()[nodes-1]
	return in
}

// renderWithOff renders the stack of testInput(nodes, domain) with the
// services in off switched off.
func renderWithOff(t *testing.T, nodes int, domain bool, off []string) (Input, []File) {
	t.Helper()
	in := testInput(nodes, domain)
	in.Settings.Services = map[string]bool{}
	for _, s := range off {
		in.Settings.Services[s] = false
	}
	files, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	return in, files
}

func TestRenderStrict(t *testing.T) {
	cases := []struct {
		name   string
		nodes  int
		domain bool
		off    []string
	}{
		{"1 node, LAN only", 1, false, nil},
		{"3 nodes, domain", 3, true, nil},
		{"4 nodes, domain", 4, true, nil},
		{"4 nodes, LAN only", 4, false, nil},
		{"4 nodes, no longhorn, no smb", 4, true, []string{"longhorn", "csi-driver-smb"}},
		{"3 nodes, apps off", 3, false, []string{"nextcloud", "calibre-web", "portainer", "dashboard", "monitoring", "backups"}},
		{"4 nodes, dnas off", 4, true, []string{"dnas"}},
		{"everything off", 2, true, Services()},
	}
	imgs, err := LoadImages()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, files := renderWithOff(t, c.nodes, c.domain, c.off)
			for _, f := range files {
				if slices.Contains(c.off, f.Service) {
					t.Errorf("%s written although %s is off", f.Name, f.Service)
				}
			}
			if want := len(Services()) - len(c.off); len(files) != want {
				t.Errorf("%d files, want %d (one per service on)", len(files), want)
			}
			docs := decodeAll(t, files)
			checkOffNamespaces(t, in, docs)
			checkImages(t, imgs, docs)
			checkSelectors(t, docs)
			checkStorage(t, in, docs)
			checkHosts(t, docs)
			checkHostDirs(t, docs)
			checkSharedClaims(t, docs)
			checkPorts(t, in, docs)
			checkFirewall(t, docs)
			checkSecrets(t, in, files, docs)
		})
	}
}

// checkOffNamespaces: nothing of a service that is off, not even a
// reference from another service.
func checkOffNamespaces(t *testing.T, in Input, docs []doc) {
	t.Helper()
	nsOf := map[string]string{"dnas": "dnas", "nextcloud": "nextcloud", "calibre-web": "calibre-web", "portainer": "portainer",
		"dashboard": "kubernetes-dashboard", "monitoring": "monitoring", "backups": "backups"}
	for svc, ns := range nsOf {
		if in.Settings.On(svc) {
			continue
		}
		for _, d := range docs {
			if d.ns == ns || (d.kind == "Namespace" && d.name == ns) {
				t.Errorf("%s: %s %s/%s in namespace of %s, which is off", d.file, d.kind, d.ns, d.name, svc)
			}
		}
	}
}

func checkImages(t *testing.T, imgs Images, docs []doc) {
	t.Helper()
	for _, p := range podTemplates(docs) {
		for _, c := range slices.Concat(p.spec.InitContainers, p.spec.Containers) {
			if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
				t.Errorf("%s %s/%s container %s: image %q is not pinned", p.doc.kind, p.doc.ns, p.doc.name, c.Name, c.Image)
			}
			if _, ok := imgs.ByRef(c.Image); !ok {
				t.Errorf("%s %s/%s container %s: image %q is not in images.tsv", p.doc.kind, p.doc.ns, p.doc.name, c.Name, c.Image)
			}
			if r := c.Resources; r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() || r.Requests.Cpu().IsZero() {
				t.Errorf("%s %s/%s container %s: needs a memory request and limit and a CPU request on a 2 GiB board", p.doc.kind, p.doc.ns, p.doc.name, c.Name)
			}
		}
	}
	for _, d := range docs {
		hc, ok := d.obj.(*helmChart)
		if !ok {
			continue
		}
		c, ok := imgs.Chart(hc.Spec.Chart)
		if !ok || c.Repo != hc.Spec.Repo || c.Tag != hc.Spec.Version {
			t.Errorf("HelmChart %s: chart %s %s from %s is not the one in images.tsv", d.name, hc.Spec.Chart, hc.Spec.Version, hc.Spec.Repo)
		}
		if hc.Spec.FailurePolicy != "" && hc.Spec.FailurePolicy != "abort" && hc.Spec.FailurePolicy != "reinstall" {
			t.Errorf("HelmChart %s: failurePolicy %q not in the CRD's enum", d.name, hc.Spec.FailurePolicy)
		}
		if hc.Spec.Driver != "" && hc.Spec.Driver != "secret" && hc.Spec.Driver != "configmap" {
			t.Errorf("HelmChart %s: driver %q not in the CRD's enum", d.name, hc.Spec.Driver)
		}
		var values map[string]any
		if err := yaml.UnmarshalStrict([]byte(hc.Spec.ValuesContent), &values); err != nil {
			t.Errorf("HelmChart %s: valuesContent: %v", d.name, err)
		}
		walkImages(values, func(registry, repo, tag string) {
			ref := repo + ":" + tag
			if registry != "" {
				ref = registry + "/" + ref
			}
			if _, ok := imgs.ByRef(ref); !ok {
				t.Errorf("HelmChart %s: image %s in values is not in images.tsv", d.name, ref)
			}
		})
	}
}

// walkImages finds chart image settings: maps with repository and tag.
func walkImages(v any, f func(registry, repo, tag string)) {
	switch m := v.(type) {
	case map[string]any:
		repo, okR := m["repository"].(string)
		tag, okT := m["tag"].(string)
		if okR && okT {
			reg, _ := m["registry"].(string)
			f(reg, repo, tag)
		}
		for _, x := range m {
			walkImages(x, f)
		}
	case []any:
		for _, x := range m {
			walkImages(x, f)
		}
	}
}

func checkSelectors(t *testing.T, docs []doc) {
	t.Helper()
	pods := podTemplates(docs)
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *corev1.Service:
			if len(o.Spec.Selector) == 0 {
				t.Errorf("Service %s/%s: no selector", d.ns, d.name)
				continue
			}
			sel := labels.SelectorFromSet(o.Spec.Selector)
			var match *podTemplate
			for i, p := range pods {
				if p.doc.ns == d.ns && sel.Matches(labels.Set(p.labels)) {
					match = &pods[i]
				}
			}
			if match == nil {
				t.Errorf("Service %s/%s: selector %v matches no pod template in its namespace", d.ns, d.name, o.Spec.Selector)
				continue
			}
			for _, sp := range o.Spec.Ports {
				if sp.TargetPort.StrVal == "" {
					continue
				}
				if !slices.ContainsFunc(match.spec.Containers, func(c corev1.Container) bool {
					return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == sp.TargetPort.StrVal && p.Protocol == sp.Protocol })
				}) {
					t.Errorf("Service %s/%s: targetPort %s/%s names no container port of %s", d.ns, d.name, sp.TargetPort.StrVal, sp.Protocol, match.doc.name)
				}
			}
		case *appsv1.Deployment:
			checkSelector(t, d, o.Spec.Selector, o.Spec.Template.Labels)
		case *appsv1.StatefulSet:
			checkSelector(t, d, o.Spec.Selector, o.Spec.Template.Labels)
		case *appsv1.DaemonSet:
			checkSelector(t, d, o.Spec.Selector, o.Spec.Template.Labels)
		case *networkingv1.Ingress:
			for _, r := range o.Spec.Rules {
				for _, p := range r.HTTP.Paths {
					if !slices.ContainsFunc(docs, func(s doc) bool { return s.kind == "Service" && s.ns == d.ns && s.name == p.Backend.Service.Name }) {
						t.Errorf("Ingress %s/%s: backend service %s is not in the stack", d.ns, d.name, p.Backend.Service.Name)
					}
				}
			}
		}
	}
}

func checkSelector(t *testing.T, d doc, sel *metav1.LabelSelector, podLabels map[string]string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || !s.Matches(labels.Set(podLabels)) {
		t.Errorf("%s %s/%s: selector does not match its own pod template (%v)", d.kind, d.ns, d.name, err)
	}
}

// checkStorage: every claim names a storage class the cluster has, or
// binds to a volume the stack declares.
func checkStorage(t *testing.T, in Input, docs []doc) {
	t.Helper()
	classes := map[string]bool{"local-path": true} // k3s' built-in provisioner
	if in.Settings.On("longhorn") {
		classes["longhorn"] = true // made by the Longhorn chart (persistence.defaultClass)
	}
	pvs := map[string]bool{}
	for _, d := range docs {
		if d.kind == "PersistentVolume" {
			pvs[d.name] = true
		}
	}
	check := func(where string, spec corev1.PersistentVolumeClaimSpec) {
		switch {
		case spec.StorageClassName == nil:
			t.Errorf("%s: no storageClassName: say which class", where)
		case *spec.StorageClassName == "":
			if !pvs[spec.VolumeName] {
				t.Errorf("%s: binds to volume %q, which the stack does not declare", where, spec.VolumeName)
			}
		case !classes[*spec.StorageClassName]:
			t.Errorf("%s: storage class %q does not exist in this stack", where, *spec.StorageClassName)
		}
	}
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *corev1.PersistentVolumeClaim:
			check("PVC "+d.ns+"/"+d.name, o.Spec)
		case *appsv1.StatefulSet:
			for _, c := range o.Spec.VolumeClaimTemplates {
				check("StatefulSet "+d.ns+"/"+d.name+" claim "+c.Name, c.Spec)
			}
		case *helmChart:
			var values map[string]any
			yaml.Unmarshal([]byte(o.Spec.ValuesContent), &values)
			if p, ok := values["persistence"].(map[string]any); ok {
				if sc, ok := p["storageClass"].(string); ok && !classes[sc] {
					t.Errorf("HelmChart %s: persistence.storageClass %q does not exist in this stack", d.name, sc)
				}
			}
		}
	}
	for _, p := range podTemplates(docs) {
		for _, v := range p.spec.Volumes {
			if c := v.PersistentVolumeClaim; c != nil && !slices.ContainsFunc(docs, func(d doc) bool {
				return d.kind == "PersistentVolumeClaim" && d.ns == p.doc.ns && d.name == c.ClaimName
			}) {
				t.Errorf("%s %s/%s: volume %s claims %s, which the stack does not declare", p.doc.kind, p.doc.ns, p.doc.name, v.Name, c.ClaimName)
			}
		}
	}
}

// checkHosts: no two ingresses route one host on one entrypoint.
func checkHosts(t *testing.T, docs []doc) {
	t.Helper()
	seen := map[string]string{}
	for _, d := range docs {
		ing, ok := d.obj.(*networkingv1.Ingress)
		if !ok {
			continue
		}
		ep := ing.Annotations["traefik.ingress.kubernetes.io/router.entrypoints"]
		if ep == "" {
			t.Errorf("Ingress %s/%s: no entrypoint annotation", d.ns, d.name)
		}
		for _, r := range ing.Spec.Rules {
			key := ep + " " + r.Host
			if other, dup := seen[key]; dup {
				t.Errorf("Ingress %s/%s and %s both claim host %q on entrypoint %s", d.ns, d.name, other, r.Host, ep)
			}
			seen[key] = d.ns + "/" + d.name
		}
	}
}

// checkHostDirs: a folder a pod needs on a node is there and is its
// user's. The kubelet makes a missing hostPath folder as root (0755), so
// a container running as another user that writes into one needs a root
// init container of the same pod to chown it; an SMB volume of a share's
// subfolder needs dnas to make that folder (a mount of a missing folder
// fails).
func checkHostDirs(t *testing.T, docs []doc) {
	t.Helper()
	pods := podTemplates(docs)
	script := func(c corev1.Container) string { return strings.Join(append(slices.Clone(c.Command), c.Args...), " ") }
	uidOf := func(p corev1.PodSpec, c corev1.Container) int64 {
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			return *c.SecurityContext.RunAsUser
		}
		if p.SecurityContext != nil && p.SecurityContext.RunAsUser != nil {
			return *p.SecurityContext.RunAsUser
		}
		return 0
	}
	for _, p := range pods {
		hostPaths := map[string]string{}
		for _, v := range p.spec.Volumes {
			if v.HostPath != nil {
				hostPaths[v.Name] = v.HostPath.Path
			}
		}
		for _, c := range append(slices.Clone(p.spec.InitContainers), p.spec.Containers...) {
			uid := uidOf(p.spec, c)
			for _, m := range c.VolumeMounts {
				path, ok := hostPaths[m.Name]
				if !ok || uid == 0 || m.ReadOnly {
					continue
				}
				chowned := slices.ContainsFunc(p.spec.InitContainers, func(ic corev1.Container) bool {
					return uidOf(p.spec, ic) == 0 && strings.Contains(script(ic), fmt.Sprintf("chown %d:", uid)) &&
						slices.ContainsFunc(ic.VolumeMounts, func(im corev1.VolumeMount) bool {
							return im.Name == m.Name || strings.HasPrefix(path, hostPaths[im.Name]+"/")
						})
				})
				if !chowned {
					t.Errorf("%s %s/%s: container %s writes hostPath %s as uid %d, but no root init container chowns it", p.doc.kind, p.doc.ns, p.doc.name, c.Name, path, uid)
				}
			}
		}
	}
	var dnasScripts []string
	for _, p := range pods {
		if p.doc.ns == "dnas" {
			for _, ic := range p.spec.InitContainers {
				dnasScripts = append(dnasScripts, script(ic))
			}
		}
	}
	for _, d := range docs {
		pv, ok := d.obj.(*corev1.PersistentVolume)
		if !ok || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != "smb.csi.k8s.io" {
			continue
		}
		_, sub, _ := strings.Cut(strings.TrimPrefix(pv.Spec.CSI.VolumeAttributes["source"], "//"), "/nas")
		if sub == "" {
			continue
		}
		if !slices.ContainsFunc(dnasScripts, func(s string) bool { return strings.Contains(s, "mkdir -p") && strings.Contains(s, sub+"\n") }) {
			t.Errorf("PersistentVolume %s mounts the share's folder %s, which no dnas init container makes", d.name, sub)
		}
	}
}

// TestBackupRepositoryMounted: restic writes a path repository on the
// data-disk node, so the job mounts it from there whatever the path; a
// REST server needs no mount.
func TestBackupRepositoryMounted(t *testing.T) {
	for _, c := range []struct {
		repo, wantHost string
	}{
		{"", LocalBackupPath},
		{"/mnt/usb/restic", "/mnt/usb/restic"},
		{"rest:https://backup.lan:8000/home", ""},
	} {
		t.Run(c.repo, func(t *testing.T) {
			in := testInput(4, false)
			in.Settings.BackupRepo = c.repo
			files, err := Render(in)
			if err != nil {
				t.Fatal(err)
			}
			var job *podTemplate
			for _, p := range podTemplates(decodeAll(t, files)) {
				if p.doc.ns == "backups" && p.cron {
					job = &p
				}
			}
			if job == nil {
				t.Fatal("no backup CronJob")
			}
			var gotHost string
			for _, v := range job.spec.Volumes {
				if v.Name == "repo" && v.HostPath != nil {
					gotHost = v.HostPath.Path
				}
			}
			if gotHost != c.wantHost {
				t.Errorf("repository hostPath %q, want %q", gotHost, c.wantHost)
			}
			if c.wantHost == "" {
				return
			}
			mounted := slices.ContainsFunc(job.spec.Containers, func(ct corev1.Container) bool {
				return slices.ContainsFunc(ct.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "repo" && m.MountPath == c.wantHost })
			})
			if !mounted {
				t.Errorf("no container mounts the repository at %s, where RESTIC_REPOSITORY points", c.wantHost)
			}
		})
	}
}

// checkSharedClaims: a ReadWriteOnce volume attaches to one node, so the
// pods of every workload mounting one claim must be held (not just
// preferred) on one node, or one of them waits forever on a multi-attach.
func checkSharedClaims(t *testing.T, docs []doc) {
	t.Helper()
	rwx := map[string]bool{}
	for _, d := range docs {
		if pvc, ok := d.obj.(*corev1.PersistentVolumeClaim); ok && slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
			rwx[d.ns+"/"+d.name] = true
		}
	}
	users := map[string][]podTemplate{}
	for _, p := range podTemplates(docs) {
		for _, v := range p.spec.Volumes {
			if v.PersistentVolumeClaim != nil && !rwx[p.doc.ns+"/"+v.PersistentVolumeClaim.ClaimName] {
				key := p.doc.ns + "/" + v.PersistentVolumeClaim.ClaimName
				users[key] = append(users[key], p)
			}
		}
	}
	for claim, ps := range users {
		if len(ps) < 2 {
			continue
		}
		want := ps[0].spec.NodeSelector["kubernetes.io/hostname"]
		for _, p := range ps {
			if got := p.spec.NodeSelector["kubernetes.io/hostname"]; got == "" || got != want {
				t.Errorf("claim %s is mounted by %d workloads; %s %s is not held on the node the others are (%q vs %q)", claim, len(ps), p.doc.kind, p.doc.name, got, want)
			}
		}
	}
}
