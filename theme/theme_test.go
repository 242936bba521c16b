package theme

import "testing"

// TestChoose: MACHINETOP_THEME beats the config file's theme, which beats
// following the terminal.
func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		env, config string
		want        string
		fixed       bool
	}{
		{"", "", "dark", false},
		{"", "auto", "dark", false},
		{"", "light", "light", true},
		{"dark", "light", "dark", true},
		{"LIGHT", "dark", "light", true},
		{"bogus", "light", "light", true},
	} {
		t.Setenv("MACHINETOP_THEME", tc.env)
		th, fixed := Choose(tc.config)
		if th.Palette.Name != tc.want || fixed != tc.fixed {
			t.Errorf("env %q config %q: %s fixed=%v, want %s fixed=%v", tc.env, tc.config, th.Palette.Name, fixed, tc.want, tc.fixed)
		}
	}
}
