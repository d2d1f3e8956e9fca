module github.com/auditpipe/auditpipe/deploy/local

go 1.26.0
