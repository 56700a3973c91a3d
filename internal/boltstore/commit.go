package boltstore

import (
	"context"
	"errors"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds the transactions committed together.
const maxGroup = 256

// call is one write transaction waiting for a commit.
type call struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// committer runs write transactions with group commit: a transaction that
// arrives while none is committing is committed at once (one fsync, no
// waiting), and the transactions that arrive during a commit are committed
// together in the next one. So a lone verification pays one fsync, and N
// concurrent ones share a few. (bbolt's own Batch instead waits a fixed
// delay for company, which costs every lone request that delay.)
type committer struct {
	db    *bolt.DB
	calls chan call
	quit  chan struct{}
	done  chan struct{}
}

func newCommitter(db *bolt.DB) *committer {
	c := &committer{db: db, calls: make(chan call), quit: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// errClosed is returned for writes after Close.
var errClosed = errors.New("store closed")

// write runs fn in a write transaction and returns its error. fn may run
// more than once (when another transaction of its group fails, each is run
// again alone), so it must only touch the transaction and its own results.
// If ctx ends before fn is queued, fn does not run and write returns the
// context's error; once queued, fn runs.
func (c *committer) write(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	select {
	case c.calls <- call{fn: fn, done: done}:
		return <-done
	case <-c.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *committer) loop() {
	defer close(c.done)
	group := make([]call, 0, maxGroup)
	for {
		select {
		case first := <-c.calls:
			group = append(group[:0], first)
		case <-c.quit:
			return
		}
	drain:
		for len(group) < maxGroup {
			select {
			case next := <-c.calls:
				group = append(group, next)
			default:
				break drain
			}
		}
		c.commit(group)
	}
}

// commit runs a group in one transaction; if any fails, the transaction is
// rolled back and each is run again in a transaction of its own, so that one
// failure does not fail the others.
func (c *committer) commit(group []call) {
	err := c.db.Update(func(tx *bolt.Tx) error {
		for _, cl := range group {
			if err := cl.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(group) == 1 {
		for _, cl := range group {
			cl.done <- err
		}
		return
	}
	for _, cl := range group {
		cl.done <- c.db.Update(cl.fn)
	}
}

// close stops the loop after the group in progress.
func (c *committer) close() {
	close(c.quit)
	<-c.done
}
