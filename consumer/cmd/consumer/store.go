package main

import (
	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/internal/cli"
)

// storeCommands are the local store's operator commands.
func storeCommands() []cli.Command {
	return []cli.Command{
		{Name: "migrate", Summary: "copy a local store's events into another engine's store (sqlite to vlogs)", Run: app.MigrateCommand{Name: "consumer store migrate"}.Run},
	}
}
