package stack

import (
	"strings"
	"testing"
)

// The checks must be able to fail: a typo'd field, a missing secret and a
// missing image are caught, naming the template and the field.
func TestStrictDecodeRejectsUnknownFields(t *testing.T) {
	obj, err := newObject("apps/v1", "Deployment")
	if err != nil {
		t.Fatal(err)
	}
	if err := strictJSON([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replica":1}}`), obj); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Errorf("unknown field accepted: %v", err)
	}
	hc, _ := newObject("helm.cattle.io/v1", "HelmChart")
	if err := strictJSON([]byte(`{"spec":{"chart":"x","valuesContents":"a: 1"}}`), hc); err == nil {
		t.Error("HelmChart with unknown spec field accepted")
	}
	if _, err := newObject("example.com/v1", "Widget"); err == nil {
		t.Error("unknown kind accepted")
	}
}

func TestRenderErrorNamesTemplateAndField(t *testing.T) {
	in := testInput(4, true)
	delete(in.Secrets, "nextcloud-db-password")
	_, err := Render(in)
	if err == nil || !strings.Contains(err.Error(), "nextcloud.yaml.tmpl") || !strings.Contains(err.Error(), `"nextcloud-db-password"`) {
		t.Errorf("error %v does not name the template and the secret", err)
	}
	in = testInput(4, true)
	in.DataDiskNode = "elsewhere"
	if _, err := Render(in); err == nil || !strings.Contains(err.Error(), "topology.data_disk_node") {
		t.Errorf("error %v does not name the field", err)
	}
	in = testInput(4, true)
	in.Settings.Storage.Nextcloud = "lots"
	if _, err := Render(in); err == nil || !strings.Contains(err.Error(), "storage.nextcloud") {
		t.Errorf("error %v does not name the field", err)
	}
}

func TestParseImagesRejectsFloatingAndNonARM(t *testing.T) {
	row := func(version, arm string) string {
		return "image\tx\tdocker.io/x\t" + version + "\t-\t" + arm + "\tup\n"
	}
	tests := []struct {
		name, tsv, want string
	}{
		{"latest", row("latest", "yes"), "not pinned"},
		{"major only", row("3", "yes"), "not pinned"},
		{"no arm64", row("1.2.3", "no"), "arm64"},
		{"bad digest", "image\tx\tdocker.io/x\t1.2.3\tsha256:abc\tyes\tup\n", "digest"},
		{"tag in reference", "image\tx\tdocker.io/x:1\t1.2.3\t-\tyes\tup\n", "carries a tag"},
		{"ok", row("v1.2.3", "yes"), ""},
	}
	for _, tt := range tests {
		_, err := ParseImages(tt.tsv)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: err %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestEveryTableRowIsUsed(t *testing.T) {
	imgs, err := LoadImages()
	if err != nil {
		t.Fatal(err)
	}
	files, err := Render(testInput(4, true))
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, f := range files {
		all.Write(f.Data)
	}
	for _, i := range imgs {
		if !strings.Contains(all.String(), i.Tag) {
			t.Errorf("%s %s %s is in images.tsv but not used: drop it or use it", i.Kind, i.Name, i.Tag)
		}
	}
}
