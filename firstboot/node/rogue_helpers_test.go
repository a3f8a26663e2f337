package node_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/internal/clustertest"
)

func clusterID(t *testing.T, c *clustertest.Cluster) string {
	t.Helper()
	n, err := cluster.LoadNode(filepath.Join(c.Nodes[0].Root, cluster.NodeConfigPath))
	if err != nil {
		t.Fatal(err)
	}
	return n.ClusterID
}

func init() {
	if os.Getenv("HOMECLOUD_ROGUE") == "1" {
		rogueMain()
		os.Exit(0)
	}
}
