package search

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

const searchUsage = `Usage: auditpipe search [flags] QUERY

Run a CLS query (the TKE audit console's syntax) on a running pipeline's
local store through its search API (GET /api/v1/search). Flags come before
the query; quote the query for the shell.

Search part (CQL):
  key:value               field match; field names are the event's dotted
                          paths: verb, user.username, objectRef.resource,
                          objectRef.namespace, objectRef.name,
                          responseStatus.code, requestObject.spec.replicas,
                          annotations.authorization.k8s.io/decision,
                          auditpipe.cluster, auditpipe.* enrichment fields
  key:"a phrase"          quoted value; \ escapes (system\:admin)
  key:nginx*  key:ng*x    suffix and infix wildcards (no prefix *)
  key>=400  key<5  key=3  numeric ranges, no colon
  key:*   key:""          field exists / field is the empty string
  word  "two words"       full text over every value of the event
  AND OR NOT ( )          any case; "a b" means a AND b; * is everything
  Text fields (user name, object name, user agent, request bodies) match
  by whole words, case-insensitive: objectRef.name:nginx finds
  nginx-deployment. verb, stage, level, auditID, objectRef.resource,
  .subresource, .namespace, .apiGroup and auditpipe.cluster match exactly.

Analysis part, after | (SQL):
  SELECT expr [AS name], ... [WHERE ...] [GROUP BY ...] [HAVING ...]
  [ORDER BY ... [DESC]] [LIMIT n]   (LIMIT default 100, at most 10000)
  "dotted.field" names a field, 'text' is a string, __TIMESTAMP__ is the
  event time in unix ms; functions: count, sum, avg, min, max,
  approx_distinct, histogram(cast(__TIMESTAMP__ as timestamp), interval 1
  minute), date_trunc('hour', __TIMESTAMP__), lower, upper, length, abs,
  round, coalesce, cast(x as varchar|bigint|double|timestamp).

Flags:
  --server URL       search API base URL (default $AUDITPIPE_SERVER, else
                     http://127.0.0.1:8080)
  --token TOKEN      bearer token for an API beyond loopback (default
                     $AUDITPIPE_TOKEN)
  --cluster ID       only events of this cluster (like the console's
                     cluster selector)
  --from TIME        events at or after TIME: RFC 3339, unix milliseconds,
                     or a duration meaning "ago" (--from 24h)
  --to TIME          events before TIME (same forms)
  --limit N          events per page, 1 to 10000 (default 100)
  --cursor C         the next page, as printed after the previous one
  --output FORMAT    table (default) or json (one JSON document per line:
                     events, or one object per analysis row)
  --timeout D        give up after D (default 30s)
  -h, --help         show this help

Examples:
  auditpipe search --from 24h 'objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"'
  auditpipe search 'objectRef.resource:nodes AND requestObject:unschedulable'
  auditpipe search 'objectRef.subresource:exec OR objectRef.subresource:attach'
  auditpipe search 'responseStatus.code:401 OR responseStatus.code:403'
  auditpipe search 'user.username:"system:anonymous"'
  auditpipe search 'objectRef.apiGroup:"rbac.authorization.k8s.io" AND NOT verb:get AND NOT verb:list AND NOT verb:watch'
  auditpipe search --output json 'verb:delete | SELECT "user.username" AS user, count(*) AS deletes GROUP BY user ORDER BY deletes DESC LIMIT 10'
  auditpipe search --from 1h '* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time'
`

// searchResponse is either response shape of GET /api/v1/search.
type searchResponse struct {
	Events  []json.RawMessage `json:"events"`
	Total   int               `json:"total"`
	Cursor  string            `json:"cursor"`
	Columns []string          `json:"columns"`
	Rows    [][]any           `json:"rows"`
}

