package main

import (
	"encoding/json"
	"flag"
)

var flagErrHelp = flag.ErrHelp

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
