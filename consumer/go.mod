module github.com/auditpipe/auditpipe/consumer

go 1.26.0
