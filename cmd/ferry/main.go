// Command ferry moves data between web APIs and SQL databases.
package main

import (
	"os"

	"github.com/ferry-dev/ferry/internal/cli"
	_ "github.com/ferry-dev/ferry/internal/components/all"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
