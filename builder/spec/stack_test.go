package spec

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestValidateStack(t *testing.T) {
	tests := []struct {
		args []string
		flag string // "" means valid
	}{
		{nil, ""},
		{[]string{"--backup-repo", "/mnt/usb/restic", "--longhorn-backup-target", "nfs://nas.lan:/backups"}, ""},
		{[]string{"--backup-repo", "rest:https://backup.lan:8000/home"}, ""},
		{[]string{"--backup-repo", "s3:bucket"}, "--backup-repo"},
		{[]string{"--backup-repo", "/mnt/$(reboot)"}, "--backup-repo"},
		{[]string{"--longhorn-backup-target", "s3://b@r/"}, "--longhorn-backup-target"},
		{[]string{"--longhorn-backup-target", "cifs://nas.lan/backups"}, "--longhorn-backup-target"},
		{[]string{"--nextcloud-size", "8GB"}, "--nextcloud-size"},
		{[]string{"--database-size", "0Gi"}, "--database-size"},
		{[]string{"--monitoring-size", ""}, "--monitoring-size"},
	}
	for _, tt := range tests {
		s, err := Parse(tt.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		errs := s.validateStack()
		if tt.flag == "" {
			if len(errs) > 0 {
				t.Errorf("%v: %v", tt.args, errs)
			}
			continue
		}
		var ue *UsageError
		if len(errs) != 1 || !errors.As(errs[0], &ue) || ue.Field != tt.flag || !strings.Contains(ue.Error(), "want") {
			t.Errorf("%v: %v, want one error naming %s", tt.args, errs, tt.flag)
		}
	}
}
