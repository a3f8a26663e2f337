package boards

import (
	"strings"
	"testing"
)

// A valid definition that each case below breaks in one place.
const goodDef = `name: test
arch: arm64
soc: {vendor: V, model: M, family: fam}
dtb: v/x.dtb
console: ttyS0,115200
disk: {partition_table: mbr, root_partition_start: 4194304}
uboot:
  package: u-boot-x
  dir: /usr/lib/u-boot/x/
  blobs:
    - {file: spl.bin, offset: 8192}
    - {file: u-boot.itb, offset: 40960}
base_image: {source: armbian, url_pattern: "https://example.invalid/{version}.img.xz", version: "1", sha256: ""}
hold_packages: {debian: [linux-image-arm64]}
network: {interfaces: [eth0], eth_driver: virtio_net}
`

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		wantErr string // empty: must decode
	}{
		{"good", func(s string) string { return s }, ""},
		{"unknown key", func(s string) string { return s + "colour: red\n" }, "field colour not found"},
		{"misspelt nested key", func(s string) string {
			return strings.Replace(s, "partition_table:", "partition_tabel:", 1)
		}, "field partition_tabel not found"},
		{"name differs from file", func(s string) string { return strings.Replace(s, "name: test", "name: other", 1) }, `name "other", want "test"`},
		{"arch", func(s string) string { return strings.Replace(s, "arch: arm64", "arch: armhf", 1) }, "arch:"},
		{"no console", func(s string) string { return strings.Replace(s, "console: ttyS0,115200", "console: ''", 1) }, "console: empty"},
		{"root start unaligned", func(s string) string { return strings.Replace(s, "4194304", "4194305", 1) }, "root_partition_start"},
		{"blob in MBR", func(s string) string { return strings.Replace(s, "offset: 8192", "offset: 0", 1) }, "blobs[0].offset"},
		{"blob past root", func(s string) string { return strings.Replace(s, "offset: 40960", "offset: 8388608", 1) }, "blobs[1].offset"},
		{"blobs out of order", func(s string) string { return strings.Replace(s, "offset: 40960", "offset: 4096", 1) }, "ascending"},
		{"gpt under spl", func(s string) string {
			return strings.Replace(s, "partition_table: mbr", "partition_table: gpt", 1)
		}, "overwrites the GPT"},
		{"bad digest", func(s string) string { return strings.Replace(s, `sha256: ""`, `sha256: "abc"`, 1) }, "64 lower-case hex"},
		{"pinned without kernel", func(s string) string {
			s = strings.Replace(s, "{version}.img", "{version}_{kernel}.img", 1)
			return strings.Replace(s, `sha256: ""`, `sha256: "`+strings.Repeat("0f", 32)+`"`, 1)
		}, "{kernel} but it is empty"},
		{"plain http", func(s string) string { return strings.Replace(s, "https://", "http://", 1) }, "https://"},
		{"no holds", func(s string) string {
			return strings.Replace(s, "hold_packages: {debian: [linux-image-arm64]}", "hold_packages: {}", 1)
		}, "hold_packages"},
		{"no interfaces", func(s string) string { return strings.Replace(s, "[eth0]", "[]", 1) }, "network.interfaces"},
		{"no eth driver or path", func(s string) string { return strings.Replace(s, ", eth_driver: virtio_net", "", 1) }, "no eth_driver or eth_path"},
		{"eth path with a space", func(s string) string {
			return strings.Replace(s, ", eth_driver: virtio_net", ", eth_path: platform 1c30000", 1)
		}, "network.eth_path"},
		{"two documents", func(s string) string { return s + "---\nname: test\n" }, "more than one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := decode("test.yaml", []byte(tt.edit(goodDef)))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if b.UBoot == nil || len(b.UBoot.Blobs) != 2 {
					t.Errorf("decoded %+v", b)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("decode err = %v, want it to contain %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "test.yaml") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}
