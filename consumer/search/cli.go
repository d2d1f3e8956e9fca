package search

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/auditpipe/auditpipe/schemas"
)

const eventsUsage = `Usage: auditpipe events [flags]

Search the audit events in a running pipeline's local store, newest first.
It calls the search API (GET /api/v1/events) of --server, so it works
against a running pipeline, remotely and from scripts.

Flags:
  --server URL       search API base URL (default $AUDITPIPE_SERVER, else
                     http://127.0.0.1:8080)
                       --server https://auditpipe.internal:8080
  --token TOKEN      bearer token for an API beyond loopback (default
                     $AUDITPIPE_TOKEN)
  --cluster ID       only events of this cluster (exact)
                       --cluster prod-eu-1
  --verb VERB        only this verb (exact: get, list, create, delete, ...)
                       --verb delete
  --user NAME        only this user.username (exact)
                       --user system:serviceaccount:kube-system:default
  --resource NAME    only this objectRef.resource (exact, plural)
                       --resource secrets
  --namespace NS     only this objectRef.namespace (exact)
                       --namespace kube-system
  --q TEXT           full-text search over every value of the event: all
                     words must occur, "quoted words" as a phrase, word* as
                     a prefix; case-insensitive
                       --q 'forbidden "cannot list"'
  --from TIME        stageTimestamp at or after TIME: RFC 3339, unix
                     milliseconds, or a duration meaning "ago"
                       --from 2024-05-01T00:00:00Z   --from 1h
  --to TIME          stageTimestamp before TIME (same forms as --from)
                       --to 1714608000000
  --limit N          at most N events, 1 to 10000 (default 100); the total
                     number of matches is reported either way
                       --limit 1000
  --output FORMAT    table (default): time, cluster, user, verb, resource,
                     namespace/name, code, then the total on stderr;
                     json: one ProcessedEvent JSON per line, for jq
                       --output json | jq -r .user.username
  --timeout D        give up after D (default 30s)
  -h, --help         show this help

Example:
  auditpipe events --cluster prod-eu-1 --verb delete --resource secrets --from 24h
`

// RunEventsCommand runs "events": it parses args (without the command name),
// queries the search API and prints the result to stdout. --help prints the
// usage to stdout and returns nil; errors are returned for the caller to
// print once. stderr gets the match count only.
func RunEventsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, below
	var (
		server   = fs.String("server", ServerFromEnv(), "")
		token    = fs.String("token", TokenFromEnv(), "")
		cluster  = fs.String("cluster", "", "")
		verb     = fs.String("verb", "", "")
		user     = fs.String("user", "", "")
		resource = fs.String("resource", "", "")
		ns       = fs.String("namespace", "", "")
		text     = fs.String("q", "", "")
		from     = fs.String("from", "", "")
		to       = fs.String("to", "", "")
		limit    = fs.Int("limit", 0, "")
		output   = fs.String("output", "table", "")
		timeout  = fs.Duration("timeout", 30*time.Second, "")
	)
	// Errors are returned, not printed: the caller prints each once.
	usageErr := func(err error) error {
		return fmt.Errorf("events: %w (see events --help)", err)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, werr := io.WriteString(stdout, eventsUsage)
			return werr
		}
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected argument %q (filters are flags, e.g. --verb %s)", fs.Arg(0), fs.Arg(0)))
	}
	if *output != "table" && *output != "json" {
		return usageErr(fmt.Errorf("--output: want table or json, got %q", *output))
	}
	if *limit < 0 || *limit > 10000 {
		return usageErr(fmt.Errorf("--limit: want 1 to 10000, got %d", *limit))
	}
	now := time.Now()
	params := url.Values{}
	set := func(name, v string) {
		if v != "" {
			params.Set(name, v)
		}
	}
	set("cluster", *cluster)
	set("verb", *verb)
	set("user", *user)
	set("resource", *resource)
	set("namespace", *ns)
	set("q", *text)
	endpoint, err := endpointURL(*server, EventsPath, params, *from, *to, *limit, now)
	if err != nil {
		return usageErr(err)
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var res EventsResponse
	if err := fetchJSON(ctx, endpoint, *token, &res); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	if *output == "json" {
		err = writeJSONLines(stdout, res.Events)
	} else {
		err = writeTable(stdout, res.Events)
		if err == nil {
			// On stderr, so that piping the table to other tools stays clean.
			fmt.Fprintf(stderr, "%d of %d matching events\n", len(res.Events), res.Total)
		}
	}
	if err != nil {
		return fmt.Errorf("events: write output: %w", err)
	}
	return nil
}

// parseCLITime adds "a duration ago" to what the API accepts, since that is
// what people type at a terminal.
func parseCLITime(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && s != "" && s != "0" {
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration must be positive (it means ago), got %s", s)
		}
		return now.Add(-d), nil
	}
	t, err := ParseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w, or a duration such as 1h", err)
	}
	return t, nil
}

// redact drops the query string (which may hold search text) from URLs in
// error messages.
func redact(endpoint string) string {
	u, _, _ := strings.Cut(endpoint, "?")
	return u
}

func writeJSONLines(w io.Writer, events []json.RawMessage) error {
	var line bytes.Buffer
	for _, e := range events {
		// The store keeps events compacted; compact again so that one event
		// is one line whatever the server sent.
		line.Reset()
		if err := json.Compact(&line, e); err != nil {
			return fmt.Errorf("event is not JSON: %w", err)
		}
		line.WriteByte('\n')
		if _, err := w.Write(line.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

func writeTable(w io.Writer, events []json.RawMessage) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tCLUSTER\tUSER\tVERB\tRESOURCE\tNAMESPACE/NAME\tCODE")
	for _, raw := range events {
		var ev schemas.ProcessedEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("decode event: %w", err)
		}
		var resource, object string
		if o := ev.ObjectRef; o != nil {
			resource = o.Resource
			if o.Subresource != "" {
				resource += "/" + o.Subresource
			}
			object = o.Name
			if o.Namespace != "" {
				object = o.Namespace + "/" + o.Name
			}
		}
		code := ""
		if ev.ResponseStatus != nil && ev.ResponseStatus.Code != 0 {
			code = strconv.Itoa(int(ev.ResponseStatus.Code))
		}
		ts := ""
		if !ev.StageTimestamp.IsZero() {
			ts = ev.StageTimestamp.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			ts, cell(ev.Pipeline.Cluster), cell(ev.User.Username), cell(ev.Verb),
			cell(resource), cell(object), cell(code))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// cell keeps one event on one row: tabs and newlines in a value (a user
// name is the caller's to choose) would break the columns. Empty is "-".
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// endpointURL validates --server and builds the request URL for path with
// params, adding the time range (--from, --to) and --limit the way both
// CLIs take them.
func endpointURL(server, path string, params url.Values, from, to string, limit int, now time.Time) (string, error) {
	for _, tf := range []struct{ name, val string }{{"from", from}, {"to", to}} {
		t, err := parseCLITime(tf.val, now)
		if err != nil {
			return "", fmt.Errorf("--%s: %w", tf.name, err)
		}
		if !t.IsZero() {
			params.Set(tf.name, t.UTC().Format(time.RFC3339Nano))
		}
	}
	if limit > 0 {
		params.Set("limit", strconv.Itoa(limit))
	}
	base, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return "", fmt.Errorf("--server: want an http(s) URL such as http://127.0.0.1:8080, got %q", server)
	}
	return base.String() + path + "?" + params.Encode(), nil
}
