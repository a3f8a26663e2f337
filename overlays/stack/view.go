package stack

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/template"
)

// NASPath is where the NAS lives on the data-disk node: the data disk
// mounted by label, or a plain directory without one.
const NASPath = "/srv/dnas"

// LocalBackupPath is the restic repository on the data-disk node when the
// spec names no backup destination.
const LocalBackupPath = "/srv/backup"

var quantity = regexp.MustCompile(`^[1-9][0-9]{0,5}(Mi|Gi|Ti)$`)

// CheckQuantity accepts the volume sizes the spec allows: a whole number
// of Mi, Gi or Ti.
func CheckQuantity(q string) error {
	if !quantity.MatchString(q) {
		return fmt.Errorf("%q: want a size such as 10Gi (a whole number of Mi, Gi or Ti)", q)
	}
	return nil
}

// Route is how one web service is reached: https://<Sub>.<domain>/ with a
// domain, http://<VIP or any node>:<LANPort>/ without one.
type Route struct {
	Service, Sub string
	LANPort      int
}

// Routes are the services with a web UI behind Traefik. Longhorn's UI and
// Prometheus have no login of their own, so they are not exposed (use
// kubectl port-forward).
func Routes() []Route {
	return []Route{
		{"nextcloud", "cloud", 80},
		{"calibre-web", "books", 8081},
		{"dnas", "sync", 8082},
		{"portainer", "portainer", 8083},
		{"dashboard", "dashboard", 8084},
		{"monitoring", "grafana", 8085},
	}
}

// view is what the templates see.
type view struct {
	Cluster, Domain, ACMEEmail, VIP string
	TLS                             bool
	LAN                             []string
	DataDisk, DataNode              string
	Nodes, Servers                  []string
	Replicas                        int
	Storage                         Storage
	StorageClass                    string
	NAS                             bool
	NASPath                         string
	BackupRepo                      string
	BackupLocal                     bool
	LonghornBackupTarget            string
	Routes                          []Route
}

func newView(in Input) view {
	s := in.Settings
	v := view{
		Cluster: s.Cluster, Domain: s.Domain, ACMEEmail: s.ACMEEmail, VIP: s.VIP, TLS: s.Domain != "",
		DataDisk: s.DataDisk, DataNode: in.DataDiskNode, Nodes: in.Nodes(), Servers: in.Servers,
		Replicas: min(3, len(in.Nodes())), Storage: s.Storage, StorageClass: "local-path",
		NAS:     s.On("dnas") && s.On("csi-driver-smb"),
		NASPath: NASPath, BackupRepo: s.BackupRepo, LonghornBackupTarget: s.LonghornBackupTarget,
	}
	if s.On("longhorn") {
		v.StorageClass = "longhorn"
	}
	if s.LAN != "" {
		v.LAN = []string{s.LAN}
	} else {
		v.LAN = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
	}
	if v.BackupRepo == "" {
		v.BackupRepo = LocalBackupPath
	}
	// A path is a folder on the data-disk node (the default, or a USB
	// disk mounted there): the job must mount it, or restic would write
	// into its own container and lose it.
	v.BackupLocal = strings.HasPrefix(v.BackupRepo, "/")
	for _, r := range Routes() {
		if s.On(r.Service) {
			v.Routes = append(v.Routes, r)
		}
	}
	return v
}

func funcs(in Input, imgs Images) template.FuncMap {
	return template.FuncMap{
		// image is a pinned reference from the project's image table.
		"image": func(name string) (string, error) {
			img, ok := imgs.Lookup(name)
			if !ok {
				return "", fmt.Errorf("image %q: not in images.tsv (add it with its pinned version and arm64 support)", name)
			}
			return img.Ref(), nil
		},
		"imageRepo": func(name string) (string, error) {
			img, ok := imgs.Lookup(name)
			if !ok {
				return "", fmt.Errorf("image %q: not in images.tsv", name)
			}
			return img.Repo, nil
		},
		"imageTag": func(name string) (string, error) {
			img, ok := imgs.Lookup(name)
			if !ok {
				return "", fmt.Errorf("image %q: not in images.tsv", name)
			}
			return img.Tag, nil
		},
		// secret is a generated secret; a missing one is an error, never
		// an empty password.
		"secret": func(key string) (string, error) {
			v, ok := in.Secrets[key]
			if !ok || v == "" {
				return "", fmt.Errorf("secret %q: not generated (rebuild with this builder to add it to out/cluster/)", key)
			}
			return v, nil
		},
		"chart": func(name string) (Image, error) {
			c, ok := imgs.Chart(name)
			if !ok {
				return Image{}, fmt.Errorf("chart %q: not in images.tsv", name)
			}
			return c, nil
		},
		"on":    in.Settings.On,
		"quote": quote,
		"b64":   func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"host": func(svc string) (string, error) {
			r, ok := route(svc)
			if !ok {
				return "", fmt.Errorf("host %q: no route for this service", svc)
			}
			if in.Settings.Domain == "" {
				return "", nil
			}
			return r.Sub + "." + in.Settings.Domain, nil
		},
		"url": func(svc string) (string, error) {
			r, ok := route(svc)
			if !ok {
				return "", fmt.Errorf("url %q: no route for this service", svc)
			}
			if in.Settings.Domain != "" {
				return "https://" + r.Sub + "." + in.Settings.Domain, nil
			}
			host := in.Settings.VIP
			if host == "" {
				host = "localhost"
			}
			if r.LANPort == 80 {
				return "http://" + host, nil
			}
			return fmt.Sprintf("http://%s:%d", host, r.LANPort), nil
		},
		"ingress": func(svc, ns, backend string, port int) (string, error) {
			return ingress(in.Settings, svc, ns, backend, port)
		},
		"onData":     func() string { return "kubernetes.io/hostname: " + quote(in.DataDiskNode) },
		"preferData": func(indent int) string { return indentLines(preferData(in.DataDiskNode), indent) },
		"indent":     indentLines,
		"entrypoint": EntryPoint,
		"exports":    exports,
		"smbVolume": func(ns, name, subdir string, uid int) (string, error) {
			pw, ok := in.Secrets["samba-password"]
			if !ok || pw == "" {
				return "", fmt.Errorf("secret %q: not generated", "samba-password")
			}
			return smbVolume(ns, name, subdir, uid, pw), nil
		},
		"trustedDomains": func(svc string) string {
			var d []string
			if r, ok := route(svc); ok && in.Settings.Domain != "" {
				d = append(d, r.Sub+"."+in.Settings.Domain)
			}
			if in.Settings.VIP != "" {
				d = append(d, in.Settings.VIP)
			}
			return strings.Join(append(d, "localhost"), " ")
		},
		"registry":          func(repo string) string { r, _, _ := strings.Cut(repo, "/"); return r },
		"repository":        func(repo string) string { _, r, _ := strings.Cut(repo, "/"); return r },
		"join":              strings.Join,
		"list":              func(s ...string) []string { return s },
		"script":            func(lines []string, n int) string { return indentLines(strings.Join(lines, "\n"), n) },
		"backupScript":      BackupScript,
		"filesBackupScript": FilesBackupScript,
		"restoreScript":     RestoreScript,
		"dumpScript":        DumpScript,
	}
}

