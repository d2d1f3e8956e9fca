//go:build !unix

package main

// privateUmask does nothing where there is no umask; the all-in-one still
// creates its data directory 0700 and tightens file modes at start and
// stop.
func privateUmask() func() { return func() {} }
