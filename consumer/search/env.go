package search

import "os"

// The environment variables the query CLIs (events, search, alerts) read
// when --server or --token is not given: scripts and shells set them once.
const (
	ServerEnv = "AUDITPIPE_SERVER"
	TokenEnv  = "AUDITPIPE_TOKEN"
	// legacyTokenEnv is the token variable of earlier releases, still
	// read when TokenEnv is unset.
	legacyTokenEnv = "AUDITPIPE_API_TOKEN"
	// DefaultServer is the API of a local all-in-one or consumer.
	DefaultServer = "http://127.0.0.1:8080"
)

// ServerFromEnv is the default of --server: $AUDITPIPE_SERVER, else
// DefaultServer.
func ServerFromEnv() string {
	if v := os.Getenv(ServerEnv); v != "" {
		return v
	}
	return DefaultServer
}

// TokenFromEnv is the default of --token: $AUDITPIPE_TOKEN, else
// $AUDITPIPE_API_TOKEN.
func TokenFromEnv() string {
	if v := os.Getenv(TokenEnv); v != "" {
		return v
	}
	return os.Getenv(legacyTokenEnv)
}