func route(svc string) (Route, bool) {
	i := slices.IndexFunc(Routes(), func(r Route) bool { return r.Service == svc })
	if i < 0 {
		return Route{}, false
	}
	return Routes()[i], true
}

// quote makes any string a safe YAML scalar: JSON strings are YAML.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func indentLines(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

func preferData(node string) string {
	return `affinity:
  nodeAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      preference:
        matchExpressions:
        - key: kubernetes.io/hostname
          operator: In
          values: [` + quote(node) + `]`
}

// ingress is one Ingress for a web service: a host under the domain on
// Traefik's TLS entrypoint, or, without a domain, no host on the
// service's own plain-HTTP entrypoint.
func ingress(s Settings, svc, ns, backend string, port int) (string, error) {
	r, ok := route(svc)
	if !ok {
		return "", fmt.Errorf("ingress %q: no route for this service", svc)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: %s\n  namespace: %s\n  annotations:\n", backend, ns)
	if s.Domain != "" {
		b.WriteString("    traefik.ingress.kubernetes.io/router.entrypoints: websecure\n")
		b.WriteString("    traefik.ingress.kubernetes.io/router.tls: \"true\"\n")
		if s.ACMEEmail != "" {
			b.WriteString("    traefik.ingress.kubernetes.io/router.tls.certresolver: letsencrypt\n")
		}
	} else {
		fmt.Fprintf(&b, "    traefik.ingress.kubernetes.io/router.entrypoints: %s\n", EntryPoint(r))
	}
	b.WriteString("spec:\n  ingressClassName: traefik\n  rules:\n")
	if s.Domain != "" {
		fmt.Fprintf(&b, "  - host: %s\n    http:\n", quote(r.Sub+"."+s.Domain))
	} else {
		b.WriteString("  - http:\n")
	}
	fmt.Fprintf(&b, "      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: %s\n            port:\n              number: %d\n", backend, port)
	return b.String(), nil
}

// EntryPoint is Traefik's entrypoint name for a route without a domain.
func EntryPoint(r Route) string {
	if r.LANPort == 80 {
		return "web"
	}
	return "lan" + fmt.Sprint(r.LANPort)
}

// exports is the NFS exports line: the share to the LAN only, root
// squashed, NFSv4 (fsid=0).
func exports(lan []string) string {
	var b strings.Builder
	b.WriteString("/nfsshare")
	for _, p := range lan {
		b.WriteString(" " + p + "(rw,fsid=0,sync,no_subtree_check,root_squash)")
	}
	return b.String()
}

// smbVolume is a static PersistentVolume on the dnas Samba share (or a
// folder of it) and its claim in ns, with the share's credentials copied
// into ns (a pod's volume secret must live beside the claim's users).
func smbVolume(ns, name, subdir string, uid int, password string) string {
	source := "//samba.dnas.svc.cluster.local/nas"
	if subdir != "" {
		source += "/" + subdir
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: smb-credentials
  namespace: %[1]s
type: Opaque
stringData:
  username: family
  password: %[5]s
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: %[2]s
spec:
  capacity:
    storage: 1Ti
  accessModes: ["ReadWriteMany"]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  mountOptions:
  - vers=3.1.1
  - dir_mode=0770
  - file_mode=0660
  - uid=%[4]d
  - gid=%[4]d
  - nobrl
  - noperm
  csi:
    driver: smb.csi.k8s.io
    volumeHandle: dnas-%[2]s
    volumeAttributes:
      source: %[3]s
    nodeStageSecretRef:
      name: smb-credentials
      namespace: %[1]s
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  accessModes: ["ReadWriteMany"]
  storageClassName: ""
  volumeName: %[2]s
  resources:
    requests:
      storage: 1Ti`, ns, name, quote(source), uid, quote(password))
}
