package redisstore

import (
	"context"
	_ "embed"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/redis/go-redis/v9"
)

// penaltySrc is the Lua script that applies one auth.PenaltyOp atomically.
//
//go:embed penalty.lua
var penaltySrc string

var penaltyScript = redis.NewScript(penaltySrc)

var _ auth.SharedThrottle = (*Store)(nil)

// Penalties implements auth.SharedThrottle: one script call per op, all
// in one round trip, on the keys KeyPrefix + "throttle:" + op.Key.
func (s *Store) Penalties(ctx context.Context, ops ...auth.PenaltyOp) ([]auth.PenaltyState, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	for _, op := range ops {
		if !(op.Rate > 0) || math.IsInf(op.Rate, 0) || op.BlockAt < 0 || math.IsNaN(op.BlockAt) {
			return nil, fmt.Errorf("redisstore: penalty %s: rate %v, block at %v", op.Kind, op.Rate, op.BlockAt)
		}
	}
	var out []auth.PenaltyState
	err := s.do(ctx, "penalties", func(ctx context.Context) error {
		var err error
		out, err = s.runPenalties(ctx, s.prefix+"throttle:", ops)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// runPenalties sends the script for each op (key keyPrefix + op.Key) in
// one pipeline. An op that finds the server's script cache empty (after a
// restart or SCRIPT FLUSH) is sent again with the script's source.
func (s *Store) runPenalties(ctx context.Context, keyPrefix string, ops []auth.PenaltyOp) ([]auth.PenaltyState, error) {
	keys, args := make([][]string, len(ops)), make([][]any, len(ops))
	cmds := make([]*redis.Cmd, len(ops))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, op := range ops {
			keys[i], args[i] = []string{keyPrefix + op.Key}, s.penaltyArgs(op)
			cmds[i] = penaltyScript.EvalSha(ctx, p, keys[i], args[i]...)
		}
		return nil
	})
	// The first command's error, or the connection's (which the commands
	// may not carry). Each command's is looked at below.
	if err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return nil, err
	}
	out := make([]auth.PenaltyState, len(ops))
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			cmd = penaltyScript.Eval(ctx, s.client, keys[i], args[i]...)
		}
		st, err := parsePenalty(cmd)
		if err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}

// penaltyArgs are the script's ARGV for op.
func (s *Store) penaltyArgs(op auth.PenaltyOp) []any {
	var now int64 // 0: the server's clock
	if s.callerClock {
		now = op.Now.UnixMicro()
	}
	return []any{
		op.Kind.String(), now,
		strconv.FormatFloat(op.Rate, 'g', -1, 64), strconv.FormatFloat(op.BlockAt, 'g', -1, 64),
		op.BlockFor.Microseconds(),
	}
}

// parsePenalty decodes the script's reply.
func parsePenalty(cmd *redis.Cmd) (auth.PenaltyState, error) {
	v, err := cmd.Slice()
	if err != nil {
		return auth.PenaltyState{}, err
	}
	if len(v) != 3 {
		return auth.PenaltyState{}, fmt.Errorf("penalty script: %d values, want 3", len(v))
	}
	text, ok1 := v[0].(string)
	left, ok2 := v[1].(int64)
	started, ok3 := v[2].(int64)
	if !ok1 || !ok2 || !ok3 {
		return auth.PenaltyState{}, fmt.Errorf("penalty script: reply %T %T %T", v[0], v[1], v[2])
	}
	score, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return auth.PenaltyState{}, fmt.Errorf("penalty script: score: %w", err)
	}
	return auth.PenaltyState{Score: score, Blocked: time.Duration(left) * time.Microsecond, Started: started == 1}, nil
}
