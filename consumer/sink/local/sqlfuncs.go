package local

// registerSQLFunctions registers the Go implementations of CLS's SQL
// functions that SQLite lacks.
func registerSQLFunctions() error { return nil }
