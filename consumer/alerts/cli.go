package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/auditpipe/auditpipe/consumer/search"
)

const cliUsage = `Usage: auditpipe alerts [flags]

List the detection alerts a running pipeline's alert delivery read last
(GET /api/v1/alerts), newest first, with what became of each: delivered,
duplicate (a repeat within the dedup window), rate_limited or failed.

Flags:
`

// RunCommand implements "auditpipe alerts".
func RunCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("alerts", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, for the caller to print once
	server := fs.String("server", search.ServerFromEnv(), "API base `URL` (default $"+search.ServerEnv+", else "+search.DefaultServer+")")
	token := fs.String("token", search.TokenFromEnv(), "bearer `token` for an API beyond loopback (default $"+search.TokenEnv+")")
	cluster := fs.String("cluster", "", "only alerts of this cluster `id`")
	rule := fs.String("rule", "", "only alerts of this rule `id`")
	severity := fs.String("severity", "", "only alerts at this `severity` or above: info, low, medium, high, critical")
	from := fs.String("from", "", "alerts of events at or after `TIME`: RFC 3339, unix milliseconds, or a duration meaning ago (24h)")
	to := fs.String("to", "", "alerts of events before `TIME` (same forms)")
	limit := fs.Int("limit", 100, "most alerts to list")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			// Help is an answer, not an error: stdout, exit 0.
			fmt.Fprint(stdout, cliUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return fmt.Errorf("alerts: %w (see alerts --help)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("alerts: unexpected argument %q (see alerts --help)", fs.Arg(0))
	}
	q := url.Values{}
	for name, v := range map[string]string{"cluster": *cluster, "rule": *rule, "severity": *severity} {
		if v != "" {
			q.Set(name, v)
		}
	}
	now := time.Now()
	for name, v := range map[string]string{"from": *from, "to": *to} {
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err == nil {
			v = strconv.FormatInt(now.Add(-d).UnixMilli(), 10)
		}
		q.Set(name, v)
	}
	q.Set("limit", strconv.Itoa(*limit))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(*server, "/")+AlertsPath+"?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("alerts: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("alerts: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var out AlertsResponse
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("alerts: decode answer: %w", err)
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TIME\tSEVERITY\tRULE\tCLUSTER\tPRINCIPAL\tVERB\tOBJECT\tOUTCOME")
	for _, e := range out.Alerts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Severity, e.Rule, e.Cluster,
			e.Principal.Username, e.Verb, object(e.Alert), e.Outcome)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if out.Total > len(out.Alerts) {
		fmt.Fprintf(stdout, "(%d of %d; raise --limit for more)\n", len(out.Alerts), out.Total)
	}
	return nil
}
