package main

import (
	"flag"

	"github.com/secondfactor/secondfactor/internal/client"
)

// addConnFlags defines the connection flags on fs, with defaults from the
// environment.
func (a *app) addConnFlags(fs *flag.FlagSet) *client.Target {
	t := &client.Target{}
	t.AddFlags(fs, a.getenv)
	return t
}

// dial checks the connection flags, reads the token and opens a client
// connection.
func (a *app) dial(t *client.Target) (*client.Conn, error) {
	if err := t.Check(); err != nil {
		return nil, usageErrorf("%v", err)
	}
	c, err := client.Dial(*t, a.getenv, "secondfactor-cli")
	if err != nil {
		return nil, err
	}
	a.tokenSource = c.TokenSource
	return c, nil
}

// hangUp closes a connection whose calls are over. Closing cannot undo or
// change what the calls did, and the command has said how they went: an
// error here has nothing to add, so it is dropped.
func hangUp(c *client.Conn) { _ = c.Close() }
