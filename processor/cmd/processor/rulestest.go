package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/processor/detect"
)

const rulesTestUsage = `usage: processor rules test [--rules FILE] EVENTS_FILE...

Runs the detection rules (the shipped ones plus --rules) over recorded
audit events (an apiserver audit log of JSON lines, EventList or event
JSON files, or processed events from audit.events) and prints, per rule,
how many events it matched, with the first matches: tune a rule on
history before deploying it. Rules switched off (enabled: false) are
listed as off and not run.

`

// runRulesTest implements "processor rules test".
func runRulesTest(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := cli.NewFlagSet("processor rules test", rulesTestUsage, stdout)
	file := fs.String("rules", "", "detection rules `file` added to the shipped rules (a rule with a shipped id replaces it)")
	examples := fs.Bool("examples", true, "print the first matches of each rule")
	if err := cli.Parse(fs, args, true); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("rules test: need at least one events file (see --help)")
	}
	set, err := detect.LoadDefault(*file)
	if err != nil {
		return err
	}
	var total []detect.RuleTally
	events := 0
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("rules test: %w", err)
		}
		t, n, err := set.Tally(f)
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("rules test: %s: %w", name, err)
		}
		events += n
		if total == nil {
			total = make([]detect.RuleTally, len(t))
			for i := range t {
				total[i].Rule = t[i].Rule
			}
		}
		for i := range t {
			total[i].Matches += t[i].Matches
			total[i].Errors += t[i].Errors
			for _, ex := range t[i].Examples {
				if len(total[i].Examples) < detect.MaxExamples {
					total[i].Examples = append(total[i].Examples, name+" "+ex)
				}
			}
		}
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "rule\tseverity\tmatches\terrors\t")
	for _, t := range total {
		if !t.Rule.Enabled {
			fmt.Fprintf(w, "%s\t%s\toff\t\t\n", t.Rule.ID, t.Rule.Severity)
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t\n", t.Rule.ID, t.Rule.Severity, t.Matches, t.Errors)
	}
	fmt.Fprintf(w, "events\t\t%d\t\t\n", events)
	if err := w.Flush(); err != nil {
		return err
	}
	if *examples {
		for _, t := range total {
			for _, ex := range t.Examples {
				fmt.Fprintf(stdout, "%s  %s\n", t.Rule.ID, ex)
			}
		}
	}
	return nil
}
