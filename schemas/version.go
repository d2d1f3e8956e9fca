package schemas

// SchemaVersion is the version of the record formats in this package
// (headers, ProcessedEvent). Bump it when a change is not backwards
// compatible, and keep readers able to read the previous version.
const SchemaVersion = 1
