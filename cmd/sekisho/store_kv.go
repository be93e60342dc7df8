package main

import (
	"context"
	"errors"
	"time"

	"sekisho/greylist"
)

// The KV part of greylist.Store (the MTA-STS policy cache) for the stores
// of `sekisho explain` (store.go): the empty store has nothing and keeps
// nothing, the unavailable one answers its error.

func (emptyStore) GetValue(context.Context, string) ([]byte, bool, error) { return nil, false, nil }

func (emptyStore) PutValue(context.Context, string, []byte, time.Duration) error {
	return errors.New("greylist: the empty store is read-only")
}

func (s unavailableStore) GetValue(context.Context, string) ([]byte, bool, error) {
	return nil, false, s.err
}

func (s unavailableStore) PutValue(context.Context, string, []byte, time.Duration) error {
	return s.err
}

func (emptyStore) DeleteValue(context.Context, string) error {
	return errors.New("greylist: the empty store is read-only")
}

func (s unavailableStore) DeleteValue(context.Context, string) error { return s.err }

// The Stats part (sekisho greylist stats reads a store of its own).

func (emptyStore) AddRetry(context.Context, greylist.Retry) error {
	return errors.New("greylist: the empty store is read-only")
}

func (emptyStore) ReadStats(context.Context, string, int) (greylist.WeekStats, error) {
	return greylist.WeekStats{}, nil
}

func (s unavailableStore) AddRetry(context.Context, greylist.Retry) error { return s.err }

func (s unavailableStore) ReadStats(context.Context, string, int) (greylist.WeekStats, error) {
	return greylist.WeekStats{}, s.err
}
