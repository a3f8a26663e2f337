// Package overlays holds the files baked into every node's root file system,
// as a tree under rootfs/. Files ending in .tmpl are Go templates rendered
// with the node's data; the rest are copied as they are.
package overlays

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"text/template"
)

//go:embed all:rootfs
var tree embed.FS

// File is one rendered file, with its absolute path in the image.
type File struct {
	Path string
	Mode fs.FileMode
	Data []byte
}

// Render walks the tree and renders every file with data. A template that
// refers to a missing field fails with the template's name and the field.
func Render(data any) ([]File, error) {
	var files []File
	err := fs.WalkDir(tree, "rootfs", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := tree.ReadFile(p)
		if err != nil {
			return err
		}
		dst := strings.TrimPrefix(p, "rootfs")
		if strings.HasSuffix(dst, ".tmpl") {
			dst = strings.TrimSuffix(dst, ".tmpl")
			t, err := template.New(p).Option("missingkey=error").Parse(string(raw))
			if err != nil {
				return fmt.Errorf("overlay template %s: %w", p, err)
			}
			var b bytes.Buffer
			if err := t.Execute(&b, data); err != nil {
				return fmt.Errorf("overlay template %s: %w", p, err)
			}
			raw = b.Bytes()
		}
		files = append(files, File{Path: dst, Mode: modeFor(dst), Data: raw})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// modeFor decides permissions by place, since embed keeps none.
func modeFor(p string) fs.FileMode {
	switch {
	case strings.HasPrefix(p, "/etc/profile.d/"):
		return 0o644 // sourced by login shells, not run
	case strings.HasPrefix(p, "/usr/local/bin/"), strings.HasPrefix(p, "/usr/local/sbin/"),
		path.Ext(p) == ".sh":
		return 0o755
	case strings.HasPrefix(p, "/etc/sudoers.d/"):
		return 0o440 // sudo ignores a drop-in others can write
	default:
		return 0o644
	}
}
