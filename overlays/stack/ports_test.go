package stack

import (
	"cmp"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// reservedPorts are what the node already listens on: k3s, etcd on
// servers, flannel's VXLAN, and homecloud-firstboot's raft and status.
func reservedPorts(server bool) map[string]string {
	r := map[string]string{"TCP/10250": "kubelet", "UDP/8472": "flannel", "TCP/7373": "homecloud raft", "TCP/7380": "homecloud status", "TCP/22": "sshd"}
	if server {
		for k, v := range map[string]string{"TCP/6443": "k3s API", "TCP/2379": "etcd", "TCP/2380": "etcd peers"} {
			r[k] = v
		}
	}
	return r
}

// checkPorts: no two things claim one port on one node. ServiceLB (k3s'
// LoadBalancer) claims a LoadBalancer service's ports on every node;
// host-network pods and hostPorts claim theirs where the pod runs.
func checkPorts(t *testing.T, in Input, docs []doc) {
	t.Helper()
	claims := map[string]map[string]string{}
	for _, n := range in.Nodes() {
		claims[n] = reservedPorts(slices.Contains(in.Servers, n))
	}
	claim := func(nodes []string, proto corev1.Protocol, port int32, who string) {
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		key := fmt.Sprintf("%s/%d", proto, port)
		for _, n := range nodes {
			if other, dup := claims[n][key]; dup {
				t.Errorf("node %s: port %s claimed by %s and %s", n, key, other, who)
			}
			claims[n][key] = who
		}
	}
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *corev1.Service:
			if o.Spec.Type == corev1.ServiceTypeLoadBalancer {
				for _, p := range o.Spec.Ports {
					claim(in.Nodes(), p.Protocol, p.Port, "Service "+d.ns+"/"+d.name)
				}
			}
		case *helmChart:
			if o.Spec.Chart != "traefik" {
				continue
			}
			var values struct {
				Ports map[string]struct {
					ExposedPort int32 `json:"exposedPort"`
					Protocol    corev1.Protocol
					Expose      *struct {
						Default bool `json:"default"`
					} `json:"expose"`
				} `json:"ports"`
			}
			if err := yaml.Unmarshal([]byte(o.Spec.ValuesContent), &values); err != nil {
				t.Fatalf("traefik values: %v", err)
			}
			for name, p := range values.Ports {
				if p.Expose != nil && !p.Expose.Default {
					continue
				}
				claim(in.Nodes(), p.Protocol, p.ExposedPort, "traefik entrypoint "+name)
			}
		}
	}
	for _, p := range podTemplates(docs) {
		nodes := in.Nodes()
		if n := p.node(); n != "" && !p.daemonSet {
			nodes = []string{n}
		} else if !p.daemonSet {
			nodes = nil // anywhere: only hostPort/hostNetwork pods matter, checked below
		}
		for _, c := range p.spec.Containers {
			for _, cp := range c.Ports {
				if cp.HostPort == 0 && !p.spec.HostNetwork {
					continue
				}
				if nodes == nil {
					t.Errorf("%s %s/%s: claims host port %d but may run on any node: pin it", p.doc.kind, p.doc.ns, p.doc.name, cp.ContainerPort)
					continue
				}
				port := cp.HostPort
				if port == 0 {
					port = cp.ContainerPort
				}
				claim(nodes, cp.Protocol, port, p.doc.kind+" "+p.doc.ns+"/"+p.doc.name)
			}
		}
	}
}

// checkFirewall: a host-network pod's ports reach the node's INPUT
// chain (ServiceLB's and hostPort's DNAT cross FORWARD instead, which
// the firewall leaves to k3s), so each must be accepted there from
// somewhere: the LAN or the peers.
func checkFirewall(t *testing.T, docs []doc) {
	t.Helper()
	rules, err := os.ReadFile("../rootfs/etc/nftables.conf")
	if err != nil {
		t.Fatal(err)
	}
	open := map[string]bool{} // "tcp/9100"
	portRE := regexp.MustCompile(`(tcp|udp) dport (\{[^}]*\}|\S+)`)
	for _, line := range strings.Split(string(rules), "\n") {
		if !strings.HasSuffix(strings.TrimSpace(line), "accept") {
			continue
		}
		for _, m := range portRE.FindAllStringSubmatch(line, -1) {
			for _, tok := range strings.FieldsFunc(m[2], func(r rune) bool { return r == '{' || r == '}' || r == ',' || r == ' ' }) {
				lo, hi, _ := strings.Cut(tok, "-")
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(cmp.Or(hi, lo))
				if err1 != nil || err2 != nil {
					continue
				}
				for p := a; p <= b; p++ {
					open[fmt.Sprintf("%s/%d", m[1], p)] = true
				}
			}
		}
	}
	for _, p := range podTemplates(docs) {
		if !p.spec.HostNetwork {
			continue
		}
		for _, c := range p.spec.Containers {
			for _, cp := range c.Ports {
				key := fmt.Sprintf("%s/%d", strings.ToLower(string(cmp.Or(cp.Protocol, corev1.ProtocolTCP))), cp.ContainerPort)
				if !open[key] {
					t.Errorf("%s %s/%s listens on the node's %s, which overlays/rootfs/etc/nftables.conf never accepts", p.doc.kind, p.doc.ns, p.doc.name, key)
				}
			}
		}
	}
}

// checkSecrets: every generated secret reaches the cluster only inside a
// Secret object, and no template carries a password of its own.
func checkSecrets(t *testing.T, in Input, files []File, docs []doc) {
	t.Helper()
	for _, f := range files {
		for _, k := range SecretKeys() {
			v := in.Secrets[k]
			n := strings.Count(string(f.Data), quote(v))
			if n == 0 {
				continue
			}
			inSecrets := 0
			for _, d := range docs {
				if s, ok := d.obj.(*corev1.Secret); ok && d.file == f.Name {
					for _, sv := range s.StringData {
						if sv == v {
							inSecrets++
						}
					}
				}
			}
			if n != inSecrets {
				t.Errorf("%s: secret %s appears %d times, %d of them in Secret objects", f.Name, k, n, inSecrets)
			}
		}
	}
	for _, name := range Services() {
		raw, _ := templates.ReadFile("templates/" + name + ".yaml.tmpl")
		for _, bad := range []string{"admin123", "changeme", "password: \"", "PASSWORD\n          value:"} {
			if strings.Contains(string(raw), bad) {
				t.Errorf("template %s carries a literal credential (%q)", name, bad)
			}
		}
	}
}
