package stack

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"
)

//go:embed images.tsv
var imagesTSV string

// Image is one row of images.tsv: a container image or a Helm chart the
// stack pins.
type Image struct {
	Kind    string // "image" or "chart"
	Name    string // what templates call it
	Repo    string // image repository, or the chart's Helm repository URL
	Tag     string // image tag or chart version
	Digest  string // sha256:…, or "" when not recorded yet
	ARM64   bool
	Comment string
}

// Ref is the image reference a pod uses: repo:tag, with @digest when known.
func (i Image) Ref() string {
	if i.Digest != "" {
		return i.Repo + ":" + i.Tag + "@" + i.Digest
	}
	return i.Repo + ":" + i.Tag
}

// Images is the parsed table.
type Images []Image

var (
	pinnedTag = regexp.MustCompile(`^v?[0-9]+(\.[0-9]+){1,3}([-.][A-Za-z0-9.]+)?$`)
	digestRE  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// LoadImages parses the embedded table and checks every row: a pinned
// version (never latest or a bare major), a well-formed digest if any,
// arm64 support, and one row per kind and name.
func LoadImages() (Images, error) { return ParseImages(imagesTSV) }

// ParseImages parses a table in the images.tsv format.
func ParseImages(tsv string) (Images, error) {
	var out Images
	seen := map[string]bool{}
	for n, line := range strings.Split(tsv, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 7 {
			return nil, fmt.Errorf("images.tsv line %d: %d columns, want 7 (kind name reference version digest arm64 upstream)", n+1, len(f))
		}
		img := Image{Kind: f[0], Name: f[1], Repo: f[2], Tag: f[3], ARM64: f[5] == "yes", Comment: f[6]}
		if f[4] != "-" {
			img.Digest = f[4]
		}
		switch {
		case img.Kind != "image" && img.Kind != "chart":
			return nil, fmt.Errorf("images.tsv line %d: kind %q, want image or chart", n+1, img.Kind)
		case seen[img.Kind+"/"+img.Name]:
			return nil, fmt.Errorf("images.tsv line %d: %s %q listed twice", n+1, img.Kind, img.Name)
		case !pinnedTag.MatchString(img.Tag):
			return nil, fmt.Errorf("images.tsv line %d: %s %q version %q is not pinned: want an exact release such as 1.2.3", n+1, img.Kind, img.Name, img.Tag)
		case img.Digest != "" && !digestRE.MatchString(img.Digest):
			return nil, fmt.Errorf("images.tsv line %d: %s %q digest %q: want sha256:<64 hex> or -", n+1, img.Kind, img.Name, img.Digest)
		case f[5] != "yes":
			return nil, fmt.Errorf("images.tsv line %d: %s %q arm64 %q: the boards are arm64, only images with arm64 may be used", n+1, img.Kind, img.Name, f[5])
		case img.Kind == "image" && strings.Contains(img.Repo, ":"):
			return nil, fmt.Errorf("images.tsv line %d: image %q reference %q carries a tag: put it in the version column", n+1, img.Name, img.Repo)
		}
		seen[img.Kind+"/"+img.Name] = true
		out = append(out, img)
	}
	return out, nil
}

// Lookup finds an image by name.
func (is Images) Lookup(name string) (Image, bool) { return is.find("image", name) }

// Chart finds a chart by name.
func (is Images) Chart(name string) (Image, bool) { return is.find("chart", name) }

func (is Images) find(kind, name string) (Image, bool) {
	for _, i := range is {
		if i.Kind == kind && i.Name == name {
			return i, true
		}
	}
	return Image{}, false
}

// ByRef finds the image a pod reference names.
func (is Images) ByRef(ref string) (Image, bool) {
	for _, i := range is {
		if i.Kind == "image" && i.Ref() == ref {
			return i, true
		}
	}
	return Image{}, false
}
