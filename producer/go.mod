module github.com/auditpipe/auditpipe/producer

go 1.26.0

require (
	github.com/auditpipe/auditpipe/internal v0.0.0
	github.com/auditpipe/auditpipe/schemas v0.0.0
)

require github.com/prometheus/client_golang v1.25.0 // indirect

replace (
	github.com/auditpipe/auditpipe/internal => ../internal
	github.com/auditpipe/auditpipe/schemas => ../schemas
)
