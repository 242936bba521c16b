// Command trivialinit is the smallest useful /init: it announces itself on
// the console and powers the VM off. The boot benchmark times raw QEMU
// direct-kernel boot to it, the floor machinetop's boot is compared with.
package main

import (
	"os"

	"golang.org/x/sys/unix"
)

func main() {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		f.WriteString("TRIVIAL-INIT-UP\n")
		f.Close()
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}
