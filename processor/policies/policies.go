// Package policies ships the audit policies that come with auditpipe, so a
// binary needs no policy file to start.
package policies

import _ "embed"

// File names of the shipped policies, as used in logs and errors.
const (
	TKEDefaultName = "tke-default.yaml"
	LeanName       = "lean.yaml"
)

// TKEDefault is the default policy of TKE's cluster audit: Request for
// reads, Metadata for secrets, configmaps and tokenreviews,
// RequestResponse for everything else, and no events for known noisy
// system reads.
//
//go:embed tke-default.yaml
var TKEDefault []byte

// Lean is a policy for cost-conscious fleets; see the comments in the file.
//
//go:embed lean.yaml
var Lean []byte
