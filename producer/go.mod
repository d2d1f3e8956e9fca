module github.com/auditpipe/auditpipe/producer

go 1.26.0
