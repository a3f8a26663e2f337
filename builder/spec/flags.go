package spec

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Paths is a list of files; in YAML a single file may be given as a
// plain string.
type Paths []string

func (p *Paths) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*p = Paths{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*p = list
	return nil
}

// listFlag is a repeatable flag. When the list already holds the config
// file's entries, the first flag replaces them instead of adding to them:
// flags win over the file.
type listFlag struct {
	p       *[]string
	replace bool
}

func (f *listFlag) String() string {
	if f == nil || f.p == nil {
		return ""
	}
	return strings.Join(*f.p, ",")
}

func (f *listFlag) Set(v string) error {
	if f.replace {
		*f.p = nil
		f.replace = false
	}
	*f.p = append(*f.p, v)
	return nil
}

// servicesFlag switches services: --services nextcloud=off,dnas=on.
type servicesFlag map[string]bool

func (f *servicesFlag) String() string {
	if f == nil {
		return ""
	}
	var parts []string
	for name, on := range *f {
		parts = append(parts, name+"="+onOff(on))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (f *servicesFlag) Set(v string) error {
	if *f == nil {
		*f = servicesFlag{}
	}
	for _, item := range strings.Split(v, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || name == "" {
			return fmt.Errorf("%q: want name=on or name=off", item)
		}
		on, err := parseSwitch(val)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		(*f)[name] = on
	}
	return nil
}

func parseSwitch(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q: want on or off", v)
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
