package stack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Memory is what a rendered stack asks of the nodes' memory, in MiB of
// container requests, by where the scheduler must or should put it.
type Memory struct {
	// Placed is, per node, what is held or preferred there (a DaemonSet
	// counts on every node), with the charts' estimated pods.
	Placed map[string]int
	// Cron is, per node, what the CronJobs placed there request while they
	// run (minutes, at night).
	Cron map[string]int
	// Anywhere is what pods without placement request.
	Anywhere int
}

// MemoryOf reads the memory requests out of the rendered files (they are
// the numbers that schedule, so nothing is kept twice) and adds the charts'
// pods, whose requests the charts set (ChartWorkloads).
func MemoryOf(files []File, in Input) (Memory, error) {
	m := Memory{Placed: map[string]int{}, Cron: map[string]int{}}
	nodes := in.Nodes()
	for _, f := range files {
		dec := yaml.NewDecoder(bytes.NewReader(f.Data))
		for {
			var o workload
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return Memory{}, fmt.Errorf("%s: %w", f.Name, err)
			}
			pod, cron := o.pod()
			if pod == nil {
				continue
			}
			req := 0
			for _, c := range pod.Containers {
				mi, err := mebibytes(c.Resources.Requests["memory"])
				if err != nil {
					return Memory{}, fmt.Errorf("%s: %s %s: %w", f.Name, o.Kind, o.Metadata.Name, err)
				}
				req += mi
			}
			node := pod.node()
			switch {
			case cron:
				m.Cron[node] += req
			case o.Kind == "DaemonSet":
				for _, n := range nodes {
					m.Placed[n] += req
				}
			case node == "":
				m.Anywhere += req
			default:
				m.Placed[node] += req
			}
		}
	}
	for _, w := range ChartWorkloads(in.Settings) {
		switch {
		case w.PerNode:
			for _, n := range nodes {
				m.Placed[n] += w.RequestMi
			}
		case w.Node == "data":
			m.Placed[in.DataDiskNode] += w.RequestMi
		default:
			m.Anywhere += w.RequestMi
		}
	}
	return m, nil
}

// Overcommitted names each node whose OS and k3s (Baseline), placed pods
// and CronJobs need more than boardMiB, and the pods without placement
// when they do not fit into what the nodes have left.
func (m Memory) Overcommitted(t Topology, boardMiB int) []string {
	var out []string
	left := 0
	for _, n := range t.Nodes() {
		used := Baseline(slices.Contains(t.Servers, n)) + m.Placed[n] + m.Cron[n]
		if used > boardMiB {
			out = append(out, fmt.Sprintf("%s needs %d MiB (OS and k3s %d, the stack %d, its nightly jobs %d) of %d",
				n, used, Baseline(slices.Contains(t.Servers, n)), m.Placed[n], m.Cron[n], boardMiB))
		}
		left += max(0, boardMiB-used)
	}
	if m.Anywhere > left {
		out = append(out, fmt.Sprintf("pods that may run anywhere need %d MiB; the nodes have %d MiB left", m.Anywhere, left))
	}
	return out
}

// workload is the part of a Deployment, StatefulSet, DaemonSet or
// CronJob that places pods and asks for memory.
type workload struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Template    *podTmpl `yaml:"template"`
		JobTemplate *struct {
			Spec struct {
				Template podTmpl `yaml:"template"`
			} `yaml:"spec"`
		} `yaml:"jobTemplate"`
	} `yaml:"spec"`
}

type podTmpl struct {
	Spec podSpec `yaml:"spec"`
}

type podSpec struct {
	NodeSelector map[string]string `yaml:"nodeSelector"`
	Affinity     struct {
		NodeAffinity struct {
			Preferred []struct {
				Preference struct {
					MatchExpressions []struct {
						Key    string   `yaml:"key"`
						Values []string `yaml:"values"`
					} `yaml:"matchExpressions"`
				} `yaml:"preference"`
			} `yaml:"preferredDuringSchedulingIgnoredDuringExecution"`
		} `yaml:"nodeAffinity"`
	} `yaml:"affinity"`
	Containers []struct {
		Resources struct {
			Requests map[string]string `yaml:"requests"`
		} `yaml:"resources"`
	} `yaml:"containers"`
}

func (o workload) pod() (spec *podSpec, cron bool) {
	switch o.Kind {
	case "Deployment", "StatefulSet", "DaemonSet":
		if o.Spec.Template != nil {
			return &o.Spec.Template.Spec, false
		}
	case "CronJob":
		if o.Spec.JobTemplate != nil {
			return &o.Spec.JobTemplate.Spec.Template.Spec, true
		}
	}
	return nil, false
}

// node is where the pod runs: its nodeSelector's host, or the one host it
// prefers; "" for anywhere.
func (p *podSpec) node() string {
	if n := p.NodeSelector["kubernetes.io/hostname"]; n != "" {
		return n
	}
	for _, pref := range p.Affinity.NodeAffinity.Preferred {
		for _, e := range pref.Preference.MatchExpressions {
			if e.Key == "kubernetes.io/hostname" && len(e.Values) == 1 {
				return e.Values[0]
			}
		}
	}
	return ""
}

// mebibytes reads a Kubernetes memory quantity in the binary units the
// templates use (or none: no request counts as 0).
func mebibytes(q string) (int, error) {
	if q == "" {
		return 0, nil
	}
	for _, u := range []struct {
		suffix string
		div    float64
	}{{"Gi", 1.0 / 1024}, {"Mi", 1}, {"Ki", 1024}} {
		if num, ok := strings.CutSuffix(q, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("memory request %q: not a quantity", q)
			}
			return int(v / u.div), nil
		}
	}
	return 0, fmt.Errorf("memory request %q: write it in Ki, Mi or Gi", q)
}
