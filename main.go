// Command machinetop runs persistent Linux machines made from OCI images and
// a terminal dashboard to watch and drive them. See README.md.
package main

import (
	"os"

	"github.com/machinetop/machinetop/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
