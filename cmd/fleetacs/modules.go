package main

import "flag"

// modules lists every target and shared part this binary can run. Services
// join the list as their issues land; see the README's status section.
func modules() []*module {
	return nil
}

// registerServiceFlags registers the flags of every service configuration.
func registerServiceFlags(a *app, fs *flag.FlagSet) {}
