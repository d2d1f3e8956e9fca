module github.com/auditpipe/auditpipe/processor

go 1.26.0
