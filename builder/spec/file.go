package spec

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// loadFile decodes the YAML cluster spec at path over s, strictly: an
// unknown key is an error naming it, never a silently ignored setting.
func loadFile(path string, s *Spec) error {
	field := "--config " + path
	data, err := os.ReadFile(path)
	if err != nil {
		return usagef(field, "%w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return usagef(field, "%w", err)
	}
	if len(doc.Content) == 0 {
		return usagef(field, "empty file: write the flags as keys, e.g. \"nodes: 4\"")
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return usagef(field, "line %d: want a mapping of flag names to values, e.g. \"nodes: 4\"", top.Line)
	}
	known := yamlKeys()
	var present []string
	for i := 0; i < len(top.Content); i += 2 {
		k := top.Content[i]
		if !slices.Contains(known, k.Value) {
			hint := ""
			if k.Value == "config" {
				hint = " (a config file cannot name another)"
			}
			return usagef(field, "line %d: unknown key %q%s: known keys are %s", k.Line, k.Value, hint, strings.Join(known, ", "))
		}
		// Checked here, on the document, because decoding would not say:
		// an empty value leaves the field nil (or rebases a default path),
		// and yaml.v3 truncates 2.9 into an int field.
		switch v := top.Content[i+1]; {
		case v.Tag == "!!null":
			return usagef(field, "line %d: %q has no value: give one, or remove the key for the default", k.Line, k.Value)
		case intKeys()[k.Value] && v.Tag != "!!int":
			return usagef(field, "line %d: %s: %q is not a whole number", v.Line, k.Value, v.Value)
		}
		present = append(present, k.Value)
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil {
		return usagef(field, "%w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return usagef(field, "more than one YAML document: keep one cluster per file")
	}

	dir := filepath.Dir(path)
	rebase := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && !strings.HasPrefix(*p, "~/") {
			*p = filepath.Join(dir, *p)
		}
	}
	for _, key := range present {
		switch key {
		case "out":
			rebase(&s.Out)
		case "base-image":
			rebase(&s.BaseImage)
		case "k3s-binary":
			rebase(&s.K3sBinary)
		case "k3s-images":
			rebase(&s.K3sImages)
		case "debs":
			rebase(&s.Debs)
		case "test-k3s":
			rebase(&s.TestK3s)
		case "uboot-dir":
			rebase(&s.UBootDir)
		case "ssh-key":
			for i := range s.SSHKeys {
				rebase(&s.SSHKeys[i])
			}
		}
	}
	return nil
}

// intKeys are the YAML keys of whole-number fields.
func intKeys() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[Spec]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" && f.Type.Kind() == reflect.Int {
			keys[name] = true
		}
	}
	return keys
}

// yamlKeys lists the keys a cluster file may have: Spec's yaml tags.
func yamlKeys() []string {
	t := reflect.TypeFor[Spec]()
	var keys []string
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}
