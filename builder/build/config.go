package build

import (
	"net/netip"

	"github.com/homecloud/homecloud/boards"
	"github.com/homecloud/homecloud/builder/secrets"
	"github.com/homecloud/homecloud/builder/spec"
	"github.com/homecloud/homecloud/internal/cluster"
)

// plannedNodes are the nodes of the spec as secrets wants them.
func plannedNodes(s *spec.Spec) []secrets.NodeSpec {
	addrs := s.NodeAddrs()
	nodes := make([]secrets.NodeSpec, s.Nodes)
	for i := range nodes {
		nodes[i] = secrets.NodeSpec{Name: s.NodeName(i + 1), Index: i + 1}
		if addrs != nil {
			nodes[i].Addr = addrs[i]
		}
	}
	return nodes
}

// nodeConfig is /etc/homecloud/node.json for one node.
func nodeConfig(s *spec.Spec, board *boards.Board, armbian bool, b *secrets.NodeBundle) cluster.Node {
	n := cluster.Node{
		Cluster:   s.Name,
		ClusterID: b.ClusterID,
		Name:      b.Name,
		Index:     b.Index,
		Expect:    s.Nodes,
		Board:     board.Name,
		Network:   cluster.Network{Mode: "dhcp", MAC: b.MAC.String()},
		Domain:    s.Domain,
		ACMEEmail: s.ACMEEmail,
		DataDisk:  s.DataDisk,
		Services:  s.Services,
		AdminUser: s.AdminUser,
	}
	n.DataDiskNode = s.DataDiskNodeName()
	if s.Static() {
		n.Network.Mode = "static"
		n.Network.Address = netip.PrefixFrom(b.Addr, s.Prefix().Bits()).String()
		n.Network.Gateway = s.GatewayAddr().String()
		// Home routers answer DNS on their own address; without a DNS=
		// a static node resolves nothing and k3s cannot pull images.
		n.Network.DNS = []string{n.Network.Gateway}
	}
	if v := s.VIPAddr(); v.IsValid() {
		n.VIP = v.String()
	}
	n.HoldPackages = board.HoldPackages.Debian
	if armbian {
		n.HoldPackages = board.HoldPackages.Armbian
	}
	for _, p := range plannedNodes(s) {
		m := cluster.Member{Name: p.Name, Index: p.Index}
		if p.Addr.IsValid() {
			m.Address = p.Addr.String()
		}
		n.Members = append(n.Members, m)
	}
	return n
}

// overlayData is what the overlays/ templates see.
type overlayData struct {
	Node      cluster.Node
	Board     overlayBoard
	AdminUser string
}

type overlayBoard struct {
	Name      string
	EthDriver string
	EthPath   string
}

func newOverlayData(n cluster.Node, board *boards.Board) overlayData {
	return overlayData{Node: n, Board: overlayBoard{Name: board.Name, EthDriver: board.Network.EthDriver, EthPath: board.Network.EthPath}, AdminUser: n.AdminUser}
}
