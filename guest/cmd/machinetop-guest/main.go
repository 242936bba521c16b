//go:build linux

// Command machinetop-guest is the binary that runs inside a machine. Built
// static (CGO_ENABLED=0), it is the initramfs /init and, installed on the
// root disk, the guest agent.
//
// Usage:
//
//	/init                      as the kernel's first process (argv[0] "/init")
//	machinetop-guest agent     keep "serve" running: start it again whenever it
//	                           ends (what /init starts beside the image's init)
//	machinetop-guest serve     serve the host on the agent channels, holding
//	                           commands until the image's init is ready
//	machinetop-guest pid1      be PID 1 (no init in the image) and serve the host
//	machinetop-guest --version print the build's version, as the agent reports it
//	                           (--version --json: as JSON, for `machinetop version`)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/agent"
	"github.com/machinetop/machinetop/guest/initrd"
	"github.com/machinetop/machinetop/guest/ready"
	"github.com/machinetop/machinetop/internal/version"
)

func main() {
	cmd := ""
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	switch {
	case cmd == "--version" || cmd == "version":
		if len(os.Args) > 2 && os.Args[2] == "--json" {
			json.NewEncoder(os.Stdout).Encode(version.Get())
			return
		}
		fmt.Println("machinetop-guest version " + agent.Version)
	case cmd == "agent":
		log.SetFlags(0)
		log.SetPrefix("machinetop-agent: ")
		ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
		defer stop()
		self, err := os.Executable()
		if err != nil {
			self = os.Args[0]
		}
		agent.Keep(ctx, []string{self, "serve"})
	case cmd == "serve":
		log.SetFlags(0)
		log.SetPrefix("machinetop-agent: ")
		ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
		defer stop()
		// /init starts the agent just before it execs the image's init,
		// so the bound counts from boot.
		gate := ready.Watch(ctx, "/", ready.Detect("/"), ready.Bound)
		agent.Run(ctx, &agent.Server{Ready: gate, CommandCgroup: agent.CommandCgroup})
	case cmd == "pid1":
		log.SetFlags(0)
		log.SetPrefix("machinetop-agent: ")
		agent.RunPID1()
	case filepath.Base(os.Args[0]) == "init" && os.Getpid() == 1:
		// The kernel passes unknown boot parameters as arguments.
		initrd.Main()
	default:
		fmt.Fprintln(os.Stderr, "usage: machinetop-guest agent|serve|pid1|--version (or run as the initramfs /init)")
		os.Exit(2)
	}
}
