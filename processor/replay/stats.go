package replay

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/auditpipe/auditpipe/processor/policy"
)

// Counts are events and bytes going into the policy and coming out of
// the pipeline. Bytes in are raw record values; bytes out are processed
// event values (after level reduction and size limits).
type Counts struct {
	EventsIn  int64 `json:"eventsIn"`
	BytesIn   int64 `json:"bytesIn"`
	EventsOut int64 `json:"eventsOut"`
	BytesOut  int64 `json:"bytesOut"`
	// DLQ counts records the pipeline could not process (not an audit
	// event, bad headers, too large); they are not in EventsOut.
	DLQ int64 `json:"dlq"`
}

func (c *Counts) add(o Counts) {
	c.EventsIn += o.EventsIn
	c.BytesIn += o.BytesIn
	c.EventsOut += o.EventsOut
	c.BytesOut += o.BytesOut
	c.DLQ += o.DLQ
}

// Stats are the counts of a replay (or of a dry run), in total, per
// cluster and per policy rule.
type Stats struct {
	// Read counts records read from the raw topic, ReadBytes their values.
	Read      int64 `json:"read"`
	ReadBytes int64 `json:"readBytes"`
	// SkippedCluster counts records of clusters that were not chosen;
	// SkippedTime records inside the offset range whose timestamp is
	// outside the time window (producers' clocks are not monotonic).
	SkippedCluster int64 `json:"skippedCluster"`
	SkippedTime    int64 `json:"skippedTime"`
	// Total counts the records that went through the pipeline.
	Total     Counts            `json:"total"`
	ByCluster map[string]Counts `json:"byCluster"`
	// ByRule is keyed by RuleLabel.
	ByRule map[string]Counts `json:"byRule"`
	// Detections counts detection rule matches by rule id (one per
	// alert the live processor would have raised, including matches on
	// events the policy dropped).
	Detections map[string]int64 `json:"detections,omitempty"`
}

// Labels of ByRule for records without a rule.
const (
	// RuleNone: no rule matched, so the policy's default (None) dropped
	// the event.
	RuleNone = "no rule (default None)"
	// RuleDLQ: the record never reached the policy (not an audit event,
	// missing cluster header, ...) or the policy failed on it.
	RuleDLQ = "not evaluated (dlq)"
)

// RuleLabel names a rule in ByRule: its index in the policy file (as in
// `rules[3]`) and its level.
func RuleLabel(d policy.Decision) string {
	if d.Rule == policy.NoRule {
		return RuleNone
	}
	return "rules[" + strconv.Itoa(d.Rule) + "] " + d.PolicyLevel
}

func (s *Stats) add(o Stats) {
	s.Read += o.Read
	s.ReadBytes += o.ReadBytes
	s.SkippedCluster += o.SkippedCluster
	s.SkippedTime += o.SkippedTime
	s.Total.add(o.Total)
	for k, v := range o.ByCluster {
		if s.ByCluster == nil {
			s.ByCluster = map[string]Counts{}
		}
		c := s.ByCluster[k]
		c.add(v)
		s.ByCluster[k] = c
	}
	for k, v := range o.ByRule {
		if s.ByRule == nil {
			s.ByRule = map[string]Counts{}
		}
		c := s.ByRule[k]
		c.add(v)
		s.ByRule[k] = c
	}
	for k, v := range o.Detections {
		if s.Detections == nil {
			s.Detections = map[string]int64{}
		}
		s.Detections[k] += v
	}
}

func (s *Stats) clone() Stats {
	out := *s
	out.ByCluster = maps.Clone(s.ByCluster)
	out.ByRule = maps.Clone(s.ByRule)
	out.Detections = maps.Clone(s.Detections)
	return out
}

// detected counts one match of detection rule id.
func (s *Stats) detected(id string) {
	if s.Detections == nil {
		s.Detections = map[string]int64{}
	}
	s.Detections[id]++
}

// record counts one record that went through the pipeline.
func (s *Stats) record(cluster, rule string, c Counts) {
	s.Total.add(c)
	if s.ByCluster == nil {
		s.ByCluster = map[string]Counts{}
		s.ByRule = map[string]Counts{}
	}
	bc := s.ByCluster[cluster]
	bc.add(c)
	s.ByCluster[cluster] = bc
	br := s.ByRule[rule]
	br.add(c)
	s.ByRule[rule] = br
}

// WriteTable prints the stats as two tables (per rule, per cluster) with
// totals, the way an operator prices a policy: what comes in, what is
// kept, and bytes out over bytes in (above 100% when enrichment adds more
// than the policy removes).
func (s Stats) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "read %d records (%s); skipped %d of other clusters and %d outside the time window\n\n",
		s.Read, HumanBytes(s.ReadBytes), s.SkippedCluster, s.SkippedTime)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	for _, tbl := range []struct {
		title string
		rows  map[string]Counts
	}{{"rule", s.ByRule}, {"cluster", s.ByCluster}} {
		fmt.Fprintf(tw, "%s\tevents in\tbytes in\tevents out\tbytes out\tout/in\tdlq\t\n", tbl.title)
		for _, k := range slices.Sorted(maps.Keys(tbl.rows)) {
			writeRow(tw, k, tbl.rows[k])
		}
		writeRow(tw, "total", s.Total)
		fmt.Fprintln(tw, "\t\t\t\t\t\t\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return s.writeDetections(w)
}

// writeDetections prints the matches per detection rule, most first.
func (s Stats) writeDetections(w io.Writer) error {
	if len(s.Detections) == 0 {
		_, err := fmt.Fprintln(w, "detection rules: no matches")
		return err
	}
	ids := slices.Sorted(maps.Keys(s.Detections))
	slices.SortStableFunc(ids, func(a, b string) int { return cmp.Compare(s.Detections[b], s.Detections[a]) })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "detection rule\tmatches\t\n")
	var total int64
	for _, id := range ids {
		fmt.Fprintf(tw, "%s\t%d\t\n", id, s.Detections[id])
		total += s.Detections[id]
	}
	fmt.Fprintf(tw, "all rules\t%d\t\n", total)
	return tw.Flush()
}

func writeRow(w io.Writer, name string, c Counts) {
	kept := "-"
	if c.BytesIn > 0 {
		kept = strconv.FormatFloat(100*float64(c.BytesOut)/float64(c.BytesIn), 'f', 1, 64) + "%"
	}
	fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%s\t%s\t%d\t\n", name, c.EventsIn, HumanBytes(c.BytesIn), c.EventsOut, HumanBytes(c.BytesOut), kept, c.DLQ)
}

// HumanBytes formats n with a binary unit.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTPE"[exp]) + "iB"
}
