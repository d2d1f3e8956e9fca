package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/processor/policy"
)

const policyTestUsage = `usage: processor policy test --policy FILE EVENTS_FILE...

Runs an audit.k8s.io/v1 policy over recorded audit events (an apiserver
audit log of JSON lines, or EventList / event JSON files) and prints, per
rule, the events it matched, how many it dropped, and their bytes before
and after the policy: the price of a policy before it is deployed. The
last row is the events no rule matched (level None: dropped).

`

// runPolicyTest implements "processor policy test".
func runPolicyTest(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := cli.NewFlagSet("processor policy test", policyTestUsage, stdout)
	file := fs.String("policy", "", "audit.k8s.io/v1 Policy `file` to price (required)")
	if err := cli.Parse(fs, args, true); err != nil {
		return err
	}
	if *file == "" || fs.NArg() == 0 {
		return errors.New("policy test: need --policy and at least one events file (see --help)")
	}
	pol, err := policy.LoadFile(*file)
	if err != nil {
		return err
	}
	var total []policy.RuleCost
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("policy test: %w", err)
		}
		costs, err := pol.Cost(f)
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("policy test: %s: %w", name, err)
		}
		if total == nil {
			total = costs
			continue
		}
		for i := range costs {
			total[i].Events += costs[i].Events
			total[i].Dropped += costs[i].Dropped
			total[i].BytesBefore += costs[i].BytesBefore
			total[i].BytesAfter += costs[i].BytesAfter
		}
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "rule\tlevel\tevents\tdropped\tbytes before\tbytes after\t")
	var sum policy.RuleCost
	for _, c := range total {
		rule := strconv.Itoa(c.Rule)
		if c.Rule == policy.NoRule {
			rule = "none"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t\n", rule, c.Level, c.Events, c.Dropped, c.BytesBefore, c.BytesAfter)
		sum.Events += c.Events
		sum.Dropped += c.Dropped
		sum.BytesBefore += c.BytesBefore
		sum.BytesAfter += c.BytesAfter
	}
	fmt.Fprintf(w, "total\t\t%d\t%d\t%d\t%d\t\n", sum.Events, sum.Dropped, sum.BytesBefore, sum.BytesAfter)
	return w.Flush()
}
