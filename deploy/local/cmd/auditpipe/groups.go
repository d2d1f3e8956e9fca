package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
)

const groupsUsage = `Usage:
  auditpipe groups describe --group G --topic T [--brokers ADDRS]
  auditpipe groups reset --group G --topic T --to-time TIME [--yes] [--brokers ADDRS]

describe prints the group's state, its members, and per partition the
committed offset, the log's start and end, and the lag.

reset moves the group's committed offsets on the topic to the first record
at or after TIME (RFC 3339, or a duration ago such as 2h), so the group
re-reads from there (for example the processor after a policy fix). It
prints the offsets before and after, asks for confirmation unless --yes,
and refuses while the group has active members: stop the group's
processes first (Kafka refuses the commit otherwise, and members would
overwrite it).

To re-process history without touching a live group, use "auditpipe replay".

Flags:
`

func runGroups(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "describe" && args[0] != "reset") {
		fmt.Fprint(stderr, groupsUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return flag.ErrHelp
		}
		return errors.New("groups: want describe or reset")
	}
	sub := args[0]
	fs := flag.NewFlagSet("auditpipe groups "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, groupsUsage)
		fs.PrintDefaults()
	}
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated Kafka bootstrap `addresses`")
	credentials := kafkaCredentialsFlag(fs)
	group := fs.String("group", "", "consumer group `id` (required), e.g. auditpipe-processor")
	topic := fs.String("topic", "", "`topic` the group consumes (required), e.g. audit.raw")
	var toTime *string
	var yes *bool
	if sub == "reset" {
		toTime = fs.String("to-time", "", "RFC 3339 `time` or a duration ago (required)")
		yes = fs.Bool("yes", false, "do not ask for confirmation")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *group == "" || *topic == "" {
		fs.Usage()
		return errors.New("--group and --topic are required")
	}
	var at time.Time
	if sub == "reset" {
		if *toTime == "" {
			fs.Usage()
			return errors.New("--to-time is required")
		}
		var err error
		if at, err = parseWhen(*toTime, time.Now()); err != nil {
			return fmt.Errorf("--to-time: %w", err)
		}
	}
	sasl, err := credentials()
	if err != nil {
		return err
	}
	r, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: splitList(*brokers), ClientID: "auditpipe-groups", SASL: sasl})
	if err != nil {
		return err
	}
	defer r.Close()

	before, err := describeGroup(ctx, r, *group, *topic)
	if err != nil {
		return err
	}
	if sub == "describe" {
		before.print(stdout, nil)
		return nil
	}

	if len(before.info.Members) > 0 {
		before.print(stdout, nil)
		return fmt.Errorf("group %s: %w (%s); stop them, then reset", *group, kafka.ErrGroupActive, strings.Join(before.info.Members, ", "))
	}
	target, err := r.OffsetsForTime(ctx, *topic, at)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Reset group %s on %s to %s:\n", *group, *topic, at.UTC().Format(time.RFC3339Nano))
	before.print(stdout, target)
	if !*yes {
		fmt.Fprintf(stdout, "Type yes to commit these offsets: ")
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			return errors.New("reset not confirmed; nothing changed")
		}
	}
	if err := r.ResetOffsets(ctx, *group, *topic, target); err != nil {
		return err
	}
	after, err := describeGroup(ctx, r, *group, *topic)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "After:")
	after.print(stdout, nil)
	return nil
}

type groupView struct {
	group, topic string
	info         kafka.GroupInfo
	committed    map[int32]int64
	bounds       map[int32]kafka.OffsetRange
}

func describeGroup(ctx context.Context, r *kafkago.Reader, group, topic string) (groupView, error) {
	v := groupView{group: group, topic: topic}
	var err error
	if v.info, err = r.DescribeGroup(ctx, group); err != nil {
		return v, err
	}
	if v.committed, err = r.CommittedOffsets(ctx, group, topic); err != nil {
		return v, err
	}
	if v.bounds, err = r.Bounds(ctx, topic); err != nil {
		return v, err
	}
	return v, nil
}

// print writes the group's offsets; with target, a column of the new
// offsets too.
func (v groupView) print(w io.Writer, target map[int32]int64) {
	members := "none"
	if len(v.info.Members) > 0 {
		members = strings.Join(v.info.Members, ", ")
	}
	fmt.Fprintf(w, "group %s (state %s, members: %s), topic %s\n", v.group, v.info.State, members, v.topic)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	if target != nil {
		fmt.Fprintln(tw, "partition\tcommitted\tnew\tlog start\tlog end\tlag after\t")
	} else {
		fmt.Fprintln(tw, "partition\tcommitted\tlog start\tlog end\tlag\t")
	}
	for _, p := range slices.Sorted(maps.Keys(v.bounds)) {
		b := v.bounds[p]
		committed, lag := "-", "-"
		if c, ok := v.committed[p]; ok {
			committed = strconv.FormatInt(c, 10)
			lag = strconv.FormatInt(b.End-c, 10)
		}
		if target != nil {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t\n", p, committed, target[p], b.Start, b.End, b.End-target[p])
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t\n", p, committed, b.Start, b.End, lag)
	}
	_ = tw.Flush()
}
