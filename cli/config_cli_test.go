package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCommands(t *testing.T) {
	e := newEnv(t)
	want := filepath.Join(e.home, ".config", "machinetop", "config.toml")
	if got := strings.TrimSpace(e.must("config", "path")); got != want {
		t.Errorf("config path = %q, want %q", got, want)
	}
	xdg := t.TempDir()
	e.more = []string{"XDG_CONFIG_HOME=" + xdg}
	p := filepath.Join(xdg, "machinetop", "config.toml")
	if got := strings.TrimSpace(e.must("config", "path")); got != p {
		t.Errorf("config path with XDG_CONFIG_HOME = %q, want %q", got, p)
	}
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("[create]\nmemory = \"1G\"\n[dashboard]\nthme = \"dark\"\n"), 0o644)
	e.fails([]string{"config", "show"}, p+":4: dashboard.thme: unknown key (known: theme, refresh)")
	// Every command that reads the file refuses it the same way.
	e.fails([]string{"machine", "create", "tiny:1", "--no-boot"}, p+":4: dashboard.thme")

	os.WriteFile(p, []byte("[create]\nmemory = \"1G\"\ndisk = \"3G\"\n"), 0o644)
	out := e.must("config", "show", "--format", "{{.Key}}={{.Value}} {{.Source}}")
	for _, w := range []string{"create.memory=1G config file", "create.disk=3G config file", "create.home-mount=rw default", "dashboard.theme=auto default"} {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("config show lacks %q:\n%s", w, out)
		}
	}
	// The file's disk applies to create; the --memory flag beats the file's.
	e.must("image", "import", rootfsTar, "tiny:1")
	e.must("machine", "create", "tiny:1", "-n", "c1", "--no-boot", "--memory", "512M", "--cpus", "1")
	out = e.must("machine", "ls", "--format", "{{.Name}} {{.MemoryBytes | size}} {{.DiskBytes | size}}")
	if !strings.Contains(out, "c1 512M 3G") {
		t.Errorf("machine ls = %q, want c1 with 512M memory and the file's 3G disk", out)
	}
}
