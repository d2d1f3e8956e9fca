module github.com/auditpipe/auditpipe/schemas

go 1.26.0
