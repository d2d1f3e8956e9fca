package main

import (
	"os"

	"github.com/auditpipe/auditpipe/consumer/alerts"
	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/consumer/search"
	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/kafka"
)

// tools are the consumer's operator commands besides run and validate: the
// consumer group tools and the clients of the search API it serves. The
// all-in-one offers the same functions as "auditpipe groups", "auditpipe
// search"...
func tools() []cli.Command {
	return []cli.Command{
		{Name: "groups", Summary: "list consumer groups, show or reset one's offsets (list|describe|reset)",
			Run: group.GroupsCommand{Name: "consumer groups", Stdin: os.Stdin, Kafka: group.StageKafkaFlags("consumer", defaults,
				func(c *app.Config) *kafka.Connection { return &c.Kafka })}.Run},
		{Name: "search", Summary: "search the stored events with the CLS query language, through the search API", Run: search.RunSearchCommand},
		{Name: "events", Summary: "list stored events with simple filters, through the search API", Run: search.RunEventsCommand},
		{Name: "alerts", Summary: "list the detection alerts delivered last", Run: alerts.RunCommand},
		{Name: "store", Summary: "local store tools (migrate: copy a store into another engine's)", Sub: storeCommands()},
	}
}
