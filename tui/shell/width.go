package shell

import "github.com/charmbracelet/x/ansi"

func uvWidth(s string) int { return ansi.StringWidth(s) }
