// Package search is the read-only query path over the local store: an HTTP
// handler for GET /api/v1/events (field filters) and GET /api/v1/search (the
// CLS query language of TKE's audit console, parsed by package cql and
// compiled to SQLite by the store), and the "events" and "search" CLI
// commands that call them. The CLI goes through HTTP rather than opening the
// database file so that it works against a running pipeline (which owns the
// file's single writer), from another machine and from scripts, with the
// same parameters as the API. Beyond loopback the API needs a token:
// ProtectAPI and RequireToken wrap the handler.
package search
