package allinone

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// DemoResult counts what PostDemo sent.
type DemoResult struct {
	Files, Events, Skipped int
}

// PostDemo sends the audit events found under dir (JSON files with one
// event, JSON-lines files with many) to the webhook receiver for cluster,
// in EventList batches, the way an apiserver would. Values that are not
// JSON objects are skipped and counted. It is the `--demo` of `make demo`.
func PostDemo(ctx context.Context, webhookURL, cluster, dir string) (DemoResult, error) {
	var res DemoResult
	client := &http.Client{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		// The GKE log entries next to the converted events are not audit
		// events.
		if strings.Contains(path, "log_entries") || !(strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".jsonl")) {
			return nil
		}
		items, skipped, err := readEvents(path)
		if err != nil {
			return err
		}
		res.Files++
		res.Skipped += skipped
		for start := 0; start < len(items); start += 400 {
			batch := items[start:min(start+400, len(items))]
			if err := postBatch(ctx, client, webhookURL, cluster, batch); err != nil {
				return fmt.Errorf("post %s: %w", path, err)
			}
			res.Events += len(batch)
		}
		return nil
	})
	return res, err
}

func readEvents(path string) ([]json.RawMessage, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read demo events: %w", err)
	}
	var items []json.RawMessage
	skipped := 0
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return items, skipped, nil
		}
		if err != nil {
			// A file whose rest is not JSON (a deliberate malformed
			// fixture): keep what was read.
			return items, skipped + 1, nil
		}
		if t := bytes.TrimSpace(v); len(t) == 0 || t[0] != '{' {
			skipped++
			continue
		}
		items = append(items, v)
	}
}

func postBatch(ctx context.Context, client *http.Client, webhookURL, cluster string, items []json.RawMessage) error {
	body, err := json.Marshal(map[string]any{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, webhookURL+"/v1/audit/"+cluster+"?timeout=30s", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("webhook answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
