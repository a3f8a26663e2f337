package stack

// Memory budget of the parts the stack cannot state as pod requests: the
// k3s processes themselves and the pods Helm charts make. These are
// estimates (MiB), not measurements on a board; the README's budget
// table is made from them plus the rendered pods' requests.

// Baseline is a node's memory before the stack: OS plus k3s. k3s' own
// resource profiling puts a server with workload near 1.6 GB; an agent
// (kubelet, containerd, flannel) is far lighter.
func Baseline(server bool) int {
	if server {
		return 1526 // 1.6 GB
	}
	return 512
}

// ChartWorkload is one pod (or a DaemonSet's pod per node) a chart makes.
type ChartWorkload struct {
	Service, Name string
	// PerNode: a DaemonSet; else one pod, placed where Node says ("data"
	// for the data-disk node, "" for anywhere).
	PerNode            bool
	Node               string
	RequestMi, LimitMi int
	Estimated          bool
}

// ChartWorkloads are the pods of the charts that are switched on.
// Traefik's figures are the requests and limits we set; Longhorn and
// csi-driver-smb set none (or few) of their own, so theirs are estimates.
func ChartWorkloads(s Settings) []ChartWorkload {
	var w []ChartWorkload
	if s.On("traefik") {
		w = append(w, ChartWorkload{Service: "traefik", Name: "traefik", Node: "data", RequestMi: 64, LimitMi: 192})
		w = append(w, ChartWorkload{Service: "traefik", Name: "svclb (k3s ServiceLB, every LoadBalancer service)", PerNode: true, RequestMi: 16, LimitMi: 16, Estimated: true})
	}
	if s.On("longhorn") {
		w = append(w,
			ChartWorkload{Service: "longhorn", Name: "manager + instance-manager + engine image + CSI plugin", PerNode: true, RequestMi: 256, LimitMi: 256, Estimated: true},
			ChartWorkload{Service: "longhorn", Name: "UI, driver deployer, 4 CSI sidecars (1 replica each)", RequestMi: 160, LimitMi: 160, Estimated: true})
	}
	if s.On("csi-driver-smb") {
		w = append(w,
			ChartWorkload{Service: "csi-driver-smb", Name: "node plugin", PerNode: true, RequestMi: 60, LimitMi: 400},
			ChartWorkload{Service: "csi-driver-smb", Name: "controller", RequestMi: 80, LimitMi: 600})
	}
	return w
}
