package group

import (
	"bufio"
	"context"
	"encoding/json"
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

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
)

// KafkaFlags adds a command's Kafka connection flags to fs and returns the
// function that reads them once fs is parsed. args are the command's
// arguments, for a --config file to be read before the flags that
// override it are bound. The stage binaries and the all-in-one each pass
// their own (the all-in-one adds its embedded broker's credentials file);
// nil means DefaultKafkaFlags.
type KafkaFlags func(fs *flag.FlagSet, args []string) (func() (kafka.ReaderConfig, error), error)

// DefaultKafkaFlags registers the stages' Kafka connection flags
// (kafka.Connection: --kafka-brokers, alias --brokers, --kafka-client-id,
// --kafka-tls* and --kafka-sasl-*),
// with the brokers defaulting to 127.0.0.1:9092.
func DefaultKafkaFlags(fs *flag.FlagSet, _ []string) (func() (kafka.ReaderConfig, error), error) {
	k := kafka.Connection{Brokers: []string{"127.0.0.1:9092"}}
	k.RegisterFlags(fs)
	return func() (kafka.ReaderConfig, error) { return readerConfig(k) }, nil
}

// StageKafkaFlags returns KafkaFlags that also take --config, a stage's
// YAML file (read with the stage's defaults, strict and ${ENV}-expanded as
// the stage reads it): the tool connects to Kafka as the stage does, from
// its kafka: section, and the --kafka-* flags override it.
func StageKafkaFlags[C any](stage string, defaults func() C, kafkaOf func(*C) *kafka.Connection) KafkaFlags {
	return func(fs *flag.FlagSet, args []string) (func() (kafka.ReaderConfig, error), error) {
		path, err := cli.ConfigArg(args)
		if err != nil {
			return nil, err
		}
		cfg := defaults()
		if path != "" {
			if err := cli.LoadConfig(path, &cfg); err != nil {
				return nil, err
			}
		}
		fs.String("config", path, "the "+stage+"'s YAML config `file`: connect to Kafka as the "+stage+" does (kafka:); flags override it")
		k := kafkaOf(&cfg)
		k.RegisterFlags(fs)
		return func() (kafka.ReaderConfig, error) { return readerConfig(*k) }, nil
	}
}

// readerConfig connects as k says, TLS and SASL included, once k's files
// are checked.
func readerConfig(k kafka.Connection) (kafka.ReaderConfig, error) {
	if err := k.Validate(); err != nil {
		return kafka.ReaderConfig{}, err
	}
	return k.ReaderConfig(), nil
}

// ParseWhen reads a command line time: RFC 3339, or a duration before now
// ("24h").
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-27T09:00:00Z) nor a positive duration ago (24h)", s)
	}
	return now.Add(-d), nil
}

// ErrGroupNotFound is returned for a consumer group the cluster does not
// know.
var ErrGroupNotFound = errors.New("not found")

const groupsUsage = `Usage:
  %[1]s list [--output table|json] [flags]
  %[1]s describe --group G --topic T [--output table|json] [flags]
  %[1]s reset --group G --topic T --to-time TIME [--yes] [flags]

list prints every consumer group of the cluster with its state and number
of members.

describe prints the group's state, its members, and per partition the
committed offset, the log's start and end, and the lag.

reset moves the group's committed offsets on the topic to the first record
at or after TIME (RFC 3339, or a duration ago such as 2h), so the group
re-reads from there (for example the processor after a policy fix). It
prints the offsets before and after, asks for confirmation unless --yes,
and refuses while the group has active members: stop the group's
processes first (Kafka refuses the commit otherwise, and members would
overwrite it).

The stages' groups: auditpipe-processor (topic audit.raw),
auditpipe-consumer (audit.events, the local store) and
auditpipe-consumer.cls (audit.events, CLS).

To re-process history without touching a live group, use "processor replay".

Flags:
`

// GroupsCommand is "groups list|describe|reset": the consumer group tools
// of the consumer binary and the all-in-one.
type GroupsCommand struct {
	// Name is the command as typed, for help and errors: "consumer groups".
	Name string
	// Stdin answers reset's confirmation; nil reads nothing (not
	// confirmed).
	Stdin io.Reader
	// Kafka registers the connection flags; nil: DefaultKafkaFlags.
	Kafka KafkaFlags
}

