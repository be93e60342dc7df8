package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedConfigsAreValid: every example under deploy/ passes
// check-config once the files it names under /etc/sekisho/ exist
// (deployFixture), and not before: check-config opens them as serve does.
func TestShippedConfigsAreValid(t *testing.T) {
	files := deployConfigs(t)
	for _, f := range files {
		var out, errb bytes.Buffer
		if code := run([]string{"check-config", "-config", f}, &out, &errb); code == 0 && strings.Contains(fileContent(t, f), "/etc/sekisho/") && !exists("/etc/sekisho") {
			t.Errorf("%s: check-config passed while the files it names under /etc/sekisho/ do not exist here", f)
		}
		path := filepath.Join(t.TempDir(), filepath.Base(f))
		writeFile(t, path, deployFixture(t, fileContent(t, f)))
		out.Reset()
		errb.Reset()
		if code := run([]string{"check-config", "-config", path}, &out, &errb); code != 0 {
			t.Errorf("%s: check-config exit %d: %s", f, code, errb.String())
		}
	}
}

func TestVersionAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if run([]string{"version"}, &out, &errb) != 0 || !strings.HasPrefix(out.String(), "sekisho ") {
		t.Errorf("version: %q", out.String())
	}
	if run([]string{"frobnicate"}, &out, &errb) != 2 {
		t.Error("unknown command did not exit 2")
	}
	_ = os.Stdout
}
