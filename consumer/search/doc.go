// Package search is the read-only query path over the local store: an HTTP
// handler for GET /api/v1/events and the "events" CLI command that calls it.
// The CLI goes through HTTP rather than opening the database file so that it
// works against a running pipeline (which owns the file's single writer),
// from another machine and from scripts, with the same parameters as the
// API. Authentication beyond loopback is the job of whoever mounts the
// handler.
package search
