package status

import (
	"context"
	"net/http/httptest"
	"testing"
)

func TestServeAndFetch(t *testing.T) {
	var b Board
	b.Update(func(v *View) { v.Node = "n1"; v.Step = "agree"; v.Done = []string{"network", "discover"} })
	b.Probe = func(_ context.Context, v *View) { v.Leader = "n2" }
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()
	v, err := Fetch(context.Background(), srv.URL+"/status")
	if err != nil {
		t.Fatal(err)
	}
	if v.Node != "n1" || v.Step != "agree" || v.Leader != "n2" || len(v.Done) != 2 {
		t.Fatalf("view %+v", v)
	}
	if _, err := Fetch(context.Background(), srv.URL+"/nothing"); err == nil {
		t.Fatal("404 accepted as a status")
	}
}
