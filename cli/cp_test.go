package cli

import "testing"

func TestParseCopyArg(t *testing.T) {
	for in, want := range map[string]machinePath{
		"dev:/etc/hosts": {inMachine: true, name: "dev", path: "/etc/hosts"},
		":/tmp":          {inMachine: true, path: "/tmp"},
		"dev:":           {inMachine: true, name: "dev"},
		"./a:b":          {path: "./a:b"},
		"/x/a:b":         {path: "/x/a:b"},
		"dir/a:b":        {path: "dir/a:b"},
		"file":           {path: "file"},
	} {
		if got := parseCopyArg(in); got != want {
			t.Errorf("parseCopyArg(%q) = %+v, want %+v", in, got, want)
		}
	}
}
