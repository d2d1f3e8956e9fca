package main

import "flag"

func flagErrHelp() error { return flag.ErrHelp }
