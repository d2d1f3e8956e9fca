// Package helm holds the tests of the Helm chart in ./auditpipe: they
// render it with the real helm binary and check every object, config
// file, alert rule and dashboard it produces.
package helm
