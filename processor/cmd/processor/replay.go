package main

import (
	"context"
	"io"

	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/app"
	"github.com/auditpipe/auditpipe/processor/replay/replaycmd"
)

// runReplay is "processor replay": the all-in-one's "auditpipe replay"
// runs the same command.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return replaycmd.Command{Name: "processor replay", Kafka: group.StageKafkaFlags("processor", defaults,
		func(c *app.Config) *kafka.Connection { return &c.Kafka })}.Run(ctx, args, stdout, stderr)
}
