package common

import (
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	for in, want := range map[uint64]string{0: "0", 512: "1K", 93 << 20: "93M", 3 << 29: "1.5G", 64 << 30: "64G"} {
		if got := FormatBytes(in); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{0: "-", 45 * time.Second: "45s", 12 * time.Minute: "12m", 3*time.Hour + 12*time.Minute: "3h12m", 52 * time.Hour: "2d4h"} {
		if got := FormatDuration(in); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestFitAndWidth(t *testing.T) {
	if got := Fit("abcdef\nxy\n1\n2", 4, 2); got != "abc…\nxy" {
		t.Errorf("Fit = %q", got)
	}
	if Width("\x1b[1mab\x1b[m") != 2 || Width("▸ é") != 3 || Width("plain") != 5 {
		t.Error("Width")
	}
	if Pad("ab", 4) != "ab  " || PadLeft("ab", 4) != "  ab" || Pad("abcdef", 3) != "ab…" {
		t.Error("Pad")
	}
}