// Run runs the command with args (after "groups"). Help goes to stdout and
// returns nil; errors are returned, not printed.
func (c GroupsCommand) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := c.Name
	if name == "" {
		name = "groups"
	}
	usage := fmt.Sprintf(groupsUsage, name)
	if len(args) == 0 {
		return fmt.Errorf("want list, describe or reset (see %s --help)", name)
	}
	sub := args[0]
	switch sub {
	case "-h", "--help", "help":
		_, err := io.WriteString(stdout, usage)
		return err
	case "list", "describe", "reset":
	default:
		return fmt.Errorf("unknown subcommand %q: want list, describe or reset (see %s --help)", sub, name)
	}
	fs := flag.NewFlagSet(name+" "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	kafkaFlags := c.Kafka
	if kafkaFlags == nil {
		kafkaFlags = DefaultKafkaFlags
	}
	conn, err := kafkaFlags(fs, args[1:])
	if err != nil {
		return err
	}
	var group, topic, output, toTime *string
	var yes *bool
	if sub != "list" {
		group = fs.String("group", "", "consumer group `id` (required), e.g. auditpipe-processor")
		topic = fs.String("topic", "", "`topic` the group consumes (required), e.g. audit.raw")
	}
	if sub != "reset" {
		output = fs.String("output", "table", "output `format`: table or json")
	}
	if sub == "reset" {
		toTime = fs.String("to-time", "", "RFC 3339 `time` or a duration ago (required)")
		yes = fs.Bool("yes", false, "do not ask for confirmation")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return fmt.Errorf("%s: %w (see %s --help)", sub, err, name)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", sub, fs.Args())
	}
	if output != nil && *output != "table" && *output != "json" {
		return fmt.Errorf("--output: want table or json, got %q", *output)
	}
	if sub != "list" && (*group == "" || *topic == "") {
		return fmt.Errorf("%s: --group and --topic are required (see %s --help)", sub, name)
	}
	var at time.Time
	if sub == "reset" {
		if *toTime == "" {
			return fmt.Errorf("reset: --to-time is required (see %s --help)", name)
		}
		if at, err = ParseWhen(*toTime, time.Now()); err != nil {
			return fmt.Errorf("--to-time: %w", err)
		}
	}
	rc, err := conn()
	if err != nil {
		return err
	}
	if rc.ClientID == "" {
		rc.ClientID = "auditpipe-groups"
	}
	r, err := kafkago.NewReader(rc)
	if err != nil {
		return err
	}
	defer r.Close()

	if sub == "list" {
		return listGroups(ctx, r, *output, stdout)
	}
	if err := groupExists(ctx, r, *group); err != nil {
		return err
	}
	before, err := describeGroup(ctx, r, *group, *topic)
	if err != nil {
		return err
	}
	if sub == "describe" {
		if *output == "json" {
			return writeJSON(stdout, before.json())
		}
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
		line := ""
		if c.Stdin != nil {
			line, _ = bufio.NewReader(c.Stdin).ReadString('\n')
		}
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

// groupExists returns an error wrapping ErrGroupNotFound when the cluster
// lists no group id: a typo must not look like an idle group (describe)
// or silently create one (reset).
func groupExists(ctx context.Context, r *kafkago.Reader, id string) error {
	ids, err := r.ListGroups(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(ids, id) {
		return fmt.Errorf("consumer group %s %w (the cluster has %d groups; list them with groups list)", id, ErrGroupNotFound, len(ids))
	}
	return nil
}

// groupSummary is one line of groups list.
type groupSummary struct {
	Group   string `json:"group"`
	State   string `json:"state"`
	Members int    `json:"members"`
}

func listGroups(ctx context.Context, r *kafkago.Reader, output string, w io.Writer) error {
	ids, err := r.ListGroups(ctx)
	if err != nil {
		return err
	}
	out := make([]groupSummary, 0, len(ids))
	for _, id := range ids {
		info, err := r.DescribeGroup(ctx, id)
		if err != nil {
			return err
		}
		out = append(out, groupSummary{Group: id, State: info.State, Members: len(info.Members)})
	}
	if output == "json" {
		return writeJSON(w, out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTATE\tMEMBERS")
	for _, g := range out {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", g.Group, g.State, g.Members)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
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

// GroupDescription is the JSON of groups describe --output json.
type GroupDescription struct {
	Group   string   `json:"group"`
	State   string   `json:"state"`
	Members []string `json:"members"`
	Topic   string   `json:"topic"`
	// Lag is the sum of the partitions' lags (those with a commit).
	Lag        int64              `json:"lag"`
	Partitions []PartitionOffsets `json:"partitions"`
}

// PartitionOffsets is one partition of a GroupDescription. Committed and
// Lag are null for a partition the group never committed on.
type PartitionOffsets struct {
	Partition int32  `json:"partition"`
	Committed *int64 `json:"committed"`
	LogStart  int64  `json:"logStart"`
	LogEnd    int64  `json:"logEnd"`
	Lag       *int64 `json:"lag"`
}

func (v groupView) json() GroupDescription {
	d := GroupDescription{Group: v.group, State: v.info.State, Members: v.info.Members, Topic: v.topic, Partitions: []PartitionOffsets{}}
	if d.Members == nil {
		d.Members = []string{}
	}
	for _, p := range slices.Sorted(maps.Keys(v.bounds)) {
		b := v.bounds[p]
		po := PartitionOffsets{Partition: p, LogStart: b.Start, LogEnd: b.End}
		if c, ok := v.committed[p]; ok {
			lag := b.End - c
			po.Committed, po.Lag = &c, &lag
			d.Lag += lag
		}
		d.Partitions = append(d.Partitions, po)
	}
	return d
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