// RunSearchCommand runs "search": it parses args (without the command name),
// sends the query to the search API and prints events or analysis rows to
// stdout. --help prints the usage to stdout and returns nil; errors are
// returned for the caller to print once. stderr gets the match count and
// the next page's cursor only.
func RunSearchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("search", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		server  = fs.String("server", ServerFromEnv(), "")
		token   = fs.String("token", TokenFromEnv(), "")
		cluster = fs.String("cluster", "", "")
		from    = fs.String("from", "", "")
		to      = fs.String("to", "", "")
		limit   = fs.Int("limit", 0, "")
		cursor  = fs.String("cursor", "", "")
		output  = fs.String("output", "table", "")
		timeout = fs.Duration("timeout", 30*time.Second, "")
	)
	// Errors are returned, not printed: the caller prints each once.
	usageErr := func(err error) error {
		return fmt.Errorf("search: %w (see search --help)", err)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, werr := io.WriteString(stdout, searchUsage)
			return werr
		}
		return usageErr(err)
	}
	if fs.NArg() == 0 {
		return usageErr(errors.New("no query given (use '*' for every event)"))
	}
	query := strings.Join(fs.Args(), " ")
	if *output != "table" && *output != "json" {
		return usageErr(fmt.Errorf("--output: want table or json, got %q", *output))
	}
	if *limit < 0 || *limit > 10000 {
		return usageErr(fmt.Errorf("--limit: want 1 to 10000, got %d", *limit))
	}
	params := url.Values{"q": {query}}
	if *cluster != "" {
		params.Set("cluster", *cluster)
	}
	if *cursor != "" {
		params.Set("cursor", *cursor)
	}
	now := time.Now()
	endpoint, err := endpointURL(*server, SearchPath, params, *from, *to, *limit, now)
	if err != nil {
		return usageErr(err)
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var res searchResponse
	if err := fetchJSON(ctx, endpoint, *token, &res); err != nil {
		return fmt.Errorf("search: %w", err)
	}
	switch {
	case res.Columns != nil && *output == "json":
		err = writeRowsJSON(stdout, res.Columns, res.Rows)
	case res.Columns != nil:
		err = writeRowsTable(stdout, res.Columns, res.Rows)
	case *output == "json":
		err = writeJSONLines(stdout, res.Events)
	default:
		err = writeTable(stdout, res.Events)
	}
	if err != nil {
		return fmt.Errorf("search: write output: %w", err)
	}
	if res.Columns == nil {
		// On stderr, so that piping the output stays clean.
		fmt.Fprintf(stderr, "%d of %d matching events\n", len(res.Events), res.Total)
		if res.Cursor != "" {
			fmt.Fprintf(stderr, "next page: --cursor %s\n", res.Cursor)
		}
	}
	return nil
}

// fetchJSON GETs endpoint and decodes a 200 answer into out; any other
// status becomes an error carrying the API's message (for a query error,
// the position and the caret line).
func fetchJSON(ctx context.Context, endpoint, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		// The client's error repeats the URL, query string included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("query %s: %w", redact(endpoint), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return fmt.Errorf("read response from %s: %w", redact(endpoint), err)
	}
	if resp.StatusCode != http.StatusOK {
		var e ErrorResponse
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("server answered %s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("server answered %s: %.200s", resp.Status, body)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber() // keep int64 counts and ms timestamps exact
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decode response from %s: %w", redact(endpoint), err)
	}
	return nil
}

func writeRowsTable(w io.Writer, columns []string, rows [][]any) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, c := range columns {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, cell(c))
	}
	fmt.Fprintln(tw)
	for _, row := range rows {
		for i, v := range row {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			s := ""
			if v != nil {
				s = fmt.Sprint(v)
			}
			fmt.Fprint(tw, cell(s))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// writeRowsJSON prints one JSON object per row, keyed by column name, in
// column order.
func writeRowsJSON(w io.Writer, columns []string, rows [][]any) error {
	for _, row := range rows {
		var b strings.Builder
		b.WriteByte('{')
		for i, c := range columns {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(c)
			var v any
			if i < len(row) {
				v = row[i]
			}
			val, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("encode row: %w", err)
			}
			b.Write(k)
			b.WriteByte(':')
			b.Write(val)
		}
		b.WriteString("}\n")
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}
