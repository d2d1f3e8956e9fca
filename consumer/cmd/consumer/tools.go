package main

import (
	"context"
	"io"
	"os"

	"github.com/auditpipe/auditpipe/consumer/alerts"
	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/consumer/search"
)

// tools are the consumer's operator commands besides run: the consumer
// group tools and the clients of the search API it serves. The all-in-one
// offers the same functions as "auditpipe groups", "auditpipe search"...
var tools = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"groups": group.GroupsCommand{Name: "consumer groups", Stdin: os.Stdin}.Run,
	"search": search.RunSearchCommand,
	"events": search.RunEventsCommand,
	"alerts": alerts.RunCommand,
}
